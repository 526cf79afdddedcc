"""Data-parallel fits on a real Dask cluster: ``sk_twolayer.dask``.

The fits run on ``distributed.LocalCluster`` worker processes on loopback.
They check that the data-parallel fit is the in-memory fit (same objective,
same model for any chunking, empty blocks included, and any number of
workers), that the data are read once and aligned on the workers, that the
client sends the parameters once and receives one gradient per evaluation,
that the client's memory does not grow with the rows, that a cluster with
room for the rows once can fit them, that a worker lost mid-fit loses
nothing, and that bad input gets a clear error. The module is skipped only
when the ``dask`` extra is not installed.
"""

import contextlib
import functools
import inspect
import os
import pickle
import re
import signal
import threading
import time
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

_REASON = 'needs the dask extra: python -m pip install ".[dask]"'
da = pytest.importorskip("dask.array", reason=_REASON)
dd = pytest.importorskip("dask.dataframe", reason=_REASON)
distributed = pytest.importorskip("distributed", reason=_REASON)

import dask  # noqa: E402
import pandas as pd  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from sk_twolayer import TwoLayerSoftmaxClassifier  # noqa: E402
from sk_twolayer._loss import TwoLayerLoss  # noqa: E402
from sk_twolayer._params import ParamLayout  # noqa: E402
from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier  # noqa: E402
from sk_twolayer.dask import _config, _faults, _objective, _placement, _worker  # noqa: E402
from sk_twolayer.dask._rows import DaskRows  # noqa: E402

import clusters  # noqa: E402  (tests/, on sys.path)
from fault_campaign import left_after  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)

PARAMS = dict(hidden_size=16, max_iter=50, random_state=0)
# A data-parallel fit is the in-memory fit up to rounding.
PROBA_TOL = 1e-6


# Clusters of worker processes, closed within a bound (see tests/clusters.py).
_cluster, _new_cluster, _close = clusters.of_processes, clusters.new, clusters.close


@pytest.fixture(scope="module")
def client():
    """Two worker processes, shared by the tests that kill none."""
    with _cluster(2) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _on(client, **params):
    """The estimator, set to fit with ``client``."""
    clf = DaskTwoLayerSoftmaxClassifier(**params)
    clf.client = client
    return clf


def _dask(a, rows):
    """``a`` as a Dask array of row blocks (a number, or explicit sizes)."""
    return da.from_array(a, chunks=(rows,) + (-1,) * (a.ndim - 1))


def _assert_same_model(got, expected, X):
    assert got.n_iter_ == expected.n_iter_
    np.testing.assert_allclose(got.predict_proba(X), expected.predict_proba(X),
                               rtol=0, atol=PROBA_TOL)
    np.testing.assert_array_equal(got.predict(X), expected.predict(X))
    np.testing.assert_allclose(got.loss_curve_, expected.loss_curve_, rtol=1e-9)


# ------------------------------------------------------- exactly our objective
RAGGED = [(1797,), (500, 500, 500, 297), (1, 600, 17, 999, 180), (113,) * 15 + (102,)]


@pytest.mark.parametrize("rows", RAGGED, ids=lambda r: f"{len(r)}blocks")
def test_loss_and_gradient_equal_the_in_memory_ones(client, digits, rows):
    X, y = digits
    rng = np.random.default_rng(0)
    sw = rng.uniform(0, 2, len(y))
    est = DaskTwoLayerSoftmaxClassifier(hidden_size=16, reg=1e-3,
                                        class_weight="balanced")
    data = DaskRows(est, client, _dask(X, rows), _dask(y, rows), _dask(sw, rows),
                    first_call=True)
    layout = ParamLayout(64, 16, 10)
    local = TwoLayerLoss(layout, reg=1e-3)
    loss = data.objective(local)
    assert data.hold_out(est, (None, None, None), None, False) is None
    # The same weights as in memory: the sample weights times the balanced
    # class weights of all the rows.
    weights = est._sample_weight(y, np.arange(10), sw, False, np.float64)
    for seed in range(3):
        theta = np.random.default_rng(seed).normal(scale=0.3, size=layout.size)
        value, grad = loss.loss_gradient(theta)
        expected_value, expected_grad = local.loss_gradient(theta, X, y, weights)
        assert value == pytest.approx(expected_value, rel=1e-12)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-12,
                                   atol=1e-12 * np.abs(expected_grad).max())


@pytest.mark.parametrize("rows", RAGGED[1:], ids=lambda r: f"{len(r)}blocks")
def test_fit_is_the_in_memory_fit_for_any_chunking(client, digits, rows):
    X, y = digits
    expected = TwoLayerSoftmaxClassifier(**PARAMS).fit(X, y)
    got = DaskTwoLayerSoftmaxClassifier(**PARAMS).fit(_dask(X, rows), _dask(y, rows))
    _assert_same_model(got, expected, X)
    for array in got.coefs_ + got.intercepts_ + [got.classes_]:
        assert isinstance(array, np.ndarray)


def test_fit_is_the_same_on_one_and_on_three_workers(digits):
    # (The module's other fits run on two worker processes; these clusters
    # run their workers in this process, which starts them in no time.)
    X, y = digits
    expected = TwoLayerSoftmaxClassifier(**PARAMS).fit(X, y)
    for n_workers in (1, 3):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1,
                          processes=False, dashboard_address=":0") as cluster, \
                Client(cluster) as c:
            got = _on(c, **PARAMS).fit(
                _dask(X, 300), _dask(y, 300))
            assert len(c.scheduler_info()["workers"]) == n_workers
        _assert_same_model(got, expected, X)


@pytest.mark.parametrize("case", [
    # ten equal blocks all on one of two one-thread workers: five move
    ({"a": 1, "b": 1}, ["a"] * 10, [10] * 10, {"a": 50, "b": 50}, 5),
    # already balanced: nothing moves
    ({"a": 1, "b": 1}, ["a", "b"] * 3, [7] * 6, {"a": 21, "b": 21}, 0),
    # a two-thread worker gets twice the rows of a one-thread worker
    ({"a": 2, "b": 1}, ["b"] * 6, [4] * 6, {"a": 16, "b": 8}, 4),
    # ragged blocks: the big one stays, small ones fill the other worker
    ({"a": 1, "b": 1}, ["a"] * 5, [40, 10, 10, 10, 10], {"a": 40, "b": 40}, 4),
    # a block whose holder left the cluster goes to the least loaded worker
    ({"a": 1, "b": 1}, ["a", "gone", "a"], [5, 5, 5], {"a": 10, "b": 5}, 1),
    # empty blocks count for nothing and stay where they are
    ({"a": 1, "b": 1}, ["a", "a", "a", "b"], [0, 6, 0, 6], {"a": 6, "b": 6}, 0),
])
def test_blocks_are_placed_for_equal_rows_per_thread(case):
    nthreads, holders, n_rows, expected_rows, expected_moves = case
    place = _placement.balance(nthreads, [[h] for h in holders], np.array(n_rows))
    rows = dict.fromkeys(nthreads, 0)
    for worker, n in zip(place, n_rows):
        rows[worker] += n
    assert rows == expected_rows
    assert sum(p != h for p, h in zip(place, holders)) == expected_moves


def test_the_plan_is_a_tree_of_fan_in_over_the_workers_in_a_fixed_order():
    workers = [f"tcp://w{k:02d}" for k in range(11)]
    locations = {i: workers[i % 11] for i in range(40)}
    locations[40] = None  # a block whose holder is unknown: anywhere, last
    infos = dict.fromkeys(workers, _faults.WorkerInfo(1, 0, 0, True))
    plan = _placement.plan(locations, range(41), 3, infos,
                           dict.fromkeys(range(41), 10), 25)
    assert plan.workers == tuple(workers) + (None,)
    # Every worker but the root has one parent, and none more than 3 children.
    parents = [plan.parent(k) for k in range(len(plan.workers))]
    assert parents[0] is None and all(p < k for k, p in enumerate(parents) if k)
    for k in range(len(plan.workers)):
        assert list(plan.children(k)) == [c for c, p in enumerate(parents) if p == k]
        assert len(plan.children(k)) <= 3
    # Each worker's blocks in order, in groups of at most 25 bytes (2
    # blocks); 40 bytes do not fit in one thread's 25: a task per group.
    assert plan.tasks[0] == (((0, 11),), ((22, 33),))
    assert plan.tasks[-1] == (((40,),),)
    assert sorted(i for per_worker in plan.tasks for task in per_worker
                  for group in task for i in group) == list(range(41))
    # The same input, the same plan (so the same order of the sums).
    assert _placement.plan(locations, range(41), 3, infos,
                           dict.fromkeys(range(41), 10), 25) == plan


@pytest.mark.parametrize("case", [
    # small blocks go together, up to the task size ...
    ([20] * 8, 1, 128, [4, 4]),
    ([20] * 8, 1, 50, [2, 2, 2, 2]),
    # ... but each thread gets a group
    ([20] * 8, 3, 1000, [2, 3, 3]),
    # a block larger than a task is a group of its own
    ([100, 100, 5], 1, 10, [1, 1, 1]),
    ([10, 10, 10, 10, 60], 4, 1000, [1, 1, 1, 1, 1]),
])
def test_a_workers_blocks_are_cut_into_groups_by_size(case):
    sizes, threads, task_bytes, expected = case
    blocks = list(range(len(sizes)))
    groups = _placement.groups(blocks, sizes, threads, task_bytes)
    assert [len(group) for group in groups] == expected
    assert [i for group in groups for i in group] == blocks


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_a_worker_whose_rows_fit_takes_one_task_whatever_its_threads(threads):
    # 16 blocks of 10 bytes, tasks of at most 40 bytes a thread: one task
    # of all the worker's groups where its threads hold them all (8 threads:
    # 320 bytes); otherwise one task a group (spilling between them).
    blocks, sizes = list(range(16)), [10] * 16
    tasks = _placement.tasks(blocks, sizes, threads, 40)
    groups = _placement.groups(blocks, sizes, threads, 40)
    if threads * 40 >= sum(sizes):
        assert tasks == (groups,) and len(groups) == threads
    else:
        assert tasks == tuple((group,) for group in groups)
        assert all(sum(sizes[i] for i in group) <= 40 for group in groups)


