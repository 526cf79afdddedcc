"""Section (g): data-parallel L-BFGS on a Dask cluster.

Run with ``python benchmarks/run.py --only dask``. The data (float64, N rows,
D features, C classes, a linear teacher) are generated block by block on the
workers of a ``distributed.LocalCluster`` on loopback (worker processes with
one thread each); the in-memory contender gets the same rows. Every fit runs
``--lbfgs-iter`` L-BFGS iterations (``tol=0``). One run measures:

- **per-evaluation overhead**: each evaluation's wall time on the client
  minus the summed compute time of its tasks on its busiest worker (from
  the scheduler's task stream), against a bare task round trip on the same
  cluster (submit a no-op, wait for its result);
- **one worker against the in-memory fit**, one BLAS thread each: the ratio
  of the fit times (the Dask fit includes making and preparing its
  blocks), for blocks made on the workers and for blocks of an in-memory
  array sent with ``da.from_array`` (which arrive unaligned);
- **two workers against one**;
- **Spark MLlib's MultilayerPerceptronClassifier** where pyspark is
  installed (``local[k]``, same layers and iterations, data cached before
  the clock starts): time per iteration against ours on as many workers as
  Spark has cores, each the difference of a fit of all iterations and a fit
  of one, divided by the iterations between;
- where the machine has more than two cores: the scaling curve, 1, 2, 4
  and 8 workers (as many as there are cores).

Fits alternate between contenders repeat by repeat, and every ratio is the
median over repeats of the ratio within a repeat, as in the other sections.
"""

import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from common import (DASK_MISSING, TARGETS, alternate, dask_data, goal, make_block,
                    measured_lines, quietly, ratio)

KEY, NAME, LETTER = "dask", "dask", "(g)"


def add_options(parser):
    parser.add_argument("--dask-n", type=int, default=200_000,
                        help="rows of section (g)")
    parser.add_argument("--dask-d", type=int, default=100,
                        help="features of section (g)")
    parser.add_argument("--dask-hidden", type=int, default=64,
                        help="hidden units of section (g)")
    parser.add_argument("--dask-blocks", type=int, default=10,
                        help="row blocks of the Dask array of section (g)")
    parser.add_argument("--dask-spark", choices=("auto", "no"), default="auto",
                        help="section (g) times Spark MLlib's MLP where pyspark "
                             "is installed (auto), or not (no)")


QUICK = {"dask_n": 2000, "dask_d": 10, "dask_hidden": 8, "dask_blocks": 4}


def _from_array(X, y, n_blocks):
    """X and y as a user brings an in-memory array: ``da.from_array``; its
    blocks reach the workers over the network."""
    import dask.array as da

    rows = X.shape[0] // n_blocks
    return (da.from_array(X, chunks=(rows, -1)), da.from_array(y, chunks=rows))


def _noop():
    return None


class _Clusters:
    """One LocalCluster (and client) per number of workers, kept alive.

    Worker processes; with ``processes=False`` (``--quick``, a smoke test of
    the code), worker threads of this process, which start at once.
    """

    def __init__(self, processes=True):
        self._open = {}
        self.processes = processes

    def client(self, workers):
        from distributed import Client, LocalCluster

        if workers not in self._open:
            where = {"host": "127.0.0.1"} if self.processes else {}
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                   processes=self.processes,
                                   dashboard_address=":0", **where)
            self._open[workers] = (cluster, Client(cluster, set_as_default=False))
        return self._open[workers][1]

    def close(self):
        for cluster, client in self._open.values():
            client.close()
            cluster.close()


