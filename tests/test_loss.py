"""The loss-and-gradient function against finite differences and the seed's formula."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import approx_fprime

from sk_twolayer import loss_and_gradient
from sk_twolayer._loss import ACTIVATIONS, TwoLayerLoss
from sk_twolayer._params import ParamLayout

N, D, H = 13, 5, 7


def _problem(n_classes, dtype=np.float64, seed=0, sparse=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    if sparse:
        X[rng.random(size=X.shape) < 0.6] = 0.0
        X = sp.csr_array(X)
    X = X.astype(dtype)
    y = np.arange(N) % n_classes
    params = {
        "W1": rng.normal(scale=0.5, size=(D, H)),
        "b1": rng.normal(scale=0.5, size=H),
        "W2": rng.normal(scale=0.5, size=(H, n_classes)),
        "b2": rng.normal(scale=0.5, size=n_classes),
    }
    # Keep pre-activations away from the ReLU kink, where finite differences
    # of a piecewise-linear function are not the derivative.
    return X, y, {k: v.astype(dtype) for k, v in params.items()}


def _seed_loss(W1, b1, W2, b2, X, y, reg, sample_weight=None, penalize_bias=True):
    """The seed's formula, written independently, in float64 and per sample."""
    X = X.toarray() if sp.issparse(X) else X
    X, W1, b1, W2, b2 = (np.asarray(a, dtype=np.float64) for a in (X, W1, b1, W2, b2))
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    total = 0.0
    for i in range(len(y)):
        f = X[i] @ W1 + b1
        h = np.maximum(0.0, f)
        s = h @ W2 + b2
        m = s.max()
        log_softmax_y = s[y[i]] - m - np.log(np.sum(np.exp(s - m)))
        total += w[i] * -log_softmax_y
    data = total / w.sum()
    penalty = np.sum(W1**2) + np.sum(W2**2)
    if penalize_bias:
        penalty += np.sum(b1**2) + np.sum(b2**2)
    return data + reg * penalty