def test_a_fit_spreads_blocks_held_by_one_worker(digits):
    X, y = digits
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        est = _on(c, hidden_size=16)
        # Every block read and checked on the one worker; then a second
        # worker joins before the blocks are prepared.
        data = DaskRows(est, c, _dask(X, 180), _dask(y, 180), None, first_call=True)
        assert len({w for ws in c.who_has(data._checked).values() for w in ws}) == 1
        cluster.scale(2)
        c.wait_for_workers(2)
        loss = data.objective(TwoLayerLoss(ParamLayout(64, 16, 10)))
        data.hold_out(est, (None, None, None), None, False)
        loss.loss_gradient(np.zeros(loss.layout.size))
        objective = data._objective
        plan = objective.plan("train")
        rows = {w: sum(data._n_rows[i] for task in tasks for group in task
                       for i in group)
                for w, tasks in zip(plan.workers, plan.tasks)}
        # ten blocks: 5 x 180 on one worker, 4 x 180 + 177 on the other (a
        # block that work stealing prepared elsewhere is evaluated there)
        assert sorted(rows.values()) == [897, 900], rows
        # and each evaluation runs its tasks where their blocks are
        blocks = objective.placed.blocks
        who_has = c.who_has(blocks)
        for worker, tasks in zip(plan.workers, plan.tasks):
            for task in tasks:
                assert all(worker in who_has[blocks[i].key]
                           for group in task for i in group)


def test_blocks_prepared_away_from_their_place_are_moved_there(client):
    # (Work stealing may prepare a small block on an idle worker.)
    a, b = sorted(client.nthreads())
    X = np.random.default_rng(0).normal(size=(40, 3))
    prepared = [_worker.Prepared(_worker.Rows(X[i::4], np.zeros(10), np.ones(10)),
                                 None, {}) for i in range(4)]
    blocks = client.scatter(prepared, workers=[a])  # (a list: one future each)
    _placement.settle(client, _faults.Watch(client, _config.settings()), blocks,
                      [b, b, None, a], rounds=2)
    who_has = client.who_has(blocks)
    assert [sorted(who_has[f.key]) for f in blocks] == [[b], [b], [a], [a]]
    for i, got in enumerate(client.gather(blocks)):
        np.testing.assert_array_equal(got.train.X, X[i::4])
    # and those that travelled are aligned where they are now
    assert _flags(client, blocks[:2], lambda p: _aligned(p.train.X)) == [True, True]


def test_blocks_with_no_known_holder_are_evaluated_anywhere(client, digits):
    # (Between a worker's loss and the recomputation of its blocks, the
    # scheduler knows no holder for them: on the path through the
    # scheduler, the tasks then go anywhere. Calls wait for the blocks.)
    X, y = digits
    est = DaskTwoLayerSoftmaxClassifier(hidden_size=16)
    with dask.config.set({"sk-twolayer.dask.direct-transfers": False}):
        data = DaskRows(est, client, _dask(X, 600), _dask(y, 600), None,
                        first_call=True)
    loss = data.objective(TwoLayerLoss(ParamLayout(64, 16, 10), reg=1e-3))
    data.hold_out(est, (None, None, None), None, False)
    theta = np.random.default_rng(0).normal(scale=0.3, size=loss.layout.size)
    expected = loss.loss_gradient(theta)
    objective = data._objective
    objective._plans["train"] = _placement.Plan((None,), ((((0, 1), (2,)),),), 4, 0)
    value, grad = loss.loss_gradient(theta)
    assert value == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(grad, expected[1], rtol=1e-12, atol=1e-15)
    assert objective._plans is None  # they ran off the plan: it is made again


def test_float32_data_stay_float32_on_the_workers(client, digits):
    X, y = digits
    X32 = X.astype(np.float32)
    est = DaskTwoLayerSoftmaxClassifier(hidden_size=16)
    data = DaskRows(est, client, _dask(X32, 400), _dask(y, 400), None,
                    first_call=True)
    assert data.dtype == np.float32
    layout = ParamLayout(64, 16, 10, np.float32)
    local = TwoLayerLoss(layout, reg=1e-4)
    loss = data.objective(local)
    data.hold_out(est, (None, None, None), None, False)
    theta = np.random.default_rng(0).normal(scale=0.3, size=layout.size)
    theta = theta.astype(np.float32)
    value, grad = loss.loss_gradient(theta)
    expected_value, expected_grad = local.loss_gradient(theta, X32, y)
    assert grad.dtype == np.float32
    assert value == pytest.approx(expected_value, rel=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4,
                               atol=1e-5 * np.abs(expected_grad).max())
    # The workers evaluated the loss in float32.
    dtypes = client.run(lambda dask_worker: sorted({
        str(loss.layout.dtype)
        for scratch in _worker._SCRATCH.get(dask_worker, {}).values()
        for loss, _ in scratch.losses.values()}))
    assert "float32" in set().union(*dtypes.values())
    # A whole fit gives a float32 model that predicts as the in-memory one
    # (after 50 iterations in float32, rounding has moved the weights apart
    # more than in float64, but not the predictions).
    expected = TwoLayerSoftmaxClassifier(**PARAMS).fit(X32, y)
    got = DaskTwoLayerSoftmaxClassifier(**PARAMS).fit(_dask(X32, 400), _dask(y, 400))
    assert got.coefs_[0].dtype == np.float32
    assert got.predict_proba(X32).dtype == np.float32
    assert np.mean(got.predict(X32) == expected.predict(X32)) > 0.99


# -------------------------------------------------------- features carry over
def test_weights_class_weights_and_string_labels(client, digits):
    X, y = digits
    names = np.array([f"digit {k}" for k in range(10)])[y]
    sw = np.random.default_rng(1).uniform(0, 3, len(y))
    for class_weight in ({"digit 0": 3.0, "digit 7": 0.5}, "balanced"):
        params = dict(PARAMS, class_weight=class_weight)
        expected = TwoLayerSoftmaxClassifier(**params).fit(X, names, sample_weight=sw)
        got = DaskTwoLayerSoftmaxClassifier(**params).fit(
            _dask(X, 450), _dask(names, 450), sample_weight=_dask(sw, 450))
        np.testing.assert_array_equal(got.classes_, expected.classes_)
        _assert_same_model(got, expected, X)


def test_warm_start_curves_verbose_and_tol(client, digits, capsys):
    X, y = digits
    dX, dy = _dask(X, 600), _dask(y, 600)
    params = dict(PARAMS, max_iter=5, warm_start=True, verbose=True)
    expected = TwoLayerSoftmaxClassifier(**params)
    got = DaskTwoLayerSoftmaxClassifier(**params)
    for _ in range(2):
        expected.fit(X, y)
        got.fit(dX, dy)
    printed = capsys.readouterr().out
    assert len(re.findall(r"Iteration \d+, loss = ", printed)) == 20  # both models
    assert got.n_iter_ == 5 and len(got.loss_curve_) == 10
    assert got.t_ == expected.t_ == 10 * len(y)
    _assert_same_model(got, expected, X)
    # A tolerance met early ends the fit early, as in memory.
    loose = dict(PARAMS, tol=1e-1, max_iter=200)
    expected = TwoLayerSoftmaxClassifier(**loose).fit(X, y)
    got = DaskTwoLayerSoftmaxClassifier(**loose).fit(dX, dy)
    assert got.n_iter_ == expected.n_iter_ < 200


def test_callbacks_see_every_iteration(client, digits, iteration_callback):
    X, y = digits
    shapes = []

    def record(model, X):
        # A snapshot with numpy weights, that predicts on X's first block.
        shapes.append(model.predict_proba(X[:5]).shape)
        return len(shapes) >= 4  # stop after four iterations

    clf = DaskTwoLayerSoftmaxClassifier(**PARAMS)
    clf.set_callbacks(iteration_callback(record))
    clf.fit(_dask(X, 600), _dask(y, 600))
    assert clf.n_iter_ == 4 and shapes == [(5, 10)] * 4


