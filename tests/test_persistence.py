"""Saving and loading fitted models: skops (no arbitrary code on load), pickle, joblib."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier

sio = pytest.importorskip("skops.io")

SOLVERS = ["lbfgs", "sgd", "adam"]
OURS = "sk_twolayer._classifier.TwoLayerSoftmaxClassifier"


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), np.array(["setosa", "versicolor",
                                                         "virginica"])[y]


def _fitted(solver, X, y):
    clf = TwoLayerSoftmaxClassifier(solver=solver, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


def _assert_identical(a, b, where="model"):
    """Equal values of equal types, arrays to the bit and in the same dtype."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, np.random.RandomState):
        for x, y in zip(a.get_state(), b.get_state()):
            np.testing.assert_array_equal(x, y, err_msg=where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("solver", SOLVERS)
def test_skops_asks_to_trust_only_the_estimator(iris, solver):
    data = sio.dumps(_fitted(solver, *iris))
    assert sio.get_untrusted_types(data=data) == [OURS]


@pytest.mark.parametrize("solver", SOLVERS)
def test_skops_round_trip_is_exact(iris, solver):
    X, y = iris
    clf = _fitted(solver, X, y)
    loaded = sio.loads(sio.dumps(clf), trusted=[OURS])
    _assert_identical(clf.__dict__, loaded.__dict__)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    # Without trusting our type, skops refuses to load it.
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.loads(sio.dumps(clf))


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_after_a_skops_load_continues_exactly(iris, solver):
    X, y = iris
    clf = _fitted(solver, X, y)
    loaded = sio.loads(sio.dumps(clf), trusted=[OURS])
    for model in (clf, loaded):
        for _ in range(3):  # momentum or Adam's moments, shuffles, schedule
            model.partial_fit(X, y)
    _assert_identical(clf.__dict__, loaded.__dict__)


@pytest.mark.parametrize("solver", SOLVERS)
def test_pickle_and_joblib_round_trips_are_exact(iris, solver):
    X, y = iris
    clf = _fitted(solver, X, y)
    _assert_identical(clf.__dict__, pickle.loads(pickle.dumps(clf)).__dict__)
    buffer = io.BytesIO()
    joblib.dump(clf, buffer)
    buffer.seek(0)
    _assert_identical(clf.__dict__, joblib.load(buffer).__dict__)


def test_the_identity_check_catches_a_difference(iris):
    # The comparison above must be able to fail: one changed bit in the
    # optimizer state is caught.
    X, y = iris
    clf = _fitted("adam", X, y)
    other = pickle.loads(pickle.dumps(clf))
    other._optimizer_state["_m"][0] = np.nextafter(other._optimizer_state["_m"][0],
                                                    np.inf)
    with pytest.raises(AssertionError, match="_m"):
        _assert_identical(clf.__dict__, other.__dict__)
