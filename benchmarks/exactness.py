"""How close the data-parallel fit is to the in-memory fit, measured.

Run with ``python benchmarks/run.py --only exactness`` (about two minutes
here; needs the ``dask`` extra; it was ``python benchmarks/exactness.py``).
Not a timing: it may run beside other work.

The data are rows of a linear teacher (float64), N rows for training in
``--exactness-blocks`` row blocks on a ``LocalCluster`` of two worker
processes with one thread each, and ``--exactness-test-rows`` more rows to
compare predictions on. Every fit starts from the same weights (``random_state=0``)
and runs ``tol=0`` so that it stops only at ``max_iter``.

- **Per evaluation.** Every point at which a data-parallel fit of
  ``max(--exactness-max-iter)`` iterations evaluated the objective is evaluated again
  by the in-memory fit's objective; the section gives the largest relative
  difference of the loss, and of the gradient (largest entry of the
  difference over the largest entry of the in-memory gradient).
- **Long fits.** For each ``max_iter``, the largest gap between the test
  probabilities of the in-memory fit and those of a fit that differs from
  it only in the order in which it adds: the data-parallel fit, the
  in-memory fit with two BLAS threads instead of one, and the in-memory fit
  in smaller row blocks (``sklearn.config_context(working_memory=1)``,
  MiB). Also: how many test labels differ, and each fit's iterations.
"""

import contextlib

import numpy as np
import sklearn
from threadpoolctl import threadpool_limits

from common import make_block, measured_lines, quietly
from sk_twolayer import TwoLayerSoftmaxClassifier, _solvers

KEY, NAME, LETTER = "exactness", "exactness", "exactness"
DEFAULT = False


def add_options(parser):
    parser.add_argument("--exactness-n", type=int, default=20_000,
                        help="training rows of the section exactness")
    parser.add_argument("--exactness-d", type=int, default=50)
    parser.add_argument("--exactness-hidden", type=int, default=64)
    parser.add_argument("--exactness-blocks", type=int, default=10)
    parser.add_argument("--exactness-test-rows", type=int, default=4_000)
    parser.add_argument("--exactness-max-iter", default="30,60,100,150,200",
                        help="comma-separated max_iter of the long fits")


QUICK = {"exactness_n": 600, "exactness_d": 8, "exactness_hidden": 8,
         "exactness_blocks": 3, "exactness_test_rows": 200,
         "exactness_max_iter": "3,6"}

CONTENDERS = {
    "dask": "data-parallel, 2 workers",
    "blas_threads": "in memory, 2 BLAS threads",
    "row_blocks": "in memory, 1 MiB row blocks",
}


@contextlib.contextmanager
def recorded_evaluations():
    """What every fit inside hands to scipy's L-BFGS, and what it got back:
    ``[(fun, [(x, loss, gradient), ...]), ...]``, one entry per fit."""
    calls = []
    minimize = _solvers.minimize

    def recording(fun, x0, *args, **kwargs):
        evaluations = []

        def fun_recorded(x):
            loss, grad = fun(x)
            # The solver reuses its buffers: keep copies.
            evaluations.append((np.array(x, copy=True), float(loss),
                                np.array(grad, copy=True)))
            return loss, grad

        calls.append((fun, evaluations))
        return minimize(fun_recorded, x0, *args, **kwargs)

    _solvers.minimize = recording
    try:
        yield calls
    finally:
        _solvers.minimize = minimize