def _round_trip(client, calls=60):
    for _ in range(5):
        client.submit(_noop, pure=False).result()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        client.submit(_noop, pure=False).result()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _evaluation_overheads(client, fit):
    """Each evaluation's wall time minus its busiest worker's compute time.

    An evaluation's tasks on one worker (one thread) run one after another,
    so the busiest worker's summed compute is the least an evaluation can
    take; the rest is overhead: sending theta, scheduling, reducing,
    receiving the result.
    """
    from distributed import get_task_stream

    from sk_twolayer.dask._objective import DistributedObjective

    walls = []
    terms = DistributedObjective.terms

    def timed(self, part, *args):
        t = time.perf_counter()
        result = terms(self, part, *args)
        if part == "train":
            walls.append((self.evaluations, time.perf_counter() - t))
        return result

    DistributedObjective.terms = timed
    try:
        with get_task_stream(client) as stream:
            fit()
    finally:
        DistributedObjective.terms = terms
    busy = {}
    for task in stream.data:
        key = str(task["key"])
        if not key.startswith("sk-twolayer-train-"):
            continue
        # sk-twolayer-train-<token>-<evaluation>-<attempt>-...
        evaluation = int(key.split("-")[4])
        seconds = sum(s["stop"] - s["start"] for s in task["startstops"]
                      if s["action"] == "compute")
        per_worker = busy.setdefault(evaluation, {})
        per_worker[task["worker"]] = per_worker.get(task["worker"], 0.0) + seconds
    compute = {e: max(w.values()) for e, w in busy.items()}
    return [wall - compute[e] for e, wall in walls if e in compute], \
        [compute[e] for e, _ in walls if e in compute]


def _spark_per_iteration(X, y, cfg, cores):
    """Seconds per L-BFGS iteration of Spark MLlib's MLP, or why not run."""
    try:
        import pandas as pd
        from pyspark.ml.classification import MultilayerPerceptronClassifier
        from pyspark.ml.feature import VectorAssembler
        from pyspark.sql import SparkSession
    except ImportError:
        return None, "pyspark is not installed (pip install pyspark; needs Java 17)"
    spark = (SparkSession.builder.master(f"local[{cores}]")
             .config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "4g")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .getOrCreate())
    try:
        import pyspark

        columns = [f"x{j}" for j in range(X.shape[1])]
        frame = spark.createDataFrame(pd.DataFrame(X, columns=columns)
                                      .assign(label=y.astype(float)))
        data = (VectorAssembler(inputCols=columns, outputCol="features")
                .transform(frame).select("features", "label")
                .repartition(cores).cache())
        data.count()  # cached before any clock starts

        def fit(iterations):
            mlp = MultilayerPerceptronClassifier(
                layers=[X.shape[1], cfg.dask_hidden, cfg.classes],
                maxIter=iterations, tol=0.0, seed=0, solver="l-bfgs")
            t = time.perf_counter()
            model = mlp.fit(data)
            elapsed = time.perf_counter() - t
            summary = model.summary  # a method in pyspark 4, a property before
            summary = summary() if callable(summary) else summary
            return elapsed, summary.totalIterations

        fit(1)  # warm up the JVM
        times, done = [], None
        for _ in range(cfg.fit_repeats):
            one, _ = fit(1)
            full, done = fit(cfg.lbfgs_iter)
            times.append((full - one) / max(done - 1, 1))
        return {"per_iteration_s": float(np.median(times)), "iterations": done,
                "version": pyspark.__version__, "cores": cores}, None
    finally:
        spark.stop()


