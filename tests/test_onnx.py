"""Parity of the ONNX export (sk_twolayer.onnx) with the estimator.

Every case fits a small model, exports it, runs the graph in onnxruntime on
held-out rows and asserts that the labels are identical and that the
probabilities agree within 1e-5 (float32 graph) or 1e-9 (float64 graph).
The largest probability difference of each case is collected and printed
at the end of the module (``python -m pytest tests/test_onnx.py -s``).
"""

import subprocess
import sys

import numpy as np
import pytest

skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")

from sklearn.datasets import (  # noqa: E402
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
)
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from sk_twolayer import TwoLayerSoftmaxClassifier  # noqa: E402
from sk_twolayer.onnx import to_onnx  # noqa: E402

# The fits are deliberately short: parity does not need a converged model.
pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "logistic")
DTYPES = {"float32": np.float32, "float64": np.float64}
ATOL = {"float32": 1e-5, "float64": 1e-9}
DATASETS = {
    "iris": load_iris,
    "wine": load_wine,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
}
NO_ZIPMAP = {"zipmap": False}

# Largest probability difference of each case, printed at the end.
PARITY = {}


@pytest.fixture(scope="module", autouse=True)
def parity_table():
    yield PARITY
    if PARITY:
        width = max(len(case) for case in PARITY)
        print(f"\n{'case':{width}}  max |p_onnx - p_model|")
        for case, diff in PARITY.items():
            print(f"{case:{width}}  {diff:.2e}")


def _split(name, dtype, seed=0):
    X, y = DATASETS[name](return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(dtype)
    return train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)


def _session(onx):
    return ort.InferenceSession(onx.SerializeToString(),
                                providers=["CPUExecutionProvider"])


def _run(onx, X):
    sess = _session(onx)
    return sess.run(None, {sess.get_inputs()[0].name: X})


def _check_parity(case, model, X, dtype_name, expected_labels=None):
    """Export ``model`` for ``X``'s dtype, run it and compare with the model."""
    onx = to_onnx(model, X[:1], options=NO_ZIPMAP)
    labels, proba = _run(onx, X)
    expected = model.predict(X) if expected_labels is None else expected_labels
    assert labels.shape == expected.shape
    assert np.array_equal(labels, expected), case
    assert proba.dtype == DTYPES[dtype_name]
    diff = float(np.max(np.abs(proba - model.predict_proba(X))))
    PARITY[case] = diff
    assert diff <= ATOL[dtype_name], (case, diff)
    return labels, proba


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("dataset", ["breast_cancer", "wine"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_parity_each_activation(activation, dataset, dtype_name):
    # breast_cancer is binary (the model still has two softmax outputs),
    # wine has three classes.
    X_train, X_test, y_train, _ = _split(dataset, DTYPES[dtype_name])
    model = TwoLayerSoftmaxClassifier(hidden_size=16, activation=activation,
                                      max_iter=10, random_state=0)
    model.fit(X_train, y_train)
    assert model.coefs_[0].dtype == DTYPES[dtype_name]
    _check_parity(f"{activation} {dataset} {dtype_name}", model, X_test,
                  dtype_name)


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
def test_parity_each_solver(solver, dtype_name):
    X_train, X_test, y_train, _ = _split("digits", DTYPES[dtype_name])
    model = TwoLayerSoftmaxClassifier(hidden_size=32, solver=solver, max_iter=5,
                                      random_state=0).fit(X_train, y_train)
    _check_parity(f"solver={solver} digits {dtype_name}", model, X_test,
                  dtype_name)


def _labelled(kind, y):
    names = np.array(["class_a", "class_b", "class_c"])
    return {"int": y + 10, "str": names[y], "bool": y == 1,
            "float": y.astype(np.float64)}[kind]


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("kind", ["int", "str", "bool", "float"])
def test_parity_label_types(kind, dtype_name):
    X_train, X_test, y_train, y_test = _split("iris", DTYPES[dtype_name])
    y_train = _labelled(kind, y_train)
    model = TwoLayerSoftmaxClassifier(hidden_size=8, max_iter=30,
                                      random_state=0).fit(X_train, y_train)
    predicted = model.predict(X_test)
    # ONNX classifiers give int64 labels for integers, booleans and
    # whole-number floats, strings for strings.
    expected = predicted if kind == "str" else predicted.astype(np.int64)
    labels, _ = _check_parity(f"labels={kind} iris {dtype_name}", model, X_test,
                              dtype_name, expected_labels=expected)
    assert labels.dtype == (object if kind == "str" else np.int64)


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_parity_pipeline(dtype_name):
    X, y = load_digits(return_X_y=True)
    X = X.astype(DTYPES[dtype_name])
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.3,
                                                   random_state=0, stratify=y)
    pipe = make_pipeline(
        StandardScaler(),
        TwoLayerSoftmaxClassifier(hidden_size=32, max_iter=20, random_state=0),
    ).fit(X_train, y_train)
    _check_parity(f"pipeline scaler+ours digits {dtype_name}", pipe, X_test,
                  dtype_name)


@pytest.mark.parametrize("opset", [11, 13])
def test_parity_older_opsets(opset):
    # Softmax changed its axis semantics at opset 13; both must give rows.
    X_train, X_test, y_train, _ = _split("wine", np.float32)
    model = TwoLayerSoftmaxClassifier(hidden_size=16, activation="leaky_relu",
                                      max_iter=10, random_state=0)
    model.fit(X_train, y_train)
    onx = to_onnx(model, X_test[:1], options=NO_ZIPMAP, target_opset=opset)
    assert max(o.version for o in onx.opset_import if o.domain == "") <= opset
    labels, proba = _run(onx, X_test)
    assert np.array_equal(labels, model.predict(X_test))
    diff = float(np.max(np.abs(proba - model.predict_proba(X_test))))
    PARITY[f"opset {opset} leaky_relu wine float32"] = diff
    assert diff <= ATOL["float32"]


def test_float64_model_in_a_float32_graph():
    X_train, X_test, y_train, _ = _split("wine", np.float64)
    model = TwoLayerSoftmaxClassifier(hidden_size=16, max_iter=30,
                                      random_state=0).fit(X_train, y_train)
    _check_parity("float64 weights float32 graph wine", model,
                  X_test.astype(np.float32), "float32")


def test_dataframe_input_one_column_per_input():
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    X = X.astype(np.float32)
    model = TwoLayerSoftmaxClassifier(hidden_size=8, max_iter=30,
                                      random_state=0).fit(X, y)
    onx = to_onnx(model, X[:1], options=NO_ZIPMAP)
    sess = _session(onx)
    names = [i.name for i in sess.get_inputs()]
    assert len(names) == X.shape[1]
    feed = {name: X[[col]].to_numpy() for name, col in zip(names, X.columns)}
    labels, proba = sess.run(None, feed)
    assert isinstance(X, pd.DataFrame)
    assert np.array_equal(labels, model.predict(X))
    assert np.max(np.abs(proba - model.predict_proba(X))) <= ATOL["float32"]


# ------------------------------------------------------------------ options
@pytest.fixture(scope="module")
def string_model():
    X_train, X_test, y_train, _ = _split("iris", np.float32)
    y_train = _labelled("str", y_train)
    model = TwoLayerSoftmaxClassifier(hidden_size=8, max_iter=30,
                                      random_state=0).fit(X_train, y_train)
    return model, X_test


def test_zipmap_default_gives_a_dict_per_row(string_model):
    model, X = string_model
    labels, rows = _run(to_onnx(model, X[:1]), X)
    proba = model.predict_proba(X)
    assert np.array_equal(labels, model.predict(X))
    assert len(rows) == len(X)
    for row, expected in zip(rows, proba):
        assert list(row) == model.classes_.tolist()
        assert np.allclose(list(row.values()), expected, atol=1e-5, rtol=0)


def test_zipmap_columns_gives_one_output_per_class(string_model):
    model, X = string_model
    onx = to_onnx(model, X[:1], options={"zipmap": "columns"})
    outputs = _run(onx, X)
    assert len(outputs) == 1 + len(model.classes_)
    assert np.array_equal(outputs[0], model.predict(X))
    proba = np.column_stack(outputs[1:])
    assert np.allclose(proba, model.predict_proba(X), atol=1e-5, rtol=0)


def test_output_class_labels_and_nocl(string_model):
    model, X = string_model
    onx = to_onnx(model, X[:1], options={"zipmap": False,
                                         "output_class_labels": True})
    labels, proba, classes = _run(onx, X)
    assert classes.tolist() == model.classes_.tolist()
    assert np.array_equal(labels, model.predict(X))
    # nocl: class indices instead of the labels
    labels, _ = _run(to_onnx(model, X[:1], options={"zipmap": False,
                                                     "nocl": True}), X)
    assert labels.dtype == np.int64
    assert np.array_equal(model.classes_[labels], model.predict(X))


def test_default_input_is_float32_matrix(string_model):
    model, X = string_model
    sess = _session(to_onnx(model, options=NO_ZIPMAP))
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.type, inp.shape[1]) == ("X", "tensor(float)",
                                                  model.n_features_in_)
    labels, _ = sess.run(None, {"X": X})
    assert np.array_equal(labels, model.predict(X))