def test_early_stopping_holds_out_the_same_rows_for_any_chunking(client, digits):
    X, y = digits
    params = dict(PARAMS, early_stopping=True, validation_fraction=0.2,
                  n_iter_no_change=3, tol=0.0)
    fits = [DaskTwoLayerSoftmaxClassifier(**params).fit(_dask(X, rows), _dask(y, rows))
            for rows in (300, (1, 700, 96, 1000))]
    first, second = fits
    assert first.validation_scores_ and first.best_validation_score_ > 0.9
    # The same rows, so the same validation losses up to rounding (until the
    # discrete accuracy, on which early stopping decides, may tip apart).
    np.testing.assert_allclose(second.validation_loss_curve_[:10],
                               first.validation_loss_curve_[:10], rtol=1e-8)
    # Row by row, the held-out mask does not depend on the blocks.
    whole = _worker.held_out(12345, 0, 1797, 0.2)
    for rows in ((300,) * 5 + (297,), (1, 700, 96, 1000)):
        offsets = np.cumsum((0,) + rows[:-1])
        parts = [_worker.held_out(12345, o, n, 0.2) for o, n in zip(offsets, rows)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    # About a fifth of the rows trained (t_ counts them per iteration).
    n_train = first.t_ / first.n_iter_
    assert abs(n_train - 0.8 * len(y)) < 4 * np.sqrt(0.16 * len(y))
    assert first.n_iter_ < PARAMS["max_iter"]  # it stopped early


def test_a_validation_set_scores_as_in_memory(client, digits):
    X, y = digits
    X_val, y_val = X[::4] + 0.05, y[::4]
    params = dict(PARAMS, max_iter=10)
    expected = TwoLayerSoftmaxClassifier(**params).fit(X, y, X_val=X_val, y_val=y_val)
    for X_v, y_v in ((_dask(X_val, 100), _dask(y_val, 100)), (X_val, y_val)):
        got = DaskTwoLayerSoftmaxClassifier(**params).fit(
            _dask(X, 500), _dask(y, 500), X_val=X_v, y_val=y_v)
        np.testing.assert_allclose(got.validation_scores_, expected.validation_scores_)
        np.testing.assert_allclose(got.validation_loss_curve_,
                                   expected.validation_loss_curve_, rtol=1e-9)
        _assert_same_model(got, expected, X)


def test_a_validation_set_in_every_form(client, digits):
    # Whatever the in-memory estimator takes as X_val: numpy of any width
    # (wider than a Dask chunk, which da.from_array would cut along its
    # columns), CSR, pandas, Dask arrays and dataframes.
    X, y = digits
    columns = [f"p{k}" for k in range(X.shape[1])]
    X_val, y_val = X[::4] + 0.05, y[::4]
    params = dict(PARAMS, max_iter=8)
    expected = TwoLayerSoftmaxClassifier(**params).fit(X, y, X_val=X_val, y_val=y_val)
    forms = {
        "numpy": X_val,
        "csr": sp.csr_matrix(X_val),
        "pandas": pd.DataFrame(X_val, columns=columns),
        "dask array": _dask(X_val, 100),
        "dask dataframe": dd.from_pandas(pd.DataFrame(X_val, columns=columns),
                                         npartitions=3),
    }
    for name, form in forms.items():
        train = (dd.from_pandas(pd.DataFrame(X, columns=columns), npartitions=3)
                 if name in ("pandas", "dask dataframe") else _dask(X, 500))
        labels = (dd.from_pandas(pd.Series(y_val), npartitions=3)
                  if name == "dask dataframe" else
                  _dask(y_val, 100) if name == "dask array" else y_val)
        y_train = (dd.from_pandas(pd.Series(y), npartitions=3)
                   if name in ("pandas", "dask dataframe") else _dask(y, 500))
        # (In memory: a Dask chunk of 8 rows, which da.from_array would fill
        # with a square of rows and columns.)
        with dask.config.set({"array.chunk-size": "4kB"}):
            got = DaskTwoLayerSoftmaxClassifier(**params).fit(
                train, y_train, X_val=form, y_val=labels)
        np.testing.assert_allclose(got.validation_loss_curve_,
                                   expected.validation_loss_curve_, rtol=1e-9,
                                   err_msg=name)


# ------------------------------------------------ the data users really have
EMPTY = {
    "first": (0, 900, 897),
    "middle, several in a row": (500, 0, 0, 600, 697),
    "last": (1797, 0),
}


@pytest.mark.parametrize("rows", EMPTY.values(), ids=EMPTY.keys())
def test_empty_blocks_give_the_in_memory_model(client, digits, rows):
    X, y = digits
    expected = TwoLayerSoftmaxClassifier(**PARAMS).fit(X, y)
    dX, dy = _dask(X, rows), _dask(y, rows)
    got = DaskTwoLayerSoftmaxClassifier(**PARAMS).fit(dX, dy)
    _assert_same_model(got, expected, X)
    # Predictions on blocks without rows, lazily, and the score.
    for method in ("predict", "predict_proba", "predict_log_proba",
                   "decision_function"):
        lazy = getattr(got, method)(dX)
        # (Dask's concatenate leaves the empty blocks out.)
        assert lazy.chunks[0] == tuple(n for n in rows if n), method
        np.testing.assert_allclose(lazy.compute(), getattr(expected, method)(X),
                                   rtol=0, atol=PROBA_TOL, err_msg=method)
    assert got.score(dX, dy) == pytest.approx(expected.score(X, y))


def test_no_rows_at_all_is_the_in_memory_error(client, digits):
    X, y = digits
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)") as memory:
        TwoLayerSoftmaxClassifier().fit(X[:0], y[:0])
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)") as ours:
        DaskTwoLayerSoftmaxClassifier().fit(_dask(X[:0], (0, 0)), _dask(y[:0], (0, 0)))
    assert str(ours.value).replace("Dask", "") == str(memory.value)


def test_a_filtered_dataframe_with_empty_partitions(client, digits):
    # ddf[ddf.keep]: partitions of unknown length, some of them empty, for
    # the training data, its weights and the validation frame alike.
    X, y = digits
    columns = [f"p{k}" for k in range(X.shape[1])]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(X, columns=columns).assign(
        label=y, weight=rng.uniform(0.5, 2, len(y)), keep=True)
    frame.loc[300:599, "keep"] = False  # the whole of partition 1
    frame.loc[1500:, "keep"] = False  # partition 5, and part of 4
    ddf = dd.from_pandas(frame, npartitions=6, sort=False)
    kept = ddf[ddf.keep]
    val = frame.iloc[::5]
    val = val.assign(keep=(val.index % 2 == 0) & (val.index < 1200))  # last: empty
    val_ddf = dd.from_pandas(val, npartitions=4, sort=False)
    val_kept = val_ddf[val_ddf.keep]
    local, local_val = frame[frame.keep], val[val.keep]
    params = dict(PARAMS, max_iter=20, class_weight="balanced")
    expected = TwoLayerSoftmaxClassifier(**params).fit(
        local[columns], local.label, local.weight,
        X_val=local_val[columns], y_val=local_val.label)
    got = DaskTwoLayerSoftmaxClassifier(**params).fit(
        kept[columns], kept.label, kept.weight,
        X_val=val_kept[columns], y_val=val_kept.label)
    _assert_same_model(got, expected, local[columns])
    np.testing.assert_allclose(got.validation_loss_curve_,
                               expected.validation_loss_curve_, rtol=1e-9)
    lazy = got.predict_proba(kept[columns])
    np.testing.assert_allclose(lazy.compute(), expected.predict_proba(local[columns]),
                               atol=PROBA_TOL)
    assert got.score(kept[columns], kept.label, kept.weight) == pytest.approx(
        expected.score(local[columns], local.label, local.weight))


def test_a_block_of_only_validation_rows(client, digits):
    X, y = digits
    rows = (1,) * 12 + (0,) + (1785,)
    est = DaskTwoLayerSoftmaxClassifier(hidden_size=8, validation_fraction=0.5,
                                        early_stopping=True)
    data = DaskRows(est, client, _dask(X, rows), _dask(y, rows), None, first_call=True)
    loss = data.objective(TwoLayerLoss(ParamLayout(64, 8, 10)))
    validation = data.hold_out(est, (None, None, None), np.random.RandomState(0), False)
    parts = data._placed.parts
    only_val = set(parts.val.blocks) - set(parts.train.blocks)
    assert only_val and only_val < set(range(12)), parts  # one-row blocks, held out
    theta = np.random.default_rng(0).normal(scale=0.3, size=loss.layout.size)
    assert np.isfinite(loss.loss_gradient(theta)[0])
    val_loss, accuracy = loss.evaluate(theta)
    assert validation is not None and np.isfinite(val_loss) and 0 <= accuracy <= 1


def test_the_validation_set_is_checked_against_the_fitted_features(client, digits):
    X, y = digits
    columns = [f"p{k}" for k in range(X.shape[1])]
    frame = dd.from_pandas(pd.DataFrame(X, columns=columns), npartitions=3)
    labels = dd.from_pandas(pd.Series(y), npartitions=3)
    params = dict(PARAMS, max_iter=5)
    clf = DaskTwoLayerSoftmaxClassifier(**params).fit(frame, labels)
    before = _unchanged(clf)
    X_nan, X_text = X.copy(), pd.DataFrame(X, columns=columns)
    X_nan[700, 3] = np.nan
    X_text["p5"] = X_text["p5"].astype(str).where(X_text.index != 10, "ten")
    bad = {
        "reordered": (frame[columns[::-1]], ValueError, "feature names"),
        "narrower": (frame[columns[:-1]], ValueError, "missing:\n- p63"),
        "NaN": (dd.from_pandas(pd.DataFrame(X_nan, columns=columns), npartitions=3),
                ValueError, "row block 1 of X_val.*X_val contains NaN"),
        "text": (dd.from_pandas(X_text, npartitions=3), ValueError,
                 "row block 0 of X_val.*could not convert string to float"),
        "in memory, narrower": (X[:, :-1], ValueError, "63 features"),
    }
    for name, (X_val, error, message) in bad.items():
        for model in (clf, DaskTwoLayerSoftmaxClassifier(**params)):
            kept = _unchanged(model)
            # (An array without names, after a dataframe: scikit-learn's
            # warning, as in memory, before the error.)
            names = (pytest.warns(UserWarning, match="does not have valid feature "
                                  "names") if name.startswith("in memory")
                     else contextlib.nullcontext())
            with pytest.raises(error, match=message), names:
                model.fit(frame, labels, X_val=X_val, y_val=labels)
            assert _unchanged(model) == kept, name
    assert _unchanged(clf) == before
    # float32 validation rows with float64 training rows: as in memory.
    X_val32 = dd.from_pandas(pd.DataFrame(X, columns=columns).astype(np.float32),
                             npartitions=2)
    got = DaskTwoLayerSoftmaxClassifier(**params).fit(
        frame, labels, X_val=X_val32, y_val=dd.from_pandas(pd.Series(y), npartitions=2))
    expected = TwoLayerSoftmaxClassifier(**params).fit(
        pd.DataFrame(X, columns=columns), y,
        X_val=pd.DataFrame(X, columns=columns).astype(np.float32), y_val=y)
    np.testing.assert_allclose(got.validation_loss_curve_,
                               expected.validation_loss_curve_, rtol=1e-6)


# ----------------------------------------------------- blocks in good memory
def _flags(client, futures, get):
    """``get(value)`` of each future, computed on a worker that holds it."""
    who_has = client.who_has(futures)
    return client.gather([
        client.submit(get, f, workers=sorted(who_has[f.key])[:1], pure=False)
        for f in futures])