def _numeric_grad(params, X, y, kwargs, name, eps):
    """Central finite differences of the loss in one parameter, in float64."""
    X64 = X.astype(np.float64)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    kw = dict(kwargs)
    if kw.get("sample_weight") is not None:
        kw["sample_weight"] = np.asarray(kw["sample_weight"], dtype=np.float64)
    shape = p64[name].shape

    def f(flat):
        q = dict(p64)
        q[name] = flat.reshape(shape)
        return loss_and_gradient(q["W1"], q["b1"], q["W2"], q["b2"], X64, y, **kw)[0]

    x0 = p64[name].ravel()
    grad = np.empty_like(x0)
    for j in range(x0.size):
        e = np.zeros_like(x0)
        e[j] = eps
        grad[j] = (f(x0 + e) - f(x0 - e)) / (2 * eps)
    return grad.reshape(shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("penalize_bias", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_gradient_matches_central_differences(dtype, n_classes, weighted,
                                              penalize_bias, sparse):
    X, y, params = _problem(n_classes, dtype, sparse=sparse)
    sw = np.random.default_rng(1).uniform(0.1, 3.0, size=N) if weighted else None
    kwargs = dict(reg=0.05, sample_weight=sw, penalize_bias=penalize_bias)
    loss, grads = loss_and_gradient(**params, X=X, y=y, **kwargs)
    assert isinstance(loss, float)
    for name, value in params.items():
        assert grads[name].shape == value.shape
        assert grads[name].dtype == dtype
        # The finite differences run in float64 on the same (float32-rounded)
        # values; float32 gradients then agree to float32 precision.
        expected = _numeric_grad(params, X, y, kwargs, name, eps=1e-6)
        rtol, atol = (1e-5, 1e-7) if dtype == np.float64 else (2e-3, 2e-5)
        np.testing.assert_allclose(grads[name], expected, rtol=rtol, atol=atol,
                                   err_msg=name)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_every_activation(activation):
    X, y, params = _problem(3)
    kwargs = dict(reg=0.01, activation=activation)
    _, grads = loss_and_gradient(**params, X=X, y=y, **kwargs)
    for name in params:
        expected = _numeric_grad(params, X, y, kwargs, name, eps=1e-6)
        np.testing.assert_allclose(grads[name], expected, rtol=1e-5, atol=1e-7,
                                   err_msg=name)


@pytest.mark.parametrize("penalize_bias", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_equals_the_seed_formula(penalize_bias, weighted):
    X, y, params = _problem(3, seed=3)
    sw = np.arange(1, N + 1, dtype=float) if weighted else None
    loss, _ = loss_and_gradient(**params, X=X, y=y, reg=0.3, sample_weight=sw,
                                penalize_bias=penalize_bias)
    expected = _seed_loss(**params, X=X, y=y, reg=0.3, sample_weight=sw,
                          penalize_bias=penalize_bias)
    assert loss == pytest.approx(expected, rel=1e-12)


def test_penalty_gradient_is_two_reg_theta():
    # With zero output weights the data gradient of W1 and b1 vanishes, so
    # what is left is exactly the seed's 2 * reg * theta.
    X, y, params = _problem(3)
    params["W2"][...] = 0.0
    _, grads = loss_and_gradient(**params, X=X, y=y, reg=0.7)
    np.testing.assert_allclose(grads["W1"], 2 * 0.7 * params["W1"], rtol=1e-12)
    np.testing.assert_allclose(grads["b1"], 2 * 0.7 * params["b1"], rtol=1e-12)
    _, grads = loss_and_gradient(**params, X=X, y=y, reg=0.7, penalize_bias=False)
    np.testing.assert_allclose(grads["b1"], 0.0, atol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stable_for_huge_scores(dtype):
    # Scores of order 1e4 overflow a naive exp; the shifted log-softmax
    # must give a finite loss and gradient and no warning.
    X, y, params = _problem(3, dtype)
    params["W2"] *= dtype(1e4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grads = loss_and_gradient(**params, X=X, y=y, reg=0.0)
    assert np.isfinite(loss) and loss > 0
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    expected = _seed_loss(**params, X=X, y=y, reg=0.0)
    assert loss == pytest.approx(expected, rel=1e-3 if dtype == np.float32 else 1e-9)


def test_sample_weights_equal_repetition():
    X, y, params = _problem(3)
    sw = np.arange(N) % 3  # includes zeros
    loss_w, g_w = loss_and_gradient(**params, X=X, y=y, reg=0.1, sample_weight=sw)
    loss_r, g_r = loss_and_gradient(**params, X=np.repeat(X, sw, axis=0),
                                    y=np.repeat(y, sw), reg=0.1)
    assert loss_w == pytest.approx(loss_r, rel=1e-12)
    for name in g_w:
        np.testing.assert_allclose(g_w[name], g_r[name], rtol=1e-10, atol=1e-14)


def test_sparse_equals_dense():
    X, y, params = _problem(4, sparse=True)
    loss_s, g_s = loss_and_gradient(**params, X=X, y=y, reg=0.1)
    loss_d, g_d = loss_and_gradient(**params, X=X.toarray(), y=y, reg=0.1)
    assert loss_s == pytest.approx(loss_d, rel=1e-12)
    for name in g_s:
        np.testing.assert_allclose(g_s[name], g_d[name], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocked_evaluation_equals_unblocked(sparse, dtype):
    # Full-batch evaluation in row blocks (bounded memory) must give the same
    # result as one block, up to rounding.
    X, y, params = _problem(3, dtype, sparse=sparse)
    layout = ParamLayout(D, H, 3, dtype)
    theta = layout.pack(params["W1"], params["W2"], params["b1"], params["b2"])
    sw = np.linspace(0.5, 2.0, N).astype(dtype)
    whole = TwoLayerLoss(layout, reg=0.1, block_rows=None)
    loss_1, grad_1 = whole.loss_gradient(theta, X, y, sw)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for rows in (1, 4, 5):
        blocked = TwoLayerLoss(layout, reg=0.1, block_rows=rows)
        loss_b, grad_b = blocked.loss_gradient(theta, X, y, sw)
        assert loss_b == pytest.approx(loss_1, rel=rtol)
        np.testing.assert_allclose(grad_b, grad_1, rtol=rtol, atol=rtol * 1e-2)


def test_buffers_reused_between_calls_give_same_result():
    X, y, params = _problem(3)
    layout = ParamLayout(D, H, 3, np.float64)
    theta = layout.pack(params["W1"], params["W2"], params["b1"], params["b2"])
    loss_fn = TwoLayerLoss(layout, reg=0.1)
    first = loss_fn.loss_gradient(theta, X, y)
    loss_fn.loss_gradient(theta, X[:5], y[:5])  # a smaller batch in between
    again = loss_fn.loss_gradient(theta, X, y)
    assert first[0] == again[0]
    np.testing.assert_array_equal(first[1], again[1])


def test_zero_weight_batch_has_only_the_penalty():
    X, y, params = _problem(3)
    loss, grads = loss_and_gradient(**params, X=X, y=y, reg=0.5,
                                    sample_weight=np.zeros(N))
    penalty = 0.5 * sum(np.sum(v**2) for v in params.values())
    assert loss == pytest.approx(penalty)
    np.testing.assert_allclose(grads["W2"], 2 * 0.5 * params["W2"])


def test_uniform_scores_give_log_c():
    X, y, params = _problem(5)
    zeros = {k: np.zeros_like(v) for k, v in params.items()}
    loss, _ = loss_and_gradient(**zeros, X=X, y=y, reg=1.0)
    assert loss == pytest.approx(np.log(5))


def test_scipy_check_grad_on_flat_vector():
    # The flat-vector interface is what scipy.optimize.minimize(jac=True) sees.
    X, y, params = _problem(3)
    layout = ParamLayout(D, H, 3, np.float64)
    theta = layout.pack(params["W1"], params["W2"], params["b1"], params["b2"])
    loss_fn = TwoLayerLoss(layout, reg=0.1, activation="tanh")
    grad = loss_fn.loss_gradient(theta, X, y)[1]
    numeric = approx_fprime(theta, lambda t: loss_fn.loss_gradient(t, X, y)[0], 1e-7)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(y=np.full(N, 9)), "class indices"),
        (dict(W2=np.zeros((H + 1, 3))), "shape"),
        (dict(X=np.zeros((N, D + 1))), "features"),
        (dict(sample_weight=np.ones(N + 1)), "sample_weight"),
        (dict(activation="softplus"), "activation"),
    ],
)
def test_bad_arguments_raise(change, message):
    X, y, params = _problem(3)
    kwargs = dict(params, X=X, y=y) | change
    with pytest.raises(ValueError, match=message):
        loss_and_gradient(**kwargs)
