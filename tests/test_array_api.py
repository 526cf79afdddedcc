"""Training and prediction in other Array API namespaces (PyTorch, array-api-strict).

scikit-learn's own array-API checks run in ``test_common.py`` (the estimator
declares ``array_api_support``). These tests add what those checks do not
assert: that a fit in another namespace is the numpy fit up to rounding,
that every training feature behaves there as on numpy, and that the
stochastic solvers never read back to the host within an epoch.

They need array-api-strict, and PyTorch (CPU build) for the tests on tensors;
the README's test command skips them where those are absent. CI installs both
on Python 3.11, and array-api-strict alone on the stacks that have no CPU
build of PyTorch, where only the tensor tests skip ("torch is not installed").
"""

import re
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier, loss_and_gradient
from sk_twolayer import _namespace

strict = pytest.importorskip("array_api_strict",
                             reason="array_api_strict is not installed")
try:  # scikit-learn 1.6 needs the array-api-compat package, and SciPy >= 1.14
    with sklearn.config_context(array_api_dispatch=True):
        pass
except (ImportError, RuntimeError) as error:
    pytest.skip(f"scikit-learn cannot dispatch to the Array API here: {error}",
                allow_module_level=True)
try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

SOLVERS = ["lbfgs", "sgd", "adam"]
# Probabilities after a few iterations: a device fit is the numpy fit up to
# rounding.
PROBA_TOL = {"float64": 1e-8, "float32": 1e-3}


def _torch(a):
    return torch.asarray(np.ascontiguousarray(a))


def _strict(a):
    return strict.asarray(np.ascontiguousarray(a))


CONVERTERS = {"array_api_strict": _strict}
NAMESPACES = [pytest.param("torch", marks=needs_torch), "array_api_strict"]
if torch is not None:
    CONVERTERS["torch"] = _torch
    if torch.cuda.is_available():  # on a machine with a GPU, the GPU too
        CONVERTERS["torch_cuda"] = lambda a: torch.asarray(
            np.ascontiguousarray(a), device="cuda")
        NAMESPACES.append("torch_cuda")


@pytest.fixture(autouse=True)
def dispatch():
    with sklearn.config_context(array_api_dispatch=True):
        yield


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _host(a):
    return _namespace.to_host(a)


def _quietly(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


# ------------------------------------------------------------------- the loss
@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "logistic"])
def test_loss_and_gradient_agree_with_numpy(namespace, dtype, tol, activation):
    convert = CONVERTERS[namespace]
    rng = np.random.default_rng(0)
    N, D, H, C = 40, 6, 5, 3
    X = rng.normal(size=(N, D)).astype(dtype)
    y = rng.integers(0, C, N)
    sw = rng.uniform(0.1, 2.0, N).astype(dtype)
    params = {"W1": 0.5 * rng.normal(size=(D, H)), "b1": 0.1 * rng.normal(size=H),
              "W2": 0.5 * rng.normal(size=(H, C)), "b2": 0.1 * rng.normal(size=C)}
    params = {k: v.astype(dtype) for k, v in params.items()}
    kwargs = dict(reg=0.01, activation=activation, penalize_bias=False)
    loss_np, grads_np = loss_and_gradient(**params, X=X, y=y, sample_weight=sw, **kwargs)
    loss_xp, grads_xp = loss_and_gradient(
        **{k: convert(v) for k, v in params.items()}, X=convert(X), y=convert(y),
        sample_weight=convert(sw), **kwargs)
    assert isinstance(loss_xp, float)
    assert loss_xp == pytest.approx(loss_np, rel=tol, abs=tol)
    for name, grad in grads_xp.items():
        assert type(grad) is type(convert(X)), name  # in the inputs' namespace
        np.testing.assert_allclose(_host(grad), grads_np[name], rtol=tol, atol=tol,
                                   err_msg=name)