def _aligned(X):
    return bool(X.flags.aligned and X.flags.c_contiguous)


def test_blocks_received_over_the_network_are_aligned_where_they_stay(client):
    X, y = make_classification(4000, 30, n_informative=8, random_state=0)
    a, _ = sorted(client.nthreads())
    scattered = [client.scatter(X[i:i + 500], workers=[a]) for i in range(0, 4000, 500)]
    y_parts = [client.scatter(y[i:i + 500], workers=[a]) for i in range(0, 4000, 500)]
    inputs = {
        "from_array": (_dask(X, 500), _dask(y, 500)),
        # all on one worker: half of them are moved to the other
        "scattered and moved": (
            da.concatenate([da.from_delayed(f, shape=(500, 30), dtype=float)
                            for f in scattered]),
            da.concatenate([da.from_delayed(f, shape=(500,), dtype=y.dtype)
                            for f in y_parts])),
    }
    for name, (dX, dy) in inputs.items():
        est = DaskTwoLayerSoftmaxClassifier(hidden_size=8)
        data = DaskRows(est, client, dX, dy, None, first_call=True)
        received = _flags(client, data._checked, lambda c: _aligned(c.rows.X))
        # (Some arrive out of line: the test would fail without the fix.)
        assert not all(received), name
        data.objective(TwoLayerLoss(ParamLayout(30, 8, 2)))
        data.hold_out(est, (None, None, None), None, False)
        blocks = data._placed.blocks
        assert all(_flags(client, blocks, lambda b: _aligned(b.train.X))), name
        if name == "scattered and moved":
            holders = {w for ws in client.who_has(blocks).values() for w in ws}
            assert len(holders) == 2  # some were moved


def test_the_prediction_path_aligns_its_blocks():
    seen = []

    class Spy:
        def predict(self, X):
            seen.append(_aligned(X))
            return np.zeros(X.shape[0])

    raw = bytearray(8 * 12 + 1)
    X = np.frombuffer(raw, dtype=np.float64, offset=1, count=12).reshape(4, 3)
    assert not X.flags.aligned
    _worker.apply(Spy(), "predict", X, np.empty(0))
    _worker.hits(Spy(), X, np.zeros(4), None)
    assert seen == [True, True]


# ------------------------------------------------------------- every worker
def test_every_worker_is_seen_and_all_its_threads_work(monkeypatch):
    # Six workers of two threads. From distributed 2025.10 through 2026.6,
    # Client.scheduler_info() lists five workers unless asked for all: the
    # sixth would count as one thread (and hold no blocks, or evaluate its
    # blocks one after the other). Every thread of every worker must be
    # busy at once in an evaluation: all twelve block evaluations meet at
    # a barrier, which breaks if they cannot all run at the same time.
    X, y = make_classification(1200, 10, n_informative=5, n_classes=3,
                               random_state=0)
    barrier = threading.Barrier(12, timeout=20)
    original = TwoLayerLoss.data_loss_gradient

    def meeting(self, *args, **kwargs):
        barrier.wait()
        return original(self, *args, **kwargs)

    with LocalCluster(n_workers=6, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        c.wait_for_workers(6)
        est = _on(c, hidden_size=8)
        data = DaskRows(est, c, _dask(X, 100), _dask(y, 100), None, first_call=True)
        layout = ParamLayout(10, 8, 3)
        local = TwoLayerLoss(layout)
        loss = data.objective(local)
        data.hold_out(est, (None, None, None), None, False)
        theta = np.random.default_rng(0).normal(scale=0.3, size=layout.size)
        monkeypatch.setattr(TwoLayerLoss, "data_loss_gradient", meeting)
        value, grad = loss.loss_gradient(theta)
        monkeypatch.undo()
        data.close()
        workers = _faults.workers_of(c)
    assert not barrier.broken
    assert len(workers) == 6 and {w.nthreads for w in workers.values()} == {2}
    expected_value, expected_grad = local.loss_gradient(theta, X, y)
    assert value == pytest.approx(expected_value, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10,
                               atol=1e-12 * np.abs(expected_grad).max())


def test_the_memory_check_sees_every_worker():
    info = _faults.WorkerInfo
    small = {f"w{k}": info(1, 100 * 2**20, 20 * 2**20, True) for k in range(5)}
    large = dict(small, w5=info(1, 1000 * 2**20, 20 * 2**20, True))
    block = [0, 200 * 2**20]  # twice that fits only in the sixth worker
    _placement.check_room(block, large, 0.8)
    with pytest.raises(MemoryError, match=r"Row block 1 of X takes 200 MiB.*"
                                          r"the 5 workers have at most 60 MiB"):
        _placement.check_room(block, small, 0.8)
    # Unknown sizes count for nothing; a worker without a limit takes any.
    _placement.check_room([0, 0], small, 0.8)
    _placement.check_room(block, dict(small, w5=info(1, 0, 0, True)), 0.8)


def _sparse_block(seed, rows, d):
    """A CSR block of 0.1% density (without a dense step, which would take
    what the tight workers do not have), and its labels."""
    rng = np.random.default_rng(seed)
    nnz = rows * d // 1000
    X = sp.csr_matrix((rng.normal(size=nnz), (rng.integers(0, rows, nnz),
                                              rng.integers(0, d, nnz))),
                      shape=(rows, d))
    return X, rng.integers(0, 3, rows)


def test_a_sparse_block_counts_for_what_it_holds(tight):
    # Blocks as large as a worker's memory limit dense (about 500 MB), 1 MB
    # as the CSR matrices they are, made on the workers: they fit, where
    # counted dense they would not.
    c, limit = tight
    d = 2_000
    rows = -(-limit // (8 * d))
    parts = [dask.delayed(_sparse_block, pure=True)(seed, rows, d) for seed in range(3)]
    dX = da.concatenate([da.from_delayed(p[0], shape=(rows, d), dtype=float,
                                         meta=sp.csr_matrix((0, 0)))
                         for p in parts])
    dy = da.concatenate([da.from_delayed(p[1], shape=(rows,), dtype=np.int64)
                         for p in parts])
    assert rows * d * 8 >= limit
    params = dict(hidden_size=4, max_iter=2, tol=0.0, random_state=0)
    got = _on(c, **params).fit(dX, dy)
    local = [_sparse_block(seed, rows, d) for seed in range(3)]
    X, y = sp.vstack([x for x, _ in local]).tocsr(), np.concatenate([t for _, t in local])
    expected = TwoLayerSoftmaxClassifier(**params).fit(X, y)
    np.testing.assert_allclose(got.predict_proba(X[:500]),
                               expected.predict_proba(X[:500]), atol=PROBA_TOL)


# ------------------------------------------- lazy results belong to no cluster
def _model_keys(lazy):
    return [k for k in dict(lazy.__dask_graph__())
            if str(k).startswith("sk-twolayer-model-")]


def test_lazy_predictions_compute_on_any_client(client, digits):
    # The model fitted on one cluster (the estimator's client), its lazy
    # predictions computed on another, the default client's: the model
    # travels in the graph, once, and no future of the first cluster does.
    X, y = digits
    columns = [f"p{k}" for k in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=columns)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as other:
        assert distributed.default_client() is client  # not the estimator's
        fitted = _on(other, **dict(PARAMS, max_iter=5)).fit(_dask(X, 600), _dask(y, 600))
        on_frames = _on(other, **dict(PARAMS, max_iter=5)).fit(
            dd.from_pandas(frame, npartitions=3), dd.from_pandas(pd.Series(y),
                                                                 npartitions=3))
        models = {"client set": (fitted, _dask(X, 700)),
                  "pickled": (pickle.loads(pickle.dumps(fitted)), _dask(X, 700)),
                  "dataframe": (on_frames, dd.from_pandas(frame, npartitions=4))}
        with distributed.get_task_stream(other) as theirs, \
                distributed.get_task_stream(client) as default:
            for name, (model, data) in models.items():
                local = model.to_local()
                for method in ("predict", "predict_proba", "predict_log_proba",
                               "decision_function"):
                    lazy = getattr(model, method)(data)
                    assert len(_model_keys(lazy)) == 1, (name, method)
                    np.testing.assert_allclose(
                        lazy.compute(), getattr(local, method)(frame if name ==
                                                               "dataframe" else X),
                        rtol=1e-12, err_msg=f"{name}: {method}")
            # score runs on the estimator's client
            assert fitted.score(_dask(X, 700), _dask(y, 700)) == pytest.approx(
                fitted.score(X, y))

        def ours(tasks):
            return {name for t in tasks for name in ("hits", "apply")
                    if re.match(rf"\W*{name}-", str(t["key"]))}

        assert ours(default.data) == {"apply"}
        assert ours(theirs.data) == {"hits"}
    # A clone, fitted on the default client, computed on a third cluster
    # (whose client computes it explicitly), after the first one closed.
    cloned = clone(fitted).fit(_dask(X, 600), _dask(y, 600))
    lazy = cloned.predict_proba(_dask(X, 900))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as third:
        np.testing.assert_allclose(third.compute(lazy).result(),
                                   cloned.predict_proba(X), rtol=1e-12)


# ------------------------------------------------------------ memory and faults
@pytest.fixture(scope="module")
def tight():
    """Two worker processes whose memory limit leaves room for only 40 MB of
    data each, beside what the worker process takes by itself, before Dask
    spills data to disk (at 60% of the limit)."""
    def rss():
        import psutil

        import sk_twolayer.dask._worker  # noqa: F401 (what the fit loads)

        return psutil.Process().memory_info().rss

    with _cluster(1) as probe, Client(probe, set_as_default=False) as c:
        baseline = max(c.run(rss).values())
    # Dask keeps a worker's process below 60% of its limit by spilling.
    limit = int((baseline + 40e6) / 0.6)
    with _cluster(2, memory_limit=limit) as cluster, \
            Client(cluster, set_as_default=False) as c:
        yield c, limit


def test_a_cluster_with_room_for_the_rows_once_fits_them(tight):
    c, limit = tight
    # 120 MB of rows per worker, made on the workers: three times what they
    # hold without spilling.
    X, y = _generated(16, 15_000, 125)
    params = dict(hidden_size=8, max_iter=3, tol=0.0, random_state=0)
    got = _on(c, **params).fit(X, y)
    spilled = sum(info["metrics"]["spilled_bytes"]["disk"]
                  for info in c.scheduler_info()["workers"].values())
    assert spilled > 0, "the rows fitted in memory: the test tests nothing"
    local = pd.concat([_partition(seed, 15_000, 125) for seed in range(16)])
    columns = [f"x{j}" for j in range(125)]
    expected = TwoLayerSoftmaxClassifier(**params).fit(local[columns], local.label)
    assert got.n_iter_ == expected.n_iter_
    np.testing.assert_allclose(got.predict_proba(local[columns][:2000]),
                               expected.predict_proba(local[columns][:2000]),
                               atol=PROBA_TOL)


def test_a_block_too_large_for_any_worker_is_a_clear_error(tight, digits):
    c, limit = tight
    X = da.zeros((int(limit / 8 / 50), 50), chunks=(-1, -1))  # one limit-sized block
    y = da.zeros(X.shape[0], chunks=-1)
    clf = _on(c, hidden_size=4)
    with pytest.raises(MemoryError, match=r"Row block 0 of X takes \d+ MiB.*smaller"):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_")


@pytest.mark.parametrize("path, reason", [
    ({}, "a worker it called could not be reached"),
    ({"sk-twolayer.dask.direct-transfers": False}, r"\(KilledWorker\)")],
    ids=["calls", "graph"])
def test_an_evaluation_whose_worker_died_is_tried_again(killable, caplog, tmp_path,
                                                        path, reason):
    c = killable.ready()
    X, y = make_classification(2000, 20, n_informative=10, n_classes=3,
                               random_state=0)
    params = dict(hidden_size=8, max_iter=8, random_state=0)
    expected = TwoLayerSoftmaxClassifier(**params).fit(X, y)
    # No second chance (graph): the task that was running on a dead worker
    # raises KilledWorker at once. (A call to a dead worker fails at once.)
    c.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler,
                                                      "allowed_failures", 0))
    try:
        c.run(_install_kill, "evaluate", 3, str(tmp_path / "killed"))
        with caplog.at_level("WARNING", logger="sk_twolayer.dask"), \
                dask.config.set(path):
            got = _on(c, **params).fit(_dask(X, 250), _dask(y, 250))
    finally:
        c.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler,
                                                          "allowed_failures", 3))
    assert re.search(r"An evaluation is tried again \(1 of 3\): .*" + reason,
                     caplog.text), caplog.text
    assert got.n_iter_ == expected.n_iter_
    np.testing.assert_allclose(got.predict_proba(X), expected.predict_proba(X),
                               atol=PROBA_TOL)
    # With no tries left, the same loss is a clear error, and the model stays.
    c = killable.ready()
    before = _unchanged(got)
    c.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler,
                                                      "allowed_failures", 0))
    try:
        c.run(_install_kill, "evaluate", 3, str(tmp_path / "killed-again"))
        with dask.config.set({"sk-twolayer.dask.retries": 0, **path}), \
                pytest.raises(RuntimeError, match=r"(?s)failed 1 times.*" + reason
                              + r".*sk-twolayer.dask.retries, 0.*Workers keep dying"):
            got.fit(_dask(X, 250), _dask(y, 250))
    finally:
        c.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler,
                                                          "allowed_failures", 3))
    assert _unchanged(got) == before