def test_skl2onnx_to_onnx_works_after_import(string_model):
    # Importing sk_twolayer.onnx registered the converter with skl2onnx.
    model, X = string_model
    onx = skl2onnx.to_onnx(model, X[:1], options={id(model): NO_ZIPMAP})
    labels, _ = _run(onx, X)
    assert np.array_equal(labels, model.predict(X))


# ------------------------------------------------------------------- errors
def test_float64_graph_with_zipmap_errors_clearly(string_model):
    model, X = string_model
    with pytest.raises(ValueError, match="float64 graph cannot use the option "
                                         "zipmap=True"):
        to_onnx(model, X[:1].astype(np.float64))


def test_unfitted_model_errors():
    with pytest.raises(NotFittedError):
        to_onnx(TwoLayerSoftmaxClassifier())


def test_wrong_number_of_features_errors(string_model):
    model, X = string_model
    with pytest.raises(RuntimeError, match="has 3 features, but the model was "
                                           "fitted on 4"):
        to_onnx(model, X[:1, :3])


def test_unsupported_labels_error(string_model):
    model, X = string_model
    broken = TwoLayerSoftmaxClassifier()
    broken.__dict__.update(model.__dict__)
    broken.classes_ = np.array([0.5, 1.5, 2.5])
    with pytest.raises(ValueError, match="not whole numbers"):
        to_onnx(broken, X[:1])


def test_unsupported_activation_errors(string_model):
    model, X = string_model
    broken = TwoLayerSoftmaxClassifier()
    broken.__dict__.update(model.__dict__)
    broken.activation = "softplus"
    with pytest.raises(ValueError, match="Cannot export activation='softplus'"):
        to_onnx(broken, X[:1])


def test_package_import_does_not_load_onnx():
    code = ("import sys, sk_twolayer; "
            "print(sorted(m for m in ('sk_twolayer.onnx', 'skl2onnx', 'onnx') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[]"