# ---------------------------------------------------------- fit equals numpy's
@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_fit_is_the_numpy_fit_up_to_rounding(iris, namespace, dtype, solver):
    convert = CONVERTERS[namespace]
    X, y = iris
    X = X.astype(dtype)
    params = dict(solver=solver, hidden_size=8, max_iter=5, batch_size=32,
                  random_state=0)
    ref = _quietly(TwoLayerSoftmaxClassifier(**params).fit, X, y)
    clf = _quietly(TwoLayerSoftmaxClassifier(**params).fit, convert(X), convert(y))
    # Fitted weights and every returned array live in X's namespace.
    for array in clf.coefs_ + clf.intercepts_:
        assert type(array) is type(convert(X))
    proba = clf.predict_proba(convert(X))
    assert type(proba) is type(convert(X))
    assert proba.dtype == convert(X).dtype
    np.testing.assert_allclose(_host(proba), ref.predict_proba(X),
                               atol=PROBA_TOL[dtype])
    np.testing.assert_array_equal(_host(clf.predict(convert(X))), ref.predict(X))
    np.testing.assert_allclose(clf.loss_curve_, ref.loss_curve_,
                               rtol=1e-6 if dtype == "float32" else 1e-10)
    assert clf.score(convert(X), convert(y)) == pytest.approx(ref.score(X, y))


@needs_torch
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_and_its_rollback_on_a_device(iris, solver):
    X, y = iris
    ref = TwoLayerSoftmaxClassifier(solver=solver, hidden_size=8, random_state=0)
    clf = TwoLayerSoftmaxClassifier(solver=solver, hidden_size=8, random_state=0)
    for _ in range(3):
        ref.partial_fit(X, y, classes=[0, 1, 2])
        clf.partial_fit(_torch(X), _torch(y), classes=[0, 1, 2])
    np.testing.assert_allclose(_host(clf.predict_proba(_torch(X))),
                               ref.predict_proba(X), atol=1e-8)
    assert clf.t_ == ref.t_ and clf.n_iter_ == ref.n_iter_ == 3
    # A diverging call changes nothing: weights and optimizer state.
    clf.set_params(learning_rate_init=1e12, reg=0.0)

    def snapshot():
        arrays = clf.coefs_ + clf.intercepts_ + [
            v for v in clf._optimizer_state.values() if hasattr(v, "shape")]
        return [_host(a).copy() for a in arrays], clf.t_

    for _ in range(50):
        before = snapshot()
        try:
            clf.partial_fit(_torch(1e300 * X), _torch(y))
        except ValueError as error:
            assert "diverged" in str(error)
            break
    else:
        pytest.fail("training never diverged")
    after = snapshot()
    assert after[1] == before[1]
    for old, new in zip(before[0], after[0]):
        np.testing.assert_array_equal(new, old)


@needs_torch
@pytest.mark.parametrize("solver", SOLVERS)
def test_training_features_behave_as_on_numpy(iris, solver):
    X, y = iris
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    X_val = X[::3] + 0.1
    params = dict(solver=solver, hidden_size=8, max_iter=8, random_state=0,
                  class_weight={0: 2.0, 1: 1.0, 2: 0.5}, n_iter_no_change=2,
                  tol=0.0)
    ref = _quietly(TwoLayerSoftmaxClassifier(**params).fit, X, y, sample_weight=sw,
                   X_val=X_val, y_val=y[::3])
    clf = _quietly(TwoLayerSoftmaxClassifier(**params).fit, _torch(X), _torch(y),
                   sample_weight=_torch(sw), X_val=_torch(X_val),
                   y_val=_torch(y[::3]))
    np.testing.assert_allclose(clf.validation_scores_, ref.validation_scores_)
    np.testing.assert_allclose(clf.validation_loss_curve_, ref.validation_loss_curve_,
                               rtol=1e-10)
    np.testing.assert_allclose(_host(clf.predict_proba(_torch(X))),
                               ref.predict_proba(X), atol=1e-8)
    # Early stopping on a held-out split, then a warm start on top of it.
    params.update(early_stopping=True, validation_fraction=0.2, warm_start=True)
    params.pop("class_weight")
    ref = _quietly(TwoLayerSoftmaxClassifier(**params).fit, X, y)
    clf = _quietly(TwoLayerSoftmaxClassifier(**params).fit, _torch(X), _torch(y))
    assert clf.validation_scores_ == pytest.approx(ref.validation_scores_)
    _quietly(ref.fit, X, y)
    _quietly(clf.fit, _torch(X), _torch(y))
    assert clf.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(_host(clf.coefs_[1]), ref.coefs_[1], atol=1e-8)


