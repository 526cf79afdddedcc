"""Scaling out with Dask: Incremental, a distributed search, pickling, faults.

The tests run on a ``distributed.LocalCluster`` on loopback (two worker
processes, no dashboard): one for the module, and one of its own for the
test that kills a worker. The module is skipped only when the ``dask``
extra is not installed.
"""

import contextlib
import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest

_REASON = 'needs the dask extra: python -m pip install ".[dask]"'
da = pytest.importorskip("dask.array", reason=_REASON)
distributed = pytest.importorskip("distributed", reason=_REASON)
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers", reason=_REASON)
dask_ml_search = pytest.importorskip("dask_ml.model_selection", reason=_REASON)

import joblib  # noqa: E402
import clusters  # noqa: E402  (tests/, on sys.path)
from distributed import Client  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from sk_twolayer import TwoLayerSoftmaxClassifier  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)

GRID = {"reg": [1e-4, 1e-2, 1e-1], "hidden_size": [8, 32]}
SCORE_KEYS = ("split0_test_score", "split1_test_score", "split2_test_score",
              "mean_test_score", "std_test_score", "rank_test_score")
# A search that cannot finish within this is hung, not slow.
SEARCH_TIMEOUT = 90


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Local fits use one BLAS thread, like Dask's workers (and 2 cores)."""
    with threadpool_limits(1):
        yield


@contextlib.contextmanager
def _two_processes():
    """A client of a two-process LocalCluster on 127.0.0.1, both closed
    within a bound on the way out (tests/clusters.py)."""
    with clusters.of_processes(2) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def client():
    """A cluster for the tests that kill no worker, shared by them."""
    with _two_processes() as c:
        yield c


@pytest.fixture
def own_client():
    """A cluster of the test's own, closed after it (its worker is killed)."""
    with _two_processes() as c:
        yield c


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def _search():
    return GridSearchCV(
        TwoLayerSoftmaxClassifier(random_state=0, max_iter=100), GRID, cv=3,
        n_jobs=-1,
    )


@pytest.fixture(scope="module")
def reference_search(digits):
    """The search on the default (local) backend, run once for the module."""
    X, y = digits
    with threadpool_limits(1):
        return _search().set_params(n_jobs=1).fit(X, y)


def _assert_same_search(result, reference):
    assert result.best_params_ == reference.best_params_
    for key in SCORE_KEYS:
        np.testing.assert_array_equal(result.cv_results_[key],
                                      reference.cv_results_[key], err_msg=key)


# ------------------------------------------------------------- Incremental
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_incremental_matches_in_memory_fit(client, digits_split, solver):
    X_train, X_test, y_train, y_test = digits_split
    passes, rows = 15, 420
    params = dict(solver=solver, hidden_size=64, random_state=0)

    in_memory = TwoLayerSoftmaxClassifier(max_iter=passes, **params)
    in_memory.fit(X_train, y_train)
    expected = in_memory.score(X_test, y_test)

    dX = da.from_array(X_train, chunks=(rows, -1))
    dy = da.from_array(y_train, chunks=rows)
    dX_test = da.from_array(X_test, chunks=(rows, -1))
    assert dX.numblocks[0] > 1

    inc = dask_ml_wrappers.Incremental(
        TwoLayerSoftmaxClassifier(**params), scoring="accuracy", random_state=0
    )
    for _ in range(passes):
        inc.partial_fit(dX, dy, classes=np.unique(y_train))

    # Every pass streamed every block through partial_fit, one epoch each.
    model = inc.estimator_
    assert model.t_ == passes * X_train.shape[0]
    assert model.n_iter_ == passes * dX.numblocks[0]

    predicted = inc.predict(dX_test)  # lazy, one task per block
    assert isinstance(predicted, da.Array)
    assert predicted.numblocks[0] == dX_test.numblocks[0]
    predicted = predicted.compute()
    accuracy = np.mean(predicted == y_test)
    assert inc.score(dX_test, y_test) == pytest.approx(accuracy)
    np.testing.assert_array_equal(predicted, model.predict(X_test))

    print(f"{solver}: Incremental {accuracy:.4f}, in-memory {expected:.4f}")
    assert accuracy > 0.9
    assert abs(accuracy - expected) <= 0.03


# ------------------------------------------------------ distributed search
def test_grid_search_on_dask_backend_matches_default(client, digits,
                                                     reference_search):
    X, y = digits
    with joblib.parallel_backend("dask"):
        search = _search().fit(X, y)
    # The fits ran on the cluster's worker processes.
    assert len(client.scheduler_info()["workers"]) == 2
    print("default:", reference_search.best_params_,
          reference_search.cv_results_["mean_test_score"].round(4))
    print("dask:   ", search.best_params_,
          search.cv_results_["mean_test_score"].round(4))
    _assert_same_search(search, reference_search)
    np.testing.assert_array_equal(search.predict(X),
                                  reference_search.predict(X))


