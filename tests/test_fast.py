"""The compiled kernels of the ``fast`` extra against plain code, and when a fit takes them.

The kernels (``sk_twolayer._fast``) need numba: their tests skip where it is
not installed (it is wherever the dask extra is, through dask-ml, so CI
runs them). The tests of the choice of path, and of what a fit does where
the kernels cannot run, run everywhere.
"""

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from sk_twolayer import TwoLayerSoftmaxClassifier, _fast, _solvers
from sk_twolayer._loss import L2Penalty, TwoLayerLoss
from sk_twolayer._namespace import NUMPY
from sk_twolayer._params import ParamLayout
from test_solvers import _plain_adam, _plain_sgd


@pytest.fixture(scope="module")
def kernels():
    pytest.importorskip("numba", reason="numba is not installed (the fast extra)")
    return _fast.load()


# ------------------------------------------------------------ plain references
def _plain_loss_gradient(W1, b1, W2, b2, X, y, sw):
    """The weighted mean log loss and its gradient, per sample, in float64."""
    X = X.toarray() if sp.issparse(X) else X
    X, W1, b1, W2, b2, sw = (np.asarray(a, dtype=np.float64)
                             for a in (X, W1, b1, W2, b2, sw))
    grads = [np.zeros_like(p) for p in (W1, W2, b1, b2)]
    total = 0.0
    for x, label, w in zip(X, y, sw):
        f = x @ W1 + b1
        h = np.maximum(f, 0.0)
        s = h @ W2 + b2
        p = np.exp(s - s.max())
        p /= p.sum()
        total += w * -np.log(p[label])
        ds = w * (p - np.eye(len(b2))[label])
        df = (W2 @ ds) * (f > 0)
        for g, value in zip(grads, (np.outer(x, df), np.outer(h, ds), df, ds)):
            g += value
    return total / sw.sum(), [g / sw.sum() for g in grads]