@needs_torch
@pytest.mark.parametrize("solver", SOLVERS)
def test_verbose_and_divergence_on_a_device(iris, solver, capsys):
    X, y = iris
    clf = _quietly(TwoLayerSoftmaxClassifier(solver=solver, hidden_size=8,
                                             max_iter=3, verbose=True).fit,
                   _torch(X), _torch(y))
    assert len(re.findall(r"Iteration \d+, loss = ", capsys.readouterr().out)) == 3
    huge = np.random.RandomState(0).uniform(-1, 1, size=(50, 4)) * 1e307
    with pytest.raises(ValueError, match="diverged"):
        TwoLayerSoftmaxClassifier(solver=solver, max_iter=5, random_state=0).fit(
            _torch(huge), _torch(np.arange(50) % 2))


@needs_torch
def test_callbacks_see_device_weights(iris, iteration_callback):
    X, y = iris
    for solver in SOLVERS:
        types = []

        def record(model, X):
            # A snapshot of the model at this iteration, on the device, that
            # predicts on the device.
            types.extend([type(model.coefs_[0]), type(model.predict_proba(X))])

        clf = TwoLayerSoftmaxClassifier(solver=solver, hidden_size=8, max_iter=3)
        clf.set_callbacks(iteration_callback(record))
        _quietly(clf.fit, _torch(X), _torch(y))
        assert types and set(types) == {torch.Tensor}, solver


# ------------------------------------------- nothing crosses within an epoch
@needs_torch
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_stochastic_solvers_read_back_once_per_epoch(iris, solver, monkeypatch):
    X, y = iris
    counts = {"to_host": 0, "to_device": 0}
    ops_class = _namespace.ArrayAPIOps
    to_float, to_numpy, asarray = (ops_class.to_float, ops_class.to_numpy,
                                   ops_class.asarray)

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(ops_class, "to_float", counted("to_host", to_float))
    monkeypatch.setattr(ops_class, "to_numpy", counted("to_host", to_numpy))
    monkeypatch.setattr(ops_class, "asarray", counted("to_device", asarray))
    epochs, batch = 4, 10  # 15 minibatches an epoch
    _quietly(TwoLayerSoftmaxClassifier(solver=solver, hidden_size=8, batch_size=batch,
                                       max_iter=epochs, n_iter_no_change=100,
                                       random_state=0).fit, _torch(X), _torch(y))
    # Per epoch: the shuffle goes to the device and the loss comes back.
    # A handful more per fit (weights, labels, weight total); nothing per batch.
    per_fit = 6
    assert counts["to_device"] <= epochs + per_fit, counts
    assert counts["to_host"] <= epochs + per_fit, counts


# ------------------------------------------------ scikit-learn's rules, errors
@needs_torch
def test_predicting_in_another_namespace_is_a_clear_error(iris):
    X, y = iris
    clf = _quietly(TwoLayerSoftmaxClassifier(hidden_size=8, max_iter=3).fit,
                   _torch(X), _torch(y))
    with pytest.raises(ValueError, match="must use the same namespace"):
        clf.predict_proba(X)
    numpy_model = _quietly(TwoLayerSoftmaxClassifier(hidden_size=8, max_iter=3).fit,
                           X, y)
    with pytest.raises(ValueError, match="must use the same namespace"):
        numpy_model.predict(_torch(X))