# ---------------------------------------------------------------- pickling
def test_models_pickle_between_processes(client, digits):
    X, y = digits
    X32 = X.astype(np.float32)
    worker_pids = set(client.run(os.getpid).values())
    assert os.getpid() not in worker_pids

    fitted = [
        TwoLayerSoftmaxClassifier(hidden_size=16, random_state=0).fit(X, y),
        TwoLayerSoftmaxClassifier(hidden_size=16, random_state=0).fit(X32, y),
        TwoLayerSoftmaxClassifier(hidden_size=16, solver="adam", max_iter=5,
                                  random_state=0).fit(X32, y),
    ]
    for model in fitted:
        dtype = model.coefs_[0].dtype
        Xd = X.astype(dtype)
        # A fitted model shipped to a worker predicts exactly as it does here.
        remote = client.submit(model.predict_proba, Xd, pure=False).result()
        local = model.predict_proba(Xd)
        assert remote.dtype == local.dtype == dtype
        np.testing.assert_array_equal(remote, local)
        # And it comes back intact.
        back = client.submit(pickle.loads, pickle.dumps(model),
                             pure=False).result()
        assert back.coefs_[0].dtype == dtype
        np.testing.assert_array_equal(back.predict_proba(Xd), local)

    # Fitting on a worker returns a float32 model like a local fit.
    unfitted = TwoLayerSoftmaxClassifier(hidden_size=16, random_state=0)
    remote_fit = client.submit(clone(unfitted).fit, X32, y, pure=False).result()
    local_fit = clone(unfitted).fit(X32, y)
    assert remote_fit.coefs_[0].dtype == np.float32
    assert remote_fit.predict_proba(X32).dtype == np.float32
    np.testing.assert_allclose(remote_fit.coefs_[0], local_fit.coefs_[0],
                               rtol=1e-3, atol=1e-4)
    assert np.mean(remote_fit.predict(X32) == local_fit.predict(X32)) > 0.99

    # partial_fit state (optimizer, shuffling RNG, samples seen) survives the
    # trip: one more epoch on a worker equals one more epoch here.
    classes = np.unique(y)
    started = TwoLayerSoftmaxClassifier(hidden_size=16, solver="sgd",
                                        random_state=0)
    started.partial_fit(X32, y, classes=classes).partial_fit(X32, y)
    shipped = pickle.loads(pickle.dumps(started))
    remote_step = client.submit(shipped.partial_fit, X32, y,
                                pure=False).result()
    local_step = started.partial_fit(X32, y)
    assert remote_step.t_ == local_step.t_ == 3 * X.shape[0]
    assert remote_step.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(remote_step.coefs_[0], local_step.coefs_[0],
                               rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ faults
def _keys_only_on(client, worker):
    """Keys in memory on ``worker`` and on no other worker."""
    return [key for key, holders in client.who_has().items()
            if list(holders) == [worker]]


def test_dask_ml_search_survives_a_killed_worker(own_client, digits,
                                                 reference_search):
    """Kill a busy worker that holds data no one else has; the search ends
    with the same cv_results_ as the in-memory search.

    This is the recipe of docs/scaling_out.rst: dask-ml's GridSearchCV with
    ``iid=False`` and a numeric ``error_score``. It puts X, y, the CV splits
    and every fit in one task graph, so the scheduler can rerun whatever the
    dead worker held. (With joblib's dask backend the same kill raises
    FutureCancelledError, since the data joblib scatters cannot be rebuilt;
    the docs page gives the counts.)
    """
    X, y = digits
    client = own_client
    worker_pids = client.run(os.getpid)
    outcome = {}

    def run_search():
        try:
            outcome["search"] = dask_ml_search.GridSearchCV(
                _search().estimator, GRID, cv=3, iid=False,
                error_score=-np.inf,
            ).fit(X, y)
        except Exception as exc:  # recorded and asserted on below
            outcome["error"] = exc

    thread = threading.Thread(target=run_search, daemon=True)
    thread.start()
    victim = in_flight = held = None
    deadline = time.monotonic() + SEARCH_TIMEOUT
    while thread.is_alive() and victim is None and time.monotonic() < deadline:
        # A worker that is running tasks and holds the only copy of some
        # result or input: its loss costs both work and data.
        for worker, keys in client.processing().items():
            only_here = _keys_only_on(client, worker) if keys else []
            if only_here:
                os.kill(worker_pids[worker], signal.SIGKILL)
                victim, in_flight, held = worker, keys, only_here
                break
        else:
            time.sleep(0.01)
    thread.join(SEARCH_TIMEOUT)
    assert not thread.is_alive(), "the search hung after a worker was killed"
    assert victim is not None, "the search ended before a worker could be killed"
    assert in_flight and held
    assert victim not in client.scheduler_info()["workers"]
    print(f"killed {victim} running {len(in_flight)} task(s), the only holder "
          f"of {[str(key)[:40] for key in held]}")

    assert "error" not in outcome, f"the search failed: {outcome['error']!r}"
    search = outcome["search"]
    _assert_same_search(search, reference_search)
    expected_params = reference_search.cv_results_["params"]
    assert search.cv_results_["params"] == expected_params