# ------------------------------------------------ what travels, and in what order
class _Graphs(SchedulerPlugin):
    """The number of our tasks in each graph the scheduler receives (not the
    blocks and parameters they depend on)."""

    def __init__(self):
        self.graphs = []

    def update_graph(self, scheduler, *, tasks, **kwargs):
        self.graphs.append(sum(str(key).startswith("sk-twolayer-") for key in tasks))


def _counted(scheduler, handlers=("handlers", "stream_handlers"),
             periodic=("heartbeat-client", "identity", "heartbeat_worker",
                       "keep-alive", "set_metadata", "get_metadata")):
    """Counts, by operation, of the calls of the scheduler's handlers (of
    requests, and of the clients' streamed messages), but for the ones that
    come now and then of their own accord (heartbeats, the client's look at
    the cluster, the cluster object's record of itself)."""
    calls = {}
    for table in handlers:
        table = getattr(scheduler, table)
        for op, handler in list(table.items()):
            if op in periodic:
                continue

            def count(_op=op):
                calls[_op] = calls.get(_op, 0) + 1

            # (The scheduler reads a handler's signature, and awaits a
            # coroutine function's calls in the background.)
            if inspect.iscoroutinefunction(handler):
                @functools.wraps(handler)
                async def counting(*args, _count=count, _handler=handler, **kwargs):
                    _count()
                    return await _handler(*args, **kwargs)
            else:
                @functools.wraps(handler)
                def counting(*args, _count=count, _handler=handler, **kwargs):
                    _count()
                    return _handler(*args, **kwargs)

            table[op] = counting
    return calls