@needs_torch
def test_without_dispatch_tensors_are_converted_as_by_scikit_learn(iris):
    X, y = iris
    with sklearn.config_context(array_api_dispatch=False):
        clf = _quietly(TwoLayerSoftmaxClassifier(hidden_size=8, max_iter=3).fit,
                       _torch(X), _torch(y))
        assert isinstance(clf.coefs_[0], np.ndarray)
        assert isinstance(clf.predict_proba(_torch(X)), np.ndarray)


@needs_torch
def test_string_labels_with_device_data(iris):
    X, y = iris
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = _quietly(TwoLayerSoftmaxClassifier(hidden_size=8, max_iter=10,
                                             random_state=0).fit, _torch(X), labels)
    predicted = clf.predict(_torch(X))
    # Strings cannot live in a tensor: they come back as numpy, as the labels.
    assert isinstance(predicted, np.ndarray) and predicted.dtype.kind == "U"
    assert (predicted == labels).mean() > 0.8


@needs_torch
@pytest.mark.parametrize("solver", SOLVERS)
def test_a_device_model_moved_to_numpy_carries_on_on_numpy(iris, solver):
    # The recipe of the user guide for deploying a model trained on a GPU.
    move_estimator_to = pytest.importorskip(
        "sklearn.utils._array_api").__dict__.get("move_estimator_to")
    if move_estimator_to is None:
        pytest.skip("needs scikit-learn's move_estimator_to")
    X, y = iris
    clf = _quietly(TwoLayerSoftmaxClassifier(solver=solver, hidden_size=8,
                                             max_iter=5, random_state=0).fit,
                   _torch(X), _torch(y))
    expected = _host(clf.predict_proba(_torch(X)))
    moved = move_estimator_to(clf, np, "cpu")
    np.testing.assert_allclose(moved.predict_proba(X), expected, rtol=1e-12)
    if solver != "lbfgs":
        with sklearn.config_context(array_api_dispatch=False):
            moved.partial_fit(X, y)  # the optimizer's state moved too
        assert all(isinstance(v, np.ndarray)
                   for v in moved._optimizer_state.values() if hasattr(v, "shape"))


@needs_torch
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_continuing_in_another_namespace_is_a_clear_error(iris, solver):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver=solver, hidden_size=8, random_state=0)
    clf.partial_fit(_torch(X), _torch(y), classes=[0, 1, 2])
    before = [_host(a).copy() for a in clf.coefs_]
    with sklearn.config_context(array_api_dispatch=False):
        with pytest.raises(ValueError, match="fitted on torch.Tensor"):
            clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="fitted on torch.Tensor"):
        clf.partial_fit(_strict(X), _strict(y))
    for old, new in zip(before, clf.coefs_):  # nothing changed
        np.testing.assert_array_equal(_host(new), old)
    numpy_model = TwoLayerSoftmaxClassifier(solver=solver, hidden_size=8,
                                            warm_start=True, max_iter=2)
    _quietly(numpy_model.fit, X, y)
    with pytest.raises(ValueError, match="fitted on numpy"):
        numpy_model.fit(_torch(X), _torch(y))


# ------------------------------------------------ PyTorch's fused primitives
def _torch_ops():
    compat = _namespace.array_api_compat()
    xp = compat.array_namespace(torch.zeros(1))
    device = torch.device("cpu")
    return _namespace.TorchOps(xp, device), _namespace.ArrayAPIOps(xp, device)


@needs_torch
def test_ops_for_picks_pytorch_primitives_only_for_pytorch():
    assert type(_namespace.ops_for(_torch(np.ones(3)))) is _namespace.TorchOps
    assert type(_namespace.ops_for(_strict(np.ones(3)))) is _namespace.ArrayAPIOps
    assert _namespace.ops_for(np.ones(3)) is _namespace.NUMPY