def measure(cfg):
    import dask.array as da
    from distributed import Client, LocalCluster

    from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier

    n, d, c = cfg.exactness_n, cfg.exactness_d, cfg.classes
    blocks = cfg.exactness_blocks
    max_iters = [int(k) for k in cfg.exactness_max_iter.split(",")]
    rows = n // blocks
    parts = [make_block(seed, rows, d, c) for seed in range(blocks + 1)]
    X = np.concatenate([p[0] for p in parts[:-1]])
    y = np.concatenate([p[1] for p in parts[:-1]])
    X_test = np.concatenate([make_block(10_000 + i, cfg.exactness_test_rows // 2,
                                        d, c)[0] for i in range(2)])
    params = dict(hidden_size=cfg.exactness_hidden, tol=0.0, random_state=0)

    def in_memory(max_iter, threads=1, working_memory=None):
        clf = TwoLayerSoftmaxClassifier(**params, max_iter=max_iter)
        context = (sklearn.config_context(working_memory=working_memory)
                   if working_memory else contextlib.nullcontext())
        with threadpool_limits(threads, user_api="blas"), context:
            return quietly(lambda: clf.fit(X, y))

    # Worker processes; with --quick (a smoke test), threads, which start at
    # once.
    where = {} if cfg.quick else {"host": "127.0.0.1"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=not cfg.quick,
                      dashboard_address=None, **where) as cluster, \
            Client(cluster, set_as_default=False) as client:
        dX = da.from_array(X, chunks=(rows, -1))
        dy = da.from_array(y, chunks=rows)

        def on_dask(max_iter):
            clf = DaskTwoLayerSoftmaxClassifier(**params, max_iter=max_iter)
            clf.client = client
            return quietly(lambda: clf.fit(dX, dy))

        # ---- per evaluation: the in-memory objective at the points where
        # the data-parallel fit evaluated its own.
        with recorded_evaluations() as calls:
            on_dask(max(max_iters))
            in_memory(1)
        (_, evaluations), (memory_fun, _) = calls
        loss_gaps, grad_gaps = [], []
        with threadpool_limits(1, user_api="blas"):
            for x, loss, grad in evaluations:
                expected_loss, expected_grad = memory_fun(x)
                loss_gaps.append(abs(loss - expected_loss) / abs(expected_loss))
                grad_gaps.append(float(np.abs(grad - expected_grad).max()
                                       / np.abs(expected_grad).max()))
        per_evaluation = {"evaluations": len(evaluations),
                          "max_rel_loss_gap": float(max(loss_gaps)),
                          "max_rel_grad_gap": float(max(grad_gaps))}

        # ---- long fits
        fits = []
        for max_iter in max_iters:
            reference = in_memory(max_iter)
            proba = reference.predict_proba(X_test)
            labels = reference.predict(X_test)
            others = {"dask": on_dask(max_iter),
                      "blas_threads": in_memory(max_iter, threads=2),
                      "row_blocks": in_memory(max_iter, working_memory=1)}
            for name, clf in others.items():
                fits.append({
                    "max_iter": max_iter, "contender": name,
                    "n_iter": [reference.n_iter_, clf.n_iter_],
                    "max_proba_gap": float(np.abs(clf.predict_proba(X_test)
                                                  - proba).max()),
                    "labels_differ": int((clf.predict(X_test) != labels).sum())})
    return {"n": len(y), "d": d, "hidden": cfg.exactness_hidden, "classes": c,
            "blocks": blocks, "workers": 2, "worker_processes": not cfg.quick,
            "test_rows": len(X_test),
            "per_evaluation": per_evaluation, "fits": fits}


def goals(r):
    return {}


def text(r, run):
    return [*_table(r), *measured_lines(run)[:1]]


def _table(r):
    workers = "processes" if r.get("worker_processes", True) else "threads"
    lines = [f"exactness: the data-parallel and the in-memory fit, N={r['n']} "
             f"D={r['d']} H={r['hidden']} C={r['classes']}, {r['blocks']} blocks "
             f"on {r['workers']} worker {workers}, {r['test_rows']} test rows",
             f"    per evaluation ({r['per_evaluation']['evaluations']} "
             "evaluations): largest relative gap of the loss "
             f"{r['per_evaluation']['max_rel_loss_gap']:.1e}, of the gradient "
             f"{r['per_evaluation']['max_rel_grad_gap']:.1e}",
             "    largest gap of the test probabilities to the in-memory fit "
             "(test labels that differ), by max_iter:",
             "    | max_iter | " + " | ".join(CONTENDERS.values()) + " |",
             "    " + "|---" * (len(CONTENDERS) + 1) + "|"]
    for max_iter in sorted({f["max_iter"] for f in r["fits"]}):
        cells = {f["contender"]: f for f in r["fits"] if f["max_iter"] == max_iter}
        lines.append(f"    | {max_iter} | " + " | ".join(
            f"{cells[c]['max_proba_gap']:.1e} ({cells[c]['labels_differ']})"
            for c in CONTENDERS) + " |")
    return lines


if __name__ == "__main__":
    raise SystemExit("this section runs with: python benchmarks/run.py --only exactness")