def _evaluations(c, cluster, n_workers, fan_in, evaluations, settings):
    """The plan, and what reached the scheduler, over ``evaluations`` of a
    loss on 16 blocks per worker (after one, which makes the plan)."""
    X, y = load_digits(return_X_y=True)
    with dask.config.set({"sk-twolayer.dask.fan-in": fan_in, **settings}):
        est = _on(c, hidden_size=16)
        rows = -(-len(y) // (16 * n_workers))  # 16 blocks a worker
        data = DaskRows(est, c, _dask(X, rows), _dask(y, rows), None,
                        first_call=True)
        loss = data.objective(TwoLayerLoss(ParamLayout(64, 16, 10)))
        data.hold_out(est, (None, None, None), None, False)
        theta = np.random.default_rng(0).normal(scale=0.1, size=loss.layout.size)
        loss.loss_gradient(theta)  # (the plan is made, the workers set up)
        graphs = _Graphs()
        cluster.scheduler.add_plugin(graphs, name="graphs")
        counted = _counted(cluster.scheduler)
        for _ in range(evaluations):
            theta = theta * 0.9
            loss.loss_gradient(theta)
        seen = (list(graphs.graphs), dict(counted))
        plan = data._objective.plan("train")
        data.close()
    return (plan, *seen)


@pytest.mark.parametrize("n_workers, fan_in", [(2, 4), (5, 2)],
                         ids=["star", "tree"])
def test_evaluations_leave_the_scheduler_out(n_workers, fan_in):
    # Calls to the workers (a star of two, a tree of five): per evaluation,
    # nothing at all reaches the scheduler, whatever the workers' threads.
    for threads in (1, 4):
        with LocalCluster(n_workers=n_workers, threads_per_worker=threads,
                          processes=False, dashboard_address=":0") as cluster, \
                Client(cluster) as c:
            plan, graphs, counted = _evaluations(c, cluster, n_workers, fan_in,
                                                 20, {})
        assert len(plan.workers) == n_workers
        assert graphs == [] and counted == {}, (graphs, counted)


def test_what_reaches_the_scheduler_per_evaluation_through_it():
    # The path through the scheduler (a client that cannot reach the
    # workers): per evaluation, one graph of a few tasks a worker, whatever
    # its threads (at most 3K + 2), and theta and the totals through it.
    evaluations, counts = 3, {}
    for n_workers, fan_in in ((2, 4), (5, 2)):  # a star, and a tree
        for threads in (1, 4):
            with LocalCluster(n_workers=n_workers, threads_per_worker=threads,
                              processes=False, dashboard_address=":0") as cluster, \
                    Client(cluster) as c:
                plan, graphs, counted = _evaluations(
                    c, cluster, n_workers, fan_in, evaluations,
                    {"sk-twolayer.dask.direct-transfers": False})
            assert len(plan.workers) == n_workers
            assert counted["update-graph"] == evaluations, counted
            assert len(graphs) == evaluations, graphs
            assert max(graphs) <= 3 * n_workers + 2, graphs
            counts[n_workers, threads] = graphs
    # Tasks do not grow with the threads of the workers.
    assert counts[2, 1] == counts[2, 4] and counts[5, 1] == counts[5, 4], counts


@pytest.mark.parametrize("star_workers", [0, 5], ids=["tree", "star"])
def test_the_sum_over_the_workers_is_the_in_memory_one(digits, star_workers):
    # Five workers, as a tree of fan-in 2 or as a star; a task size that
    # makes a worker's rows spill over several tasks (10 kB of ~180 kB).
    X, y = digits
    sw = np.random.default_rng(0).uniform(0, 2, len(y))
    layout = ParamLayout(64, 16, 10)
    local = TwoLayerLoss(layout, reg=1e-3)
    rows = (1, 300, 17, 299, 180, 300, 400, 300)
    # (No work stealing: a task stolen to another worker changes the plan of
    # the next evaluation, and so the order of its additions.)
    with dask.config.set({"distributed.scheduler.work-stealing": False}), \
            LocalCluster(n_workers=5, threads_per_worker=1, processes=False,
                         dashboard_address=":0") as cluster, Client(cluster) as c, \
            dask.config.set({"sk-twolayer.dask.fan-in": 2,
                             "sk-twolayer.dask.star-workers": star_workers,
                             "sk-twolayer.dask.task-size": "10kB"}):
        est = _on(c, hidden_size=16)
        data = DaskRows(est, c, _dask(X, rows), _dask(y, rows), _dask(sw, rows),
                        first_call=True)
        loss = data.objective(local)
        data.hold_out(est, (None, None, None), None, False)
        theta = np.random.default_rng(1).normal(scale=0.3, size=layout.size)
        first = loss.loss_gradient(theta)
        plan = data._objective.plan("train")
        again = loss.loss_gradient(theta.copy())
        assert data._objective.plan("train") == plan
        star = data._objective.star(plan)
    value, grad = local.loss_gradient(theta, X, y, sw)
    assert first[0] == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(first[1], grad, rtol=1e-12, atol=1e-12 * np.abs(grad).max())
    # A fixed plan adds in a fixed order: the same bits.
    assert first[0] == again[0] and np.array_equal(first[1], again[1])
    assert len(plan.workers) > 2 and max(map(len, plan.tasks)) > 1
    assert star == (star_workers == 5)


def test_two_fits_on_the_same_cluster_agree_bit_for_bit(client, digits):
    # The same placement (one block on each worker, where nothing can be
    # stolen), the same plan, the same order of the sums: the same bits.
    X, y = digits
    a, b = sorted(client.nthreads())
    parts = [(X[:900], y[:900], a), (X[900:], y[900:], b)]
    dX = da.concatenate([
        da.from_delayed(client.scatter(x, workers=[w]), shape=x.shape, dtype=x.dtype)
        for x, _, w in parts])
    dy = da.concatenate([
        da.from_delayed(client.scatter(t, workers=[w]), shape=t.shape, dtype=t.dtype)
        for _, t, w in parts])
    plans, fits = [], []
    original = _objective.DistributedObjective.plan

    def recording(self, part, *args, **kwargs):
        plan = original(self, part, *args, **kwargs)
        plans.append(plan)
        return plan

    _objective.DistributedObjective.plan = recording
    try:
        for _ in range(2):
            plans.append(None)  # (a fit's plans follow)
            fits.append(DaskTwoLayerSoftmaxClassifier(**PARAMS).fit(dX, dy))
    finally:
        _objective.DistributedObjective.plan = original
    first, second = fits
    cut = plans.index(None, 1)
    assert set(plans[1:cut]) == set(plans[cut + 1:]) and len(set(plans[1:cut])) == 1
    assert plans[1].workers == (a, b)
    for x, z in zip(first.coefs_ + first.intercepts_,
                    second.coefs_ + second.intercepts_):
        assert np.array_equal(x, z)


def test_the_settings_come_from_dask_config():
    assert _config.settings().fan_in == dask.config.get("sk-twolayer.dask.fan-in")
    assert _config.settings().evaluation_timeout is None  # no limit by default
    with dask.config.set({"sk-twolayer.dask.fan-in": 7,
                          "sk-twolayer.dask.poll-interval": "250ms",
                          "sk-twolayer.dask.task-size": "1 MiB",
                          "sk-twolayer.dask.evaluation-timeout": "2 minutes"}):
        current = _config.settings()
    assert (current.fan_in, current.poll_interval, current.task_bytes,
            current.evaluation_timeout) == (7, 0.25, 2**20, 120)
    for name, value in (("fan-in", 1), ("retries", -1), ("task-size", "0 B"),
                        ("poll-interval", "0s"), ("balance-rounds", -1),
                        ("evaluation-timeout", "0s"), ("star-workers", -1)):
        with dask.config.set({f"sk-twolayer.dask.{name}": value}), \
                pytest.raises(ValueError, match=f"sk-twolayer.dask.{name}"):
            _config.settings()


# ---------------------------------------------------------------- predicting
def test_predictions_are_lazy_with_the_row_blocks_of_X(client, digits):
    X, y = digits
    clf = DaskTwoLayerSoftmaxClassifier(**PARAMS).fit(_dask(X, 500), _dask(y, 500))
    dX = _dask(X, (700, 700, 397))
    for method in ("predict", "predict_proba", "predict_log_proba",
                   "decision_function"):
        lazy = getattr(clf, method)(dX)
        assert isinstance(lazy, da.Array), method
        assert lazy.chunks[0] == dX.chunks[0], method
        np.testing.assert_allclose(lazy.compute(), getattr(clf, method)(X),
                                   rtol=1e-12, err_msg=method)
        assert isinstance(getattr(clf, method)(X), np.ndarray)
    sw = np.random.default_rng(0).uniform(size=len(y))
    assert clf.score(dX, _dask(y, 500), _dask(sw, 900)) == pytest.approx(
        clf.score(X, y, sw))
    # Two classes: one log-odds per row, as in memory.
    binary = DaskTwoLayerSoftmaxClassifier(**PARAMS)
    binary.fit(_dask(X, 500), _dask(y % 2, 500))
    assert binary.decision_function(dX).compute().shape == (len(y),)


def test_to_local_pickle_skops_and_onnx(client, digits):
    X, y = digits
    clf = DaskTwoLayerSoftmaxClassifier(**PARAMS).fit(_dask(X, 500), _dask(y, 500))
    assert clf.client is None
    local = clf.to_local()
    assert type(local) is TwoLayerSoftmaxClassifier
    assert local.get_params() == clf.get_params()
    np.testing.assert_array_equal(local.predict_proba(X), clf.predict_proba(X))
    local.coefs_[0][...] = 0  # a copy: the Dask model keeps its weights
    assert np.abs(clf.coefs_[0]).max() > 0
    # The client is no parameter: pickles and clones leave it behind.
    with_client = _on(client, **PARAMS).fit(_dask(X, 500), _dask(y, 500))
    assert "client" not in with_client.get_params()
    assert clone(with_client).client is None
    restored = pickle.loads(pickle.dumps(with_client))
    assert restored.client is None and with_client.client is client
    np.testing.assert_array_equal(restored.predict_proba(X),
                                  with_client.predict_proba(X))
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        with_client.client = "tcp://127.0.0.1:8786"
    skops_io = pytest.importorskip("skops.io")
    data = skops_io.dumps(clf.to_local())
    # Only our in-memory estimator needs trusting, as for any in-memory model.
    assert skops_io.get_untrusted_types(data=data) == [
        "sk_twolayer._classifier.TwoLayerSoftmaxClassifier"]
    loaded = skops_io.loads(data, trusted=skops_io.get_untrusted_types(data=data))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    onnx = pytest.importorskip("sk_twolayer.onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = onnx.to_onnx(clf.to_local(), X[:1].astype(np.float32))
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    labels = session.run(None, {session.get_inputs()[0].name:
                                X.astype(np.float32)})[0]
    assert np.mean(labels == clf.predict(X)) > 0.99


def test_a_pipeline_with_dask_mls_scaler(client):
    dask_ml_preprocessing = pytest.importorskip("dask_ml.preprocessing")
    X, y = load_digits(return_X_y=True)
    dX, dy = _dask(X.astype(float), 450), _dask(y, 450)
    pipe = make_pipeline(dask_ml_preprocessing.StandardScaler(),
                         DaskTwoLayerSoftmaxClassifier(**PARAMS))
    pipe.fit(dX, dy)
    predicted = pipe.predict(dX)
    assert isinstance(predicted, da.Array)
    assert np.mean(predicted.compute() == y) > 0.99
    expected = make_pipeline(StandardScaler(),
                             TwoLayerSoftmaxClassifier(**PARAMS)).fit(X, y)
    # (A copy: dask-ml's scaler transforms an in-memory array in place.)
    np.testing.assert_allclose(pipe.predict_proba(X.copy()),
                               expected.predict_proba(X), atol=1e-4)


def test_parquet_input_sets_the_feature_names(client, digits, tmp_path):
    X, y = digits
    columns = [f"pixel_{k}" for k in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=columns).assign(label=y)
    for part, rows in enumerate(np.array_split(np.arange(len(y)), 4)):
        frame.iloc[rows].to_parquet(tmp_path / f"part-{part}.parquet")
    ddf = dd.read_parquet(str(tmp_path))
    assert ddf.npartitions == 4
    got = DaskTwoLayerSoftmaxClassifier(**PARAMS).fit(ddf[columns], ddf["label"])
    expected = TwoLayerSoftmaxClassifier(**PARAMS).fit(frame[columns], y)
    assert list(got.feature_names_in_) == columns
    _assert_same_model(got, expected, frame[columns])
    lazy = got.predict_proba(ddf[columns])
    assert isinstance(lazy, da.Array) and lazy.numblocks[0] == 4
    np.testing.assert_allclose(lazy.compute(), expected.predict_proba(frame[columns]),
                               atol=PROBA_TOL)
    assert got.score(ddf[columns], ddf["label"]) == pytest.approx(
        expected.score(frame[columns], y))
    with pytest.raises(ValueError, match="feature names"):
        got.predict(ddf[columns[::-1]])


# --------------------------------------------------- reads and client memory
def _partition(seed, n, d, counter=None):
    """A partition of a generated data set, made on the worker, with a label
    column; ``counter`` (a file) gets a line per read."""
    if counter is not None:
        with open(counter, "a") as f:
            f.write(f"{seed}\n")
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, d)), columns=[f"x{j}" for j in range(d)])
    label = (frame["x0"] + frame["x1"] > 0).astype(np.int64) + (frame["x2"] > 1)
    return frame.assign(label=label)


def _generated(n_partitions, rows, d, counter=None):
    """X and y from a Dask dataframe whose partitions are made on the workers."""
    df = dd.from_delayed([dask.delayed(_partition, pure=True)(seed, rows, d, counter)
                          for seed in range(n_partitions)],
                         meta=_partition(0, 0, d))
    return df[[f"x{j}" for j in range(d)]], df["label"]


def test_the_data_are_read_once(client, tmp_path):
    counter = tmp_path / "reads.txt"
    X, y = _generated(6, 500, 10, counter=str(counter))
    clf = DaskTwoLayerSoftmaxClassifier(hidden_size=8, max_iter=20, random_state=0,
                                        early_stopping=True).fit(X, y)
    assert clf.n_iter_ >= 5  # many evaluations, and a validation score each
    reads = counter.read_text().split()
    assert sorted(map(int, reads)) == list(range(6))  # each block, once


@pytest.mark.parametrize("rows", [
    (1_000, 10_000), pytest.param((1_000, 40_000), marks=pytest.mark.slow)],
    ids=["10x", "40x"])