@needs_torch
def test_pytorch_primitives_give_what_the_standard_ones_give():
    fused, standard = _torch_ops()
    rng = np.random.default_rng(0)
    a, b = _torch(rng.normal(size=(7, 5))), _torch(rng.normal(size=(5, 4)))
    bias = _torch(rng.normal(size=4))
    ST = _torch(rng.normal(size=(4, 9)))
    y = _torch(rng.integers(0, 4, 9))
    values = _torch(rng.uniform(size=9))
    h = _torch(np.maximum(rng.normal(size=(6, 3)), 0))
    dH = _torch(rng.normal(size=(6, 3)))
    idx = _torch(np.array([3, 0, 6, 6]))
    x, target = _torch(rng.normal(size=5)), _torch(rng.normal(size=5))

    def both(method, *args):
        # Fresh copies: some PyTorch primitives work in place.
        results = [getattr(ops, method)(*[arg.clone() if hasattr(arg, "clone") else arg
                                          for arg in args])
                   for ops in (fused, standard)]
        return [_host(r[0] if isinstance(r, tuple) else r) for r in results]

    cases = {
        "affine": ("affine", a, b, bias),
        "affine, column bias": ("affine", b.T, a.T, bias[:, None]),
        "take_rows": ("take_rows", a, idx),
        "take": ("take", values, idx),
        "pick": ("pick", ST, y, None),
        "relu_backward": ("relu_backward", dH, h),
        "add_scaled": ("add_scaled", target, -0.3, x),
    }
    for name, (method, *args) in cases.items():
        got, expected = both(method, *args)
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0, err_msg=name)
    # subtract_at takes the index that pick returns, a vector or one number.
    for scale in (values, 0.25):
        results = []
        for ops in (fused, standard):
            _, where = ops.pick(ST.clone(), y, None)
            results.append(_host(ops.subtract_at(ST.clone(), where, scale)))
        np.testing.assert_allclose(results[0], results[1], rtol=1e-14, atol=0)
    # A zero h is not positive: no gradient flows through it.
    assert np.all(_host(fused.relu_backward(dH, torch.zeros_like(h))) == 0)


@needs_torch
def test_a_pytorch_sgd_step_launches_few_kernels(iris):
    # On a GPU a minibatch step at batch 200 is bound by kernel launches, not
    # arithmetic: count the ATen operations that compute something (views
    # excluded) per extra minibatch.
    from torch.utils._python_dispatch import TorchDispatchMode

    views = {"view", "slice", "select", "permute", "unsqueeze", "squeeze", "alias",
             "as_strided", "expand", "t", "transpose", "_reshape_alias", "detach",
             "lift_fresh", "squeeze_", "_unsafe_view"}

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ not in views:
                self.n += 1
            return func(*args, **(kwargs or {}))

    X, y = iris
    counts = {}
    for epochs in (1, 3):
        clf = TwoLayerSoftmaxClassifier(solver="sgd", hidden_size=8, batch_size=10,
                                        max_iter=epochs, n_iter_no_change=100,
                                        random_state=0)
        with Count() as counter:
            _quietly(clf.fit, _torch(X), _torch(y))
        counts[epochs] = counter.n
    per_step = (counts[3] - counts[1]) / (2 * 15)  # 15 minibatches an epoch
    # 36: the batch's rows and labels (2), forward (3), loss (8), dscores (4),
    # the four gradients and their concatenation (8), the mean (1), penalty
    # (4), update (4), the epoch's loss (2); and the epoch's own work spread
    # over its steps. The plain PyTorch loop of the benchmark takes 36 with
    # autograd; this code took 70 with the standard's functions alone.
    assert per_step <= 37, per_step