def measure(cfg):
    try:
        import distributed  # noqa: F401

        from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier
    except ImportError:
        return dict(DASK_MISSING)
    from sk_twolayer import TwoLayerSoftmaxClassifier

    n, d, h, c = cfg.dask_n, cfg.dask_d, cfg.dask_hidden, cfg.classes
    n_blocks = cfg.dask_blocks
    rows = n // n_blocks
    n = rows * n_blocks
    blocks = [make_block(seed, rows, d, c) for seed in range(n_blocks)]
    X = np.concatenate([b[0] for b in blocks])
    y = np.concatenate([b[1] for b in blocks])
    del blocks
    dX, dy = dask_data(n_blocks, rows, d, c)
    params = dict(hidden_size=h, max_iter=cfg.lbfgs_iter, tol=0.0, random_state=0)
    cores = os.cpu_count() or 1
    clusters = _Clusters(processes=not cfg.quick)

    def in_memory(max_iter=cfg.lbfgs_iter):
        with threadpool_limits(1):
            return quietly(lambda: TwoLayerSoftmaxClassifier(
                **dict(params, max_iter=max_iter)).fit(X, y))

    def on(workers, max_iter=cfg.lbfgs_iter, data=(dX, dy)):
        clf = DaskTwoLayerSoftmaxClassifier(**dict(params, max_iter=max_iter))
        clf.client = clusters.client(workers)
        return quietly(lambda: clf.fit(*data))

    try:
        result = {"available": True, "n": n, "d": d, "hidden": h, "classes": c,
                  "blocks": n_blocks, "iterations": cfg.lbfgs_iter, "cores": cores,
                  "worker_processes": clusters.processes}
        # The fits are the same model: a check, not a timing.
        reference, one = in_memory(), on(1)
        result["same_model_max_proba_gap"] = float(np.abs(
            reference.predict_proba(X[:2000]) - one.predict_proba(X[:2000])).max())
        result["n_iter"] = [reference.n_iter_, one.n_iter_]

        # ---- per-evaluation overhead against a bare task round trip
        overhead = {}
        for workers in (1, 2) if cores >= 2 else (1,):
            client = clusters.client(workers)
            trip = _round_trip(client)
            extra, compute = _evaluation_overheads(client, lambda: on(workers))
            overhead[workers] = {
                "round_trip_s": trip,
                "overhead_s": float(np.median(extra)),
                "compute_s": float(np.median(compute)),
                "overhead_vs_round_trip": float(np.median(extra)) / trip,
                "evaluations": len(extra),
            }
        result["overhead"] = overhead

        # ---- one worker against the in-memory fit, for blocks made on the
        # workers and for blocks sent from an in-memory array; two workers
        # against one. The contenders alternate, and each ratio is taken
        # within a repeat.
        fX, fy = _from_array(X, y, n_blocks)
        contenders = {"memory": in_memory, "one": lambda: on(1),
                      "one_from_array": lambda: on(1, data=(fX, fy))}
        if cores >= 2:
            contenders["two"] = lambda: on(2)
        t = alternate(contenders, cfg.fit_repeats, warmup=0)
        result["one_worker"] = {"memory_s": float(np.median(t["memory"])),
                                "dask_s": float(np.median(t["one"])),
                                "time_ratio": ratio(t["one"], t["memory"]),
                                "from_array_s": float(np.median(t["one_from_array"])),
                                "from_array_time_ratio": ratio(t["one_from_array"],
                                                               t["memory"])}
        if cores >= 2:
            result["two_workers"] = {"one_s": float(np.median(t["one"])),
                                     "two_s": float(np.median(t["two"])),
                                     "speedup": ratio(t["one"], t["two"])}

        # ---- the scaling curve, where there are more cores than two
        curve = []
        if cores > 2:
            for workers in (1, 2, 4, 8):
                if workers > cores:
                    break
                seconds = float(np.median(alternate({"fit": lambda: on(workers)},
                                                    cfg.fit_repeats,
                                                    warmup=0)["fit"]))
                curve.append({"workers": workers, "fit_s": seconds})
            for point in curve:
                point["speedup_vs_one"] = curve[0]["fit_s"] / point["fit_s"]
        result["scaling"] = curve

        # ---- Spark MLlib on the same cores: time per iteration
        spark_cores = min(2, cores)
        spark, reason = (_spark_per_iteration(X, y, cfg, spark_cores)
                         if cfg.dask_spark == "auto" else (None, "not asked for"))
        if spark is None:
            result["spark"] = {"available": False, "reason": reason}
        else:
            ours = []
            for _ in range(cfg.fit_repeats):
                start = time.perf_counter()
                first = on(spark_cores, max_iter=1)
                one_s = time.perf_counter() - start
                start = time.perf_counter()
                full = on(spark_cores)
                full_s = time.perf_counter() - start
                ours.append((full_s - one_s) / max(full.n_iter_ - first.n_iter_, 1))
            spark.update(available=True, ours_per_iteration_s=float(np.median(ours)),
                         speedup=spark["per_iteration_s"] / float(np.median(ours)))
            result["spark"] = spark
        return result
    finally:
        clusters.close()