def test_the_clients_memory_does_not_grow_with_the_rows(client, rows):
    def peak(rows):
        """The client's peak traced memory over a fit (the least of two, as
        the client's event loop allocates now and then on its own)."""
        X, y = _generated(8, rows, 20)
        peaks = []
        for _ in range(2):
            tracemalloc.start()
            DaskTwoLayerSoftmaxClassifier(hidden_size=16, max_iter=5,
                                          random_state=0).fit(X, y)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        return min(peaks)

    few, many = rows
    peak(few)  # imports and first-use caches
    small, large = peak(few), peak(many)
    data_bytes = 8 * many * 21 * 8
    report = (f"client peak {small / 2**20:.2f} MiB at {8 * few:,} rows, "
              f"{large / 2**20:.2f} MiB at {8 * many:,} rows "
              f"({data_bytes / 2**20:.0f} MiB of data)")
    print(report)
    # 10x (40x) the rows: the client's peak stays put (about 1.8 MiB),
    # below the data's size (13 MiB (54 MiB)).
    assert large < 1.5 * small, report
    assert large < data_bytes / 5, report


# ------------------------------------------------------------ losing a worker
def _install_kill(phase, evaluation, marker):
    """On a worker: die (SIGKILL) when starting ``phase`` of evaluation
    ``evaluation`` of the fit (``"evaluate"``: a worker's evaluation of its
    blocks; ``"sum"``: an addition of partial sums in a tree; ``"relay"``:
    passing theta on in a graph's tree) or, with ``phase="prepare"``, its
    first block's preparation; once per ``marker`` file across the cluster
    (tests/fault_campaign.py's ``arm``)."""
    from fault_campaign import arm

    arm(phase, "kill", evaluation=evaluation, marker=marker)


# Where a worker dies: (phase, evaluation, settings). On four workers an
# evaluation is a star of calls; in a tree (fan-in 2) worker 1 calls worker
# 3 and adds its total. Through the scheduler (a task graph), the additions
# and relays of a tree are tasks of their own.
TREE = {"sk-twolayer.dask.star-workers": 0, "sk-twolayer.dask.fan-in": 2}
GRAPH = {"sk-twolayer.dask.direct-transfers": False}
KILL_POINTS = ([("prepare", 0, {})]
               + [("evaluate", k, {}) for k in (1, 2, 3, 5, 8, 12, 16, 20, 24)]
               + [("evaluate", 6, TREE), ("sum", 4, TREE),
                  ("evaluate", 5, GRAPH), ("sum", 4, {**GRAPH, **TREE}),
                  ("relay", 7, {**GRAPH, **TREE})])
# The default tier kills at one point of a star and one of a tree (and
# test_an_evaluation_whose_worker_died_is_tried_again in a graph); the slow
# tier at every point.
FEW_KILL_POINTS = [("evaluate", 3, {}), ("sum", 4, TREE)]


class _Killable:
    """A cluster of worker processes to kill workers in.

    A killed worker's nanny restarts it, which takes a few seconds (and
    which distributed's nannies now and then fail to do after repeated
    kills). With four workers, a fit rarely waits for a restart: it needs
    two alive; where fewer are, the cluster is scaled up with new ones.
    """

    def __init__(self):
        self.cluster = self.client = None

    def ready(self, n=2):
        """A client of the cluster, with at least ``n`` live workers."""
        if self.client is None:
            self.cluster = _new_cluster(4)
            self.client = Client(self.cluster, set_as_default=False)
        alive = len(self.client.scheduler_info(n_workers=-1)["workers"])
        if alive < n:
            self.cluster.scale(len(self.cluster.worker_spec) + n - alive)
        self.client.wait_for_workers(n, timeout=60)
        return self.client

    def close(self):
        if self.client is not None:
            self.client.close()
            _close(self.cluster)
        self.cluster = self.client = None


@pytest.fixture(scope="module")
def killable():
    # Workers forked from a server process that has the imports done: a
    # killed worker's replacement starts in a fraction of the time a fresh
    # interpreter takes.
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        cluster = _Killable()
        yield cluster
        cluster.close()


@pytest.mark.parametrize("kill_points", [
    FEW_KILL_POINTS, pytest.param(KILL_POINTS, marks=pytest.mark.slow)],
    ids=["two points", "every point"])
def test_a_worker_killed_mid_fit_loses_nothing(killable, tmp_path, kill_points):
    X, y = make_classification(3000, 20, n_informative=10, n_classes=4,
                               random_state=0)
    dX, dy = _dask(X, 250), _dask(y, 250)
    params = dict(hidden_size=8, max_iter=26, random_state=0)
    # The same model as in memory, however the fit was interrupted.
    expected = TwoLayerSoftmaxClassifier(**params).fit(X, y)
    outcomes = []
    for trial, (phase, evaluation, settings) in enumerate(kill_points):
        # (A tree's relays need four workers: a root, a relay and its child.)
        c = killable.ready(4 if settings else 2)
        pids = set(c.run(os.getpid).values())
        marker = tmp_path / f"killed-{trial}"
        c.run(_install_kill, phase, evaluation, str(marker))
        start = time.monotonic()
        with dask.config.set(settings):
            got = _on(c, **params).fit(dX, dy)
        elapsed = time.monotonic() - start
        assert marker.exists(), f"trial {trial}: no worker was killed"
        assert not pids <= set(c.run(os.getpid).values()), f"trial {trial}: none is gone"
        assert got.n_iter_ == expected.n_iter_, (phase, evaluation, got.n_iter_)
        gap = np.abs(got.predict_proba(X) - expected.predict_proba(X)).max()
        outcomes.append((phase, evaluation, round(elapsed, 1), gap))
        assert gap <= PROBA_TOL, outcomes[-1]
        np.testing.assert_array_equal(got.predict(X), expected.predict(X))
    print("killed at, seconds, largest probability gap:", outcomes)
    assert len(outcomes) == len(kill_points)


def test_lost_data_that_cannot_be_recomputed_is_a_clear_error(killable, tmp_path):
    X, y = make_classification(4000, 20, n_classes=3, n_informative=6,
                               random_state=0)
    c = killable.ready()
    # Scattered blocks have no source to recompute them from.
    parts = [(c.scatter(X[i:i + 500]), c.scatter(y[i:i + 500]))
             for i in range(0, 4000, 500)]
    dX = da.concatenate([da.from_delayed(xf, shape=(500, 20), dtype=float)
                         for xf, _ in parts])
    dy = da.concatenate([da.from_delayed(yf, shape=(500,), dtype=y.dtype)
                         for _, yf in parts])
    c.run(_install_kill, "evaluate", 3, str(tmp_path / "killed"))
    clf = _on(c, hidden_size=8, max_iter=50)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="could not be recomputed"):
        clf.fit(dX, dy)
    assert time.monotonic() - start < 60
    assert not hasattr(clf, "coefs_")


def test_a_cluster_without_workers_is_an_error_not_a_hang(digits, monkeypatch):
    X, y = digits
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c, \
            dask.config.set({"sk-twolayer.dask.no-workers-timeout": "2s"}):
        dX, dy = _dask(X, 600), _dask(y, 600)
        stop = threading.Timer(1.0, lambda: cluster.scale(0))
        original = _worker.block_terms

        def slow(*args):  # long enough evaluations for the scale-down
            time.sleep(0.2)
            return original(*args)

        monkeypatch.setattr(_worker, "block_terms", slow)
        stop.start()
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="No Dask worker .*no-workers-timeout"):
            _on(c, **PARAMS).fit(dX, dy)
        assert time.monotonic() - start < 60
        stop.cancel()


def _watch(client, **settings):
    current = _config.settings()._replace(**settings)
    return _faults.Watch(client, current)


def test_results_lost_after_their_tasks_finished_are_an_error_not_a_hang():
    # A finished result whose worker then leaves: waiting for it must keep
    # an eye on the cluster, as waiting for a running task does.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        watch = _watch(c, no_workers_timeout=2)
        future = c.submit(np.arange, 3)
        np.testing.assert_array_equal(watch.gather([future])[0], np.arange(3))
        cluster.scale(0)
        deadline = time.monotonic() + 30
        while c.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.1)
        outcome = []

        def wait():
            try:
                watch.gather([future])
            except RuntimeError as error:
                outcome.append(error)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        waiter.join(timeout=30)
        assert not waiter.is_alive(), "waiting for a lost result hung"
        assert outcome and "No Dask worker" in str(outcome[0])