def test_an_accelerator_evaluates_the_full_batch_in_large_blocks():
    # On the host, blocks of a 16 MiB budget keep the products in cache; on a
    # device with its own memory they would be too small to fill it, and each
    # block costs dozens of kernel launches: scikit-learn's working_memory
    # (1 GiB by default) applies there.
    from sk_twolayer._loss import TwoLayerLoss
    from sk_twolayer._params import ParamLayout

    layout = ParamLayout(784, 256, 10, np.float32)
    compat = _namespace.array_api_compat()
    xp = compat.array_namespace(_strict(np.ones(1)))
    host = _namespace.ArrayAPIOps(xp, strict.Device("CPU_DEVICE"))
    device = _namespace.ArrayAPIOps(xp, strict.Device("device1"))
    assert not host.on_accelerator and device.on_accelerator
    n = 1_000_000
    host_rows = TwoLayerLoss(layout, ops=host)._rows_per_block(n)
    device_rows = TwoLayerLoss(layout, ops=device)._rows_per_block(n)
    row_bytes = (3 * 256 + 10 + 5) * 4
    assert host_rows == 16 * 2**20 // row_bytes  # a few thousand rows
    assert device_rows == sklearn.get_config()["working_memory"] * 2**20 // row_bytes
    with sklearn.config_context(working_memory=64):
        assert TwoLayerLoss(layout, ops=device)._rows_per_block(n) == (
            64 * 2**20 // row_bytes)
    assert TwoLayerLoss(layout, ops=_namespace.NUMPY)._rows_per_block(n) == host_rows


# ------------------------- inputs from any namespace, as scikit-learn takes them
@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_takes_classes_from_the_input_namespace(iris, namespace, solver):
    convert = CONVERTERS[namespace]
    X, y = iris
    params = dict(solver=solver, hidden_size=8, random_state=0)
    ref = TwoLayerSoftmaxClassifier(**params).partial_fit(X, y, classes=[0, 1, 2])
    clf = TwoLayerSoftmaxClassifier(**params).partial_fit(
        convert(X), convert(y), classes=convert(np.array([2, 0, 1])))
    # Numeric classes live where the weights live; predict works off them.
    assert type(clf.classes_) is type(convert(X))
    np.testing.assert_array_equal(_host(clf.classes_), [0, 1, 2])
    predicted = clf.predict(convert(X))
    assert type(predicted) is type(convert(X))
    np.testing.assert_array_equal(_host(predicted), ref.predict(X))
    # A later call may repeat the classes, from any namespace, in any order.
    clf.partial_fit(convert(X), convert(y), classes=np.array([0, 1, 2]))
    clf.partial_fit(convert(X), convert(y), classes=convert(np.array([1, 2, 0])))
    with pytest.raises(ValueError, match="differs"):
        clf.partial_fit(convert(X), convert(y), classes=convert(np.array([0, 1])))


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba",
                                    "decision_function"])
def test_cross_val_predict_in_the_input_namespace(iris, namespace, method):
    from sklearn.model_selection import cross_val_predict

    convert = CONVERTERS[namespace]
    X, y = iris
    model = TwoLayerSoftmaxClassifier(hidden_size=8, max_iter=20, random_state=0)
    expected = _quietly(cross_val_predict, model, X, y, cv=3, method=method)
    got = _quietly(cross_val_predict, model, convert(X), convert(y), cv=3,
                   method=method)
    assert type(got) is type(convert(X))
    np.testing.assert_allclose(_host(got), expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_searches_and_cross_validation_score_in_the_input_namespace(iris, namespace):
    from sklearn.model_selection import GridSearchCV, cross_validate

    convert = CONVERTERS[namespace]
    X, y = iris
    model = TwoLayerSoftmaxClassifier(hidden_size=8, max_iter=20, random_state=0)
    scoring = [None, "accuracy", "neg_log_loss"]
    for score in scoring:
        expected = _quietly(cross_validate, model, X, y, cv=3, scoring=score)
        got = _quietly(cross_validate, model, convert(X), convert(y), cv=3,
                       scoring=score)
        np.testing.assert_allclose(got["test_score"], expected["test_score"],
                                   rtol=1e-7, err_msg=str(score))
    grid = {"reg": [1e-4, 1e-1]}
    expected = _quietly(GridSearchCV(model, grid, cv=3, scoring="neg_log_loss").fit,
                        X, y)
    search = _quietly(GridSearchCV(model, grid, cv=3, scoring="neg_log_loss").fit,
                      convert(X), convert(y))
    assert search.best_params_ == expected.best_params_
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               expected.cv_results_["mean_test_score"], rtol=1e-7)
    assert type(search.predict_proba(convert(X))) is type(convert(X))


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int16", "float32"])
def test_numeric_labels_keep_their_dtype_on_the_device(iris, namespace, dtype):
    convert = CONVERTERS[namespace]
    X, y = iris
    labels = (np.array([3, 5, 7]) if dtype.startswith("float")
              else np.array([3, 250, 7]))[y].astype(dtype)
    for y_in in (labels, convert(labels)):  # a host y beside X, or y there too
        clf = _quietly(TwoLayerSoftmaxClassifier(hidden_size=8, max_iter=20,
                                                 random_state=0).fit, convert(X), y_in)
        assert type(clf.classes_) is type(convert(X))
        predicted = clf.predict(convert(X))
        assert type(predicted) is type(convert(X))
        assert predicted.dtype == convert(labels).dtype
        assert (_host(predicted) == labels).mean() > 0.8