def goals(dask):
    if not dask.get("available"):
        return {}
    met = {}
    for workers, row in dask["overhead"].items():
        met[f"dask_overhead_vs_round_trip {workers} worker(s)"] = goal(
            row["overhead_vs_round_trip"], TARGETS["dask_overhead_vs_round_trip"],
            lower_is_better=True)
    met["dask_one_worker_vs_memory"] = goal(
        dask["one_worker"]["time_ratio"], TARGETS["dask_one_worker_vs_memory"],
        lower_is_better=True)
    met["dask_one_worker_vs_memory from_array"] = goal(
        dask["one_worker"]["from_array_time_ratio"],
        TARGETS["dask_one_worker_vs_memory"], lower_is_better=True)
    if "two_workers" in dask:
        met["dask_two_workers_vs_one"] = goal(dask["two_workers"]["speedup"],
                                              TARGETS["dask_two_workers_vs_one"])
    if dask["spark"].get("available"):
        met["dask_speedup_vs_spark"] = goal(dask["spark"]["speedup"],
                                            TARGETS["dask_speedup_vs_spark"])
    return met


def text(result, run):
    return [*_table(result), *measured_lines(run)[:1]]


def _table(result):
    if not result or not result.get("available"):
        return [f"(g) Dask: skipped ({(result or {}).get('reason', 'not run')})"]
    r = result
    workers = "worker processes" if r["worker_processes"] else "worker threads"
    lines = [f"(g) data-parallel L-BFGS on a LocalCluster ({workers}, 1 "
             f"thread each): N={r['n']} D={r['d']} H={r['hidden']} C={r['classes']}, "
             f"{r['blocks']} blocks, {r['iterations']} iterations, float64, "
             f"{r['cores']} cores",
             f"    same model as in memory: n_iter {r['n_iter'][0]} / "
             f"{r['n_iter'][1]}, largest probability gap "
             f"{r['same_model_max_proba_gap']:.1e}"]
    for workers, o in r["overhead"].items():
        lines.append(
            f"    per evaluation, {workers} worker(s): overhead "
            f"{o['overhead_s'] * 1e3:.1f} ms (wall - busiest worker's compute "
            f"{o['compute_s'] * 1e3:.1f} ms) = {o['overhead_vs_round_trip']:.2f}x a "
            f"bare round trip of {o['round_trip_s'] * 1e3:.1f} ms "
            f"({o['evaluations']} evaluations)")
    one = r["one_worker"]
    lines.append(f"    1 worker {one['dask_s']:.2f} s vs in memory {one['memory_s']:.2f} s"
                 f" (1 BLAS thread): time ratio {one['time_ratio']:.2f} (blocks made "
                 "on the workers)")
    lines.append(f"    1 worker {one['from_array_s']:.2f} s vs in memory: time ratio "
                 f"{one['from_array_time_ratio']:.2f} (blocks sent from an in-memory "
                 "array, da.from_array)")
    if "two_workers" in r:
        two = r["two_workers"]
        lines.append(f"    2 workers {two['two_s']:.2f} s vs 1 worker {two['one_s']:.2f} s:"
                     f" speedup {two['speedup']:.2f}")
    if r["scaling"]:
        lines.append("    scaling: " + ", ".join(
            f"{p['workers']} workers {p['fit_s']:.2f} s ({p['speedup_vs_one']:.2f}x)"
            for p in r["scaling"]))
    s = r["spark"]
    if s.get("available"):
        lines.append(
            f"    Spark MLlib {s['version']} MLP, local[{s['cores']}]: "
            f"{s['per_iteration_s'] * 1e3:.0f} ms per iteration ({s['iterations']} "
            f"iterations) vs ours on {s['cores']} workers "
            f"{s['ours_per_iteration_s'] * 1e3:.0f} ms: speedup {s['speedup']:.2f}")
    else:
        lines.append(f"    Spark MLlib: skipped ({s['reason']})")
    return lines