def test_a_gather_that_takes_longer_than_a_poll_is_never_cut_off(client):
    # Large results, many polls: the gather goes on as one request (it used
    # to be cut off after a fixed limit and started anew, forever).
    blocks = [client.submit(np.full, 2_000_000, float(i), pure=False)
              for i in range(8)]  # 128 MB in all
    distributed.wait(blocks)
    polls = []
    watch = _watch(client, poll_interval=0.005)
    got = []
    thread = threading.Thread(
        target=lambda: got.append(watch.gather(blocks, on_poll=polls.append)),
        daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the gather was cut off and started again"
    assert [float(b[0]) for b in got[0]] == [float(i) for i in range(8)]
    assert polls, "the gather took less than one poll: make the results larger"


# ------------------------------------------------------ nothing left behind
def test_nothing_is_left_behind_after_a_fit_or_a_failed_one(digits):
    X, y = digits
    X_nan = X.copy()
    X_nan[1500, 7] = np.nan
    with _cluster(2) as cluster, Client(cluster, set_as_default=False) as c:
        clf = _on(c, **dict(PARAMS, max_iter=10))
        for _ in range(2):  # two fits in a row: nothing accumulates
            clf.fit(_dask(X, 300), _dask(y, 300), X_val=X[::3], y_val=y[::3])
            left, clean = left_after(c)
            assert clean, left
        with pytest.raises(ValueError, match="NaN") as failed:
            clf.fit(_dask(X_nan, 300), _dask(y, 300))
        # (even while the error's traceback, which refers to its futures, lives)
        assert failed.value.__traceback__ is not None
        left, clean = left_after(c)
        assert clean, left


# -------------------------------------------------- clients and clusters gone
def _fitted_elsewhere(X, y):
    return DaskTwoLayerSoftmaxClassifier(**dict(PARAMS, max_iter=5)).fit(
        _dask(X, 600), _dask(y, 600))


def test_a_closed_client_is_a_clear_error_and_keeps_the_model(client, digits):
    X, y = digits
    clf = _fitted_elsewhere(X, y)
    before = _unchanged(clf)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster:
        other = Client(cluster, set_as_default=False)
        other.close()
        clf.client = other
        for call in (lambda: clf.fit(_dask(X, 600), _dask(y, 600)),
                     lambda: clf.score(_dask(X, 600), _dask(y, 600))):
            with pytest.raises(RuntimeError, match=rf"client {other.id} is closed.*"
                                                   r"clf.client = None"):
                call()
        clf.client = None
    assert _unchanged(clf) == before


def _slow_evaluations(monkeypatch, seconds=0.05):
    original = _worker.block_terms

    def slow(*args):  # evaluations long enough for something to happen
        time.sleep(seconds)
        return original(*args)

    monkeypatch.setattr(_worker, "block_terms", slow)


@pytest.mark.parametrize("gone", ["cluster closed", "scheduler lost"])
def test_a_cluster_gone_mid_fit_is_a_clear_error_and_keeps_the_model(
        client, digits, monkeypatch, gone):
    X, y = digits
    clf = _fitted_elsewhere(X, y)
    before, params = _unchanged(clf), clf.get_params()
    _slow_evaluations(monkeypatch)
    # (A client gives up reconnecting after this: the test's clean-up waits.)
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                         dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as other:
        address = cluster.scheduler.address
        clf.client = other
        if gone == "cluster closed":
            stop = threading.Timer(2.0, cluster.close)
        else:
            stop = threading.Timer(2.0, lambda: cluster.sync(cluster.scheduler.close))
        stop.start()
        start = time.monotonic()
        # (500 evaluations of 50 ms or more: 25 s, uninterrupted)
        with pytest.raises(RuntimeError, match=rf"Lost the connection to the Dask "
                                               rf"scheduler at {re.escape(address)}"):
            clf.set_params(max_iter=500, tol=0.0).fit(_dask(X, 600), _dask(y, 600))
        assert time.monotonic() - start < 20
        stop.join()
    clf.client = None
    clf.set_params(**params)
    assert _unchanged(clf) == before


# -------------------------------------------------- faults between evaluations
def _on_evaluation(monkeypatch, actions):
    """Call ``actions[n](objective, plan)`` just before evaluation ``n`` of
    the fit sends its parameters out (after its plan is made); the plans
    it was called with, by evaluation."""
    original = _objective.DistributedObjective._attempt
    done = {}

    def attempt(self, spec, theta, plan, *args, **kwargs):
        n = self.evaluations
        if n in actions and n not in done:
            done[n] = plan
            actions[n](self, plan)
        return original(self, spec, theta, plan, *args, **kwargs)

    monkeypatch.setattr(_objective.DistributedObjective, "_attempt", attempt)
    return done


def _die():
    """On a worker: die (SIGKILL) in a moment, once this call has returned."""
    threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGKILL)).start()


def test_the_root_worker_killed_between_evaluations(killable, monkeypatch):
    c = killable.ready()
    X, y = make_classification(2000, 20, n_informative=10, n_classes=3,
                               random_state=0)
    params = dict(hidden_size=8, max_iter=12, random_state=0)
    expected = TwoLayerSoftmaxClassifier(**params).fit(X, y)

    def kill_the_root(wait):
        def kill(objective, plan):
            # Killed where the plan already names it, before the parameters
            # are sent to it: just dead (_die kills it 50 ms after its call
            # returns; the scheduler may not know yet that it is gone), or
            # once the scheduler has seen it go.
            c.run(_die, workers=[plan.workers[0]])
            time.sleep(wait)
        return kill

    killed = _on_evaluation(monkeypatch, {4: kill_the_root(0.1),
                                          9: kill_the_root(0.6)})
    start = time.monotonic()
    got = _on(c, **params).fit(_dask(X, 250), _dask(y, 250))
    assert sorted(killed) == [4, 9]
    assert killed[4].workers[0] != killed[9].workers[0]
    assert time.monotonic() - start < 60
    assert got.n_iter_ == expected.n_iter_
    np.testing.assert_allclose(got.predict_proba(X), expected.predict_proba(X),
                               atol=PROBA_TOL)


def test_a_paused_root_worker(digits, monkeypatch):
    # A paused worker runs no task: the parameters go elsewhere, and the fit
    # goes on without waiting for it (it waited no-workers-timeout per
    # evaluation before).
    X, y = digits
    expected = TwoLayerSoftmaxClassifier(**PARAMS).fit(X, y)
    # (No memory limit: Dask would take the pause back at once, the worker's
    # memory being far below it.)
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                      memory_limit=0, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as c:
        def pause(objective, plan):
            def paused(dask_worker):
                from distributed.core import Status

                dask_worker.status = Status.paused

            c.run(paused, workers=[plan.workers[0]])

        paused = _on_evaluation(monkeypatch, {3: pause})
        start = time.monotonic()
        got = _on(c, **PARAMS).fit(_dask(X, 300), _dask(y, 300))
        elapsed = time.monotonic() - start
        status = c.run(lambda dask_worker: dask_worker.status.name,
                       workers=[paused[3].workers[0]])
    assert list(status.values()) == ["paused"]
    assert elapsed < 30  # no-workers-timeout (30 s) once would exceed it
    _assert_same_model(got, expected, X)


# ------------------------------------------------------------------ bad input
def _unchanged(clf):
    return pickle.dumps(clf)


def test_bad_input_gets_a_clear_error_and_keeps_the_model(client, digits):
    X, y = digits
    clf = DaskTwoLayerSoftmaxClassifier(**PARAMS).fit(_dask(X, 500), _dask(y, 500))
    before = _unchanged(clf)
    dX = _dask(X, 500)
    X_nan, X_inf = X.copy(), X.copy()
    X_nan[1234, 5], X_inf[77, 3] = np.nan, np.inf
    frame = dd.from_pandas(pd.DataFrame(X), npartitions=4).clear_divisions()
    cases = [
        ((dX, _dask(y[:-5], 500)), ValueError, "not aligned"),
        ((dX, _dask(y, 500), _dask(np.ones(1000), 500)), ValueError, "not aligned"),
        ((frame, dd.from_pandas(pd.Series(y), npartitions=3).clear_divisions()),
         ValueError, "3 partitions, X has 4: they are not aligned"),
        ((frame, _dask(y, 500)), TypeError, "y must be a Dask series"),
        ((_dask(X_nan, 500), _dask(y, 500)), ValueError, "row block 2 .*NaN"),
        ((_dask(X_inf, 500), _dask(y, 500)), ValueError, "row block 0 .*infinity"),
        ((da.from_array(X, chunks=(500, 32)), _dask(y, 500)), ValueError,
         r"chunked along its columns .*rechunk\(\{1: -1\}\)"),
        ((dX[dX[:, 0] > -10], _dask(y, 600)), ValueError,
         "Compute the chunk sizes once"),
        ((dX, _dask(y + 0.5, 500)), ValueError, "Unknown label type"),
        ((dX, _dask(y, 500), _dask(-np.ones(len(y)), 500)), ValueError,
         "Negative values"),
        ((X, _dask(y, 500)), TypeError, "y is a Dask collection but X is in memory"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            clf.fit(*args)
        assert _unchanged(clf) == before, message
    for solver in ("sgd", "adam"):
        with pytest.raises(ValueError, match="dask_ml.wrappers.Incremental"):
            clone(clf).set_params(solver=solver).fit(dX, _dask(y, 500))
    with pytest.raises(TypeError, match="Incremental"):
        clone(clf).set_params(solver="sgd").partial_fit(dX, _dask(y, 500),
                                                        classes=np.arange(10))


def test_unknown_chunk_sizes_are_measured_once(client, digits):
    X, y = digits
    dX, dy = _dask(X, 400), _dask(y, 400)
    keep = dX[:, 0] > -100  # every row, in blocks of unknown size
    unknown_X, unknown_y = dX[keep], dy[keep]
    assert np.isnan(unknown_X.shape[0])
    expected = TwoLayerSoftmaxClassifier(**PARAMS).fit(X, y)
    got = DaskTwoLayerSoftmaxClassifier(**PARAMS).fit(unknown_X, unknown_y)
    _assert_same_model(got, expected, X)
    assert np.isnan(got.predict(unknown_X).shape[0])


def test_without_a_client_the_error_says_how_to_start_one(tmp_path):
    # In a fresh process, where no client was ever started.
    script = tmp_path / "no_client.py"
    script.write_text(
        "import dask.array as da, numpy as np\n"
        "from sklearn.datasets import load_iris\n"
        "from sk_twolayer import TwoLayerSoftmaxClassifier\n"
        "from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier\n"
        "X, y = load_iris(return_X_y=True)\n"
        "clf = DaskTwoLayerSoftmaxClassifier(hidden_size=4, max_iter=5, random_state=0)\n"
        "try:\n"
        "    clf.fit(da.from_array(X, chunks=50), da.from_array(y, chunks=50))\n"
        "except ValueError as error:\n"
        "    print('ERROR', error)\n"
        "ref = TwoLayerSoftmaxClassifier(hidden_size=4, max_iter=5, random_state=0)\n"
        "print('SAME', np.array_equal(clf.fit(X, y).predict_proba(X),\n"
        "                             ref.fit(X, y).predict_proba(X)))\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-W", "ignore", str(script)],
                         capture_output=True, text=True, timeout=120).stdout
    assert re.search(r"ERROR .*needs a running Dask client.*Client\(\)", out), out
    # In memory it needs none, and fits as the in-memory estimator.
    assert "SAME True" in out, out