@needs_torch
@pytest.mark.parametrize("solver", SOLVERS)
def test_a_tensor_that_requires_grad_is_fitted_on_its_values(iris, solver):
    X, y = iris
    X_grad = _torch(X).requires_grad_(True)
    params = dict(solver=solver, hidden_size=8, max_iter=3, random_state=0)
    ref = _quietly(TwoLayerSoftmaxClassifier(**params).fit, _torch(X), _torch(y),
                   X_val=_torch(X[::3]), y_val=_torch(y[::3]))
    clf = _quietly(TwoLayerSoftmaxClassifier(**params).fit, X_grad, _torch(y),
                   X_val=X_grad[::3], y_val=_torch(y[::3]))
    for array in clf.coefs_ + clf.intercepts_:
        assert not array.requires_grad and array.grad_fn is None
    np.testing.assert_allclose(_host(clf.predict_proba(_torch(X))),
                               _host(ref.predict_proba(_torch(X))), rtol=1e-12)
    assert X_grad.grad is None  # no gradient was sent back into the input
    if solver != "lbfgs":
        # Continuing, on a plain tensor or one that requires grad.
        clf.partial_fit(_torch(X), _torch(y))
        clf.partial_fit(X_grad, _torch(y))
        for array in clf.coefs_ + clf.intercepts_ + [
                v for v in clf._optimizer_state.values() if hasattr(v, "shape")]:
            assert not array.requires_grad
    # Predictions on it are made from its values too: no autograd history.
    proba = clf.predict_proba(X_grad)
    assert not proba.requires_grad
    np.testing.assert_array_equal(_host(proba), _host(clf.predict_proba(_torch(X))))


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_validation_data_from_another_namespace_follow_X(iris, namespace):
    import scipy.sparse as sp

    convert = CONVERTERS[namespace]
    X, y = iris
    X_val, y_val = X[::3] + 0.1, y[::3]
    params = dict(hidden_size=8, max_iter=5, random_state=0)
    ref = _quietly(TwoLayerSoftmaxClassifier(**params).fit, X, y,
                   X_val=X_val, y_val=y_val)
    mixes = [(convert(X), X_val, y_val), (convert(X), X_val, convert(y_val)),
             (X, convert(X_val), convert(y_val))]
    for X_fit, X_v, y_v in mixes:
        clf = _quietly(TwoLayerSoftmaxClassifier(**params).fit, X_fit, y, X_val=X_v,
                       y_val=y_v)
        np.testing.assert_allclose(clf.validation_loss_curve_,
                                   ref.validation_loss_curve_, rtol=1e-10)
    # Sparse validation data cannot move to a device: a clear error, and the
    # fitted model is kept.
    before = [_host(a).copy() for a in clf.coefs_]
    clf = _quietly(TwoLayerSoftmaxClassifier(**params).fit, convert(X), y)
    before = [_host(a).copy() for a in clf.coefs_]
    with pytest.raises(TypeError, match="X_val is a sparse matrix"):
        clf.fit(convert(X), y, X_val=sp.csr_matrix(X_val), y_val=y_val)
    for old, new in zip(before, clf.coefs_):
        np.testing.assert_array_equal(_host(new), old)
