"""Section (g) of ``benchmarks/run.py``: data-parallel L-BFGS on a Dask cluster.

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
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

TEACHER_SEED = 12345


def make_block(seed, rows, d, c):
    """Rows of the benchmark's data set: X and its labels from a teacher."""
    teacher = np.random.default_rng(TEACHER_SEED).standard_normal((d, c))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, d))
    y = np.argmax(X @ teacher + rng.standard_normal((rows, c)), axis=1)
    return X, y


def _dask_data(n_blocks, rows, d, c):
    import dask
    import dask.array as da

    parts = [dask.delayed(make_block, pure=True)(seed, rows, d, c)
             for seed in range(n_blocks)]
    X = da.concatenate([da.from_delayed(p[0], shape=(rows, d), dtype=float)
                        for p in parts])
    y = da.concatenate([da.from_delayed(p[1], shape=(rows,), dtype=np.int64)
                        for p in parts])
    return X, y


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


def bench_dask(cfg, alternate, ratio):
    """Section (g); ``alternate`` and ``ratio`` are run.py's timing helpers."""
    try:
        import distributed  # noqa: F401

        from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier
    except ImportError:
        return {"available": False,
                "reason": "the dask extra is not installed (pip install \".[dask]\")"}
    from sk_twolayer import TwoLayerSoftmaxClassifier

    n, d, h, c = cfg.dask_n, cfg.dask_d, cfg.dask_hidden, cfg.classes
    n_blocks = cfg.dask_blocks
    rows = n // n_blocks
    n = rows * n_blocks
    blocks = [make_block(seed, rows, d, c) for seed in range(n_blocks)]
    X = np.concatenate([b[0] for b in blocks])
    y = np.concatenate([b[1] for b in blocks])
    del blocks
    dX, dy = _dask_data(n_blocks, rows, d, c)
    params = dict(hidden_size=h, max_iter=cfg.lbfgs_iter, tol=0.0, random_state=0)
    cores = os.cpu_count() or 1
    clusters = _Clusters(processes=not cfg.quick)

    def quietly(fit):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return fit()

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
        spark, reason = _spark_per_iteration(X, y, cfg, spark_cores)
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


def format_dask(result):
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


# ------------------------------------------------- (h) at cluster scale
def bench_dask_scale(cfg):
    """Section (h): time per L-BFGS iteration against the number of workers.

    A wide model (D=784, H=1024, C=10: P = 814,090 parameters, 6.2 MiB in
    float64) on 20 rows per worker, so that compute is negligible and what
    is timed is moving the parameters out and the gradients back. Worker
    processes with one thread each; each figure is the difference of an
    11-iteration and a 1-iteration fit, divided by the iterations between,
    for each fan-in of the reduction tree (``sk-twolayer.dask.fan-in``; a
    fan-in of at least the number of workers less one is a star around the
    root worker), the median over ``--fit-repeats`` repeats in which the
    fan-ins alternate. ``client_cpu_ms`` is the CPU time of this process
    per iteration, which also runs the LocalCluster's scheduler.
    """
    try:
        import dask
        from distributed import Client, LocalCluster

        from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier
    except ImportError:
        return {"available": False,
                "reason": "the dask extra is not installed (pip install \".[dask]\")"}
    d, h, c, rows = 784, 1024, 10, 20
    if cfg.quick:
        d, h = 20, 16
    params = dict(hidden_size=h, tol=0.0, random_state=0)

    def fit(client, X, y, max_iter):
        clf = DaskTwoLayerSoftmaxClassifier(**params, max_iter=max_iter)
        clf.client = client
        wall, cpu = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        return time.perf_counter() - wall, time.process_time() - cpu, clf.n_iter_

    table = []
    for workers in [int(k) for k in cfg.scale_workers.split(",")]:
        # Fan-ins that give the same tree (at least workers - 1) are one.
        fan_ins = {}
        for fan_in in [int(f) for f in cfg.scale_fan_ins.split(",")]:
            fan_ins.setdefault(min(fan_in, max(workers - 1, 1)), fan_in)
        fan_ins = list(fan_ins.values())
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=":0") as cluster, \
                Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(workers)
            X, y = _dask_data(workers, rows, d, c)
            X, y = client.persist([X, y])
            fit(client, X, y, 2)  # warm up the workers
            runs = {f: [] for f in fan_ins}
            for repeat in range(cfg.fit_repeats):
                # The fan-ins alternate, in another order each repeat.
                shift = repeat % len(fan_ins)
                for fan_in in fan_ins[shift:] + fan_ins[:shift]:
                    with dask.config.set({"sk-twolayer.dask.fan-in": fan_in}):
                        w1, c1, n1 = fit(client, X, y, 1)
                        w11, c11, n11 = fit(client, X, y, 11)
                    between = max(n11 - n1, 1)
                    runs[fan_in].append(((w11 - w1) / between, (c11 - c1) / between))
            for fan_in, pairs in runs.items():
                table.append({
                    "workers": workers, "fan_in": fan_in,
                    "ms_per_iteration": 1e3 * float(np.median([w for w, _ in pairs])),
                    "client_cpu_ms": 1e3 * float(np.median([c for _, c in pairs])),
                    "repeats": len(pairs)})
    P = d * h + h * c + h + c
    return {"available": True, "d": d, "hidden": h, "classes": c, "rows_per_worker": rows,
            "parameters": P, "table": table}


def format_dask_scale(result):
    if not result or not result.get("available"):
        return [f"(h) Dask at cluster scale: skipped "
                f"({(result or {}).get('reason', 'not run')})"]
    r = result
    fan_ins = sorted({row["fan_in"] for row in r["table"]})
    workers = sorted({row["workers"] for row in r["table"]})
    cell = {(row["workers"], row["fan_in"]): row for row in r["table"]}
    lines = [f"(h) data-parallel L-BFGS at cluster scale: D={r['d']} H={r['hidden']} "
             f"C={r['classes']} (P={r['parameters']}), {r['rows_per_worker']} rows per "
             "worker, worker processes with 1 thread each",
             "    ms per iteration (client+scheduler CPU ms per iteration), by fan-in:",
             "    | workers | " + " | ".join(f"fan-in {f}" for f in fan_ins) + " |",
             "    " + "|---" * (len(fan_ins) + 1) + "|"]
    for k in workers:
        cells = []
        for f in fan_ins:
            row = cell.get((k, f))
            cells.append("" if row is None else
                         f"{row['ms_per_iteration']:.0f} ({row['client_cpu_ms']:.0f})")
        lines.append(f"    | {k} | " + " | ".join(cells) + " |")
    return lines