def _network(dtype, n=37, d=9, hidden=11, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    layout = ParamLayout(d, hidden, classes, dtype)
    theta = rng.normal(scale=0.5, size=layout.size).astype(dtype)
    X = rng.normal(size=(n, d)).astype(dtype)
    y = rng.integers(0, classes, size=n)
    return layout, theta, X, y


# ------------------------------------------------------------------- the head
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("block_rows", [None, 5])
@pytest.mark.parametrize("sparse", [False, True])
def test_fused_head_matches_plain_code(kernels, dtype, weighted, block_rows, sparse):
    # The loss and gradient with the compiled head, in one block of rows or
    # several (the gradients of later blocks are added), against per-sample
    # float64 code, and against the numpy path to rounding.
    layout, theta, X, y = _network(dtype)
    sw = (np.random.default_rng(1).uniform(0.1, 3.0, size=X.shape[0]).astype(dtype)
          if weighted else None)
    if sparse:
        X[np.abs(X) < 0.7] = 0
        X = sp.csr_array(X)
    loss = TwoLayerLoss(layout, block_rows=block_rows)
    got, grad = loss.data_loss_gradient(theta, X, y.astype(np.int32), sw,
                                        kernels=kernels)
    assert grad.dtype == dtype
    expected, parts = _plain_loss_gradient(
        *(layout.unpack(theta)[i] for i in (0, 2, 1, 3)), X, y,
        np.ones(X.shape[0]) if sw is None else sw)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert got == pytest.approx(expected, rel=rtol)
    np.testing.assert_allclose(grad, np.concatenate([p.ravel() for p in parts]),
                               rtol=100 * rtol, atol=rtol)
    numpy_loss, numpy_grad = TwoLayerLoss(layout, block_rows=block_rows) \
        .data_loss_gradient(theta, X, y, sw)
    assert got == pytest.approx(numpy_loss, rel=rtol)
    np.testing.assert_allclose(grad, numpy_grad, rtol=100 * rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_head_is_stable_for_huge_scores_and_passes_nan_on(kernels, dtype):
    layout, theta, X, y = _network(dtype)
    W1, W2, b1, b2 = layout.unpack(theta)
    W2 *= dtype(1e4)  # scores of order 1e4: a naive exp overflows
    loss = TwoLayerLoss(layout)
    got, grad = loss.data_loss_gradient(theta, X, y, kernels=kernels)
    expected, _ = loss.data_loss_gradient(theta, X, y)
    assert np.isfinite(got) and np.all(np.isfinite(grad))
    assert got == pytest.approx(expected, rel=1e-4 if dtype == np.float32 else 1e-10)
    # A NaN weight makes the loss NaN, as on the numpy path, so that a
    # diverging fit is caught at the step where it happens.
    W1[0, 0] = np.nan
    got, _ = loss.data_loss_gradient(theta, X, y, kernels=kernels)
    assert np.isnan(got)


# --------------------------------------------------------- the update rules
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rule", ["sgd", "sgd classical", "sgd no momentum", "adam"])
def test_compiled_update_rules_match_plain_code(kernels, rule, dtype):
    # Against the plain float64 code that the numpy path is tested with
    # (test_solvers.py): a penalized prefix ending mid-vector and an
    # unpenalized tail, steps enough for the momentum to matter, and a
    # vector long enough for the compiled loops' vectorized body.
    n, size, reg = 5003, 4001, 0.05
    rng = np.random.RandomState(0)
    theta0 = rng.normal(size=n).astype(dtype)
    grads = rng.normal(size=(6, n)).astype(dtype)
    if rule == "adam":
        optimizer = _solvers.Adam(0.01)
        expected = _plain_adam(theta0, grads, 0.01, 0.9, 0.999, 1e-8, reg, size)
    else:
        mu = 0.0 if rule == "sgd no momentum" else 0.9
        nesterov = rule == "sgd"
        optimizer = _solvers.SGD(0.01, momentum=mu, nesterov=nesterov)
        expected = _plain_sgd(theta0, grads, 0.01, mu, nesterov, reg, size)
    penalty = L2Penalty(reg, size)
    optimizer.start(theta0, NUMPY, kernels)
    for g in grads:
        optimizer.grad[...] = g
        optimizer.step(penalty)
        # the penalty at the new weights, for the next minibatch's loss
        assert optimizer.penalty_value(penalty) == pytest.approx(
            penalty.value(optimizer.theta), rel=1e-12 if dtype == np.float64 else 1e-5)
    got = optimizer.theta.copy()
    optimizer.finish()
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected,
                               rtol=2e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-14)


# --------------------------------------------------------------- whole fits
def _fit(monkeypatch, fast, solver, dtype, **params):
    monkeypatch.setenv(_fast.ENV, "1" if fast else "0")
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 12)).astype(dtype)
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0.5)
    model = TwoLayerSoftmaxClassifier(hidden_size=16, solver=solver, max_iter=8,
                                      batch_size=32, random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_fit_with_the_kernels_is_the_numpy_fit_to_rounding(
        kernels, monkeypatch, solver, dtype):
    monkeypatch.setattr(_fast, "MIN_WORK", 0)  # any fit takes them
    numpy_fit = _fit(monkeypatch, False, solver, dtype)
    fast_fit = _fit(monkeypatch, True, solver, dtype)
    rtol = 1e-9 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(fast_fit.loss_curve_, numpy_fit.loss_curve_, rtol=rtol)
    for fast_w, numpy_w in zip(fast_fit.coefs_ + fast_fit.intercepts_,
                               numpy_fit.coefs_ + numpy_fit.intercepts_):
        assert fast_w.dtype == dtype
        np.testing.assert_allclose(fast_w, numpy_w, rtol=rtol, atol=rtol)


def test_a_diverging_fit_with_the_kernels_is_an_error(kernels, monkeypatch):
    # Caught in the same epoch as on the numpy path, with the same message.
    monkeypatch.setattr(_fast, "MIN_WORK", 0)
    messages = []
    for fast in (False, True):
        with pytest.raises(_solvers.DivergenceError, match="diverged") as error:
            _fit(monkeypatch, fast, "sgd", np.float64, learning_rate_init=1e6)
        messages.append(str(error.value))
    assert messages[0] == messages[1]


# ---------------------------------------------------------- choice of path
class _Torchish:
    is_numpy = False


def test_a_fit_takes_the_kernels_only_where_asked_for_and_worth_it(monkeypatch):
    monkeypatch.setenv(_fast.ENV, "1")
    loaded = object()
    monkeypatch.setattr(_fast, "load", lambda dtype: loaded)
    theta = np.zeros(1000)
    steps = int(_fast.MIN_WORK // 1000)
    assert _fast.for_minibatches(NUMPY, theta, steps) is loaded
    assert _fast.for_minibatches(NUMPY, theta.astype(np.float32), steps) is loaded
    # too little work to repay numba's import
    assert _fast.for_minibatches(NUMPY, theta, steps - 1) is None
    # numpy only, float32 and float64 only
    assert _fast.for_minibatches(_Torchish(), theta, steps) is None
    assert _fast.for_minibatches(NUMPY, theta.astype(np.float16), steps) is None
    # not asked for: off, whatever is installed (numba comes with dask-ml)
    for off in ("0", "off", "false", ""):
        monkeypatch.setenv(_fast.ENV, off)
        assert _fast.for_minibatches(NUMPY, theta, steps) is None
    monkeypatch.delenv(_fast.ENV)
    assert _fast.for_minibatches(NUMPY, theta, steps) is None


def _fresh_kernels(monkeypatch, compile_):
    """_fast as in a new process, compiling with ``compile_``."""
    monkeypatch.setattr(_fast, "_compiled", None)
    monkeypatch.setattr(_fast, "_loaded", {})
    monkeypatch.setattr(_fast, "_why_not", {})
    monkeypatch.setattr(_fast, "_compile", compile_)
    monkeypatch.setattr(_fast, "MIN_WORK", 0)


def _raises(error):
    def compile_():
        raise error
    return compile_


def test_without_numba_the_numpy_path_runs(monkeypatch):
    # What a fit does where numba is missing: load() says None, quietly, and
    # the fit runs (on numpy) to the same result as with the kernels off.
    _fresh_kernels(monkeypatch, _raises(ImportError("No module named 'numba'")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert _fast.load(np.float64) is None
        without = _fit(monkeypatch, True, "adam", np.float64)
    off = _fit(monkeypatch, False, "adam", np.float64)
    np.testing.assert_array_equal(without.coefs_[0], off.coefs_[0])


def test_kernels_that_cannot_be_cached_never_break_a_fit(monkeypatch):
    # numba's error where neither the package's folder nor the user's cache
    # folder is writable: the fit runs on numpy, with one warning that says
    # why and what to do, and the next fits run on numpy without a word.
    # (It failed every large fit, on the compiled path only.)
    message = ("cannot cache function '_compile.<locals>.sgd': no locator "
               "available for file '/opt/ro/sk_twolayer/_fast.py'")
    _fresh_kernels(monkeypatch, _raises(RuntimeError(message)))
    with pytest.warns(UserWarning, match=r"(?s)cannot run in float64.*"
                      + re.escape(message) + ".*NUMBA_CACHE_DIR") as caught:
        first = _fit(monkeypatch, True, "sgd", np.float64)
    assert len([w for w in caught if "compiled kernels" in str(w.message)]) == 1
    assert caught[0].filename == __file__  # at the user's fit line
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        second = _fit(monkeypatch, True, "sgd", np.float64)
    expected = _fit(monkeypatch, False, "sgd", np.float64)
    for got in (first, second):
        np.testing.assert_array_equal(got.coefs_[0], expected.coefs_[0])
    monkeypatch.setenv(_fast.ENV, "1")
    assert "float64: RuntimeError: cannot cache" in _fast.status()


def test_kernels_that_compute_something_else_are_never_used(kernels, monkeypatch):
    # A kernel that passes its compilation but computes another update (a
    # miscompilation, a numba bug): the check before first use catches it.
    class Wrong:
        head, adam = kernels.head, kernels.adam

        @staticmethod
        def sgd(theta, v, g, *args):
            total = kernels.sgd(theta, v, g, *args)
            theta *= 1.01
            return total

    _fresh_kernels(monkeypatch, lambda: Wrong)
    with pytest.warns(UserWarning, match="disagree with the NumPy code"):
        assert _fast.load(np.float64) is None
    got = _fit(monkeypatch, True, "sgd", np.float64)
    expected = _fit(monkeypatch, False, "sgd", np.float64)
    np.testing.assert_array_equal(got.coefs_[0], expected.coefs_[0])


def test_a_fit_says_which_path_it_took(kernels, monkeypatch, capsys):
    monkeypatch.setattr(_fast, "MIN_WORK", 0)
    for fast, expected in ((True, "the compiled kernels"), (False, "NumPy")):
        _fit(monkeypatch, fast, "adam", np.float64, verbose=True)
        assert f"Minibatch steps: {expected}" in capsys.readouterr().out
    monkeypatch.setenv(_fast.ENV, "1")
    assert "float64: in use" in _fast.status()
    monkeypatch.delenv(_fast.ENV)
    assert _fast.status().startswith("off (set SK_TWOLAYER_FAST=1")
