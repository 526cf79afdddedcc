"""Section (g): data-parallel L-BFGS on a Dask cluster.

Run with ``python benchmarks/run.py --only dask``. The data: scikit-learn's
``make_classification`` (``--dask-n`` rows, ``--dask-d`` features of which
``--dask-informative`` informative, ``--classes`` classes, ``random_state=0``,
float64), a network of ``--dask-hidden`` hidden units, and ``--dask-blocks``
row blocks on a ``distributed.LocalCluster`` on loopback (worker processes
with one thread each). The blocks come to the workers in two ways, as users
bring them: made on the workers (each worker makes the data set and keeps
its blocks, persisted before any clock starts, as data a cluster reads
itself), and sent from the client's in-memory array with ``da.from_array``
(their transfer and alignment are part of the fit).

In one process, each contender's fits alternate with the others' repeat by
repeat (``--fit-repeats``, at least 5, after a warm-up fit of each):

- **time per L-BFGS iteration**: the difference of a fit of ``--dask-iter``
  iterations (``tol=0``) and a fit of one, over the iterations between, on
  1 and 2 workers (and 4 and 8 where there are the cores) against the
  in-memory fit on one BLAS thread;
- **the whole fit** (set-up included) on one worker over the in-memory
  fit's, for blocks made on the workers and for blocks from ``da.from_array``;
- **Spark MLlib's MultilayerPerceptronClassifier**, where pyspark is
  installed: ``local[2]``, the same data (cached before the clock starts),
  layers and iterations, its time per iteration by the same difference,
  against ours on two workers; and which BLAS it ran. Without a system
  ``libblas.so.3`` Spark falls back to a Java BLAS (its log says
  ``netlib-blas: JNI_OnLoad: dlopen(libblas.so.3) failed``), two to two and
  a half times slower per iteration; a ratio against the fallback is
  labelled so, and gives the goal no verdict. Debian's
  ``apt-get install -y libopenblas0-pthread`` gives Spark a native BLAS.

Apart from those: the **overhead of an evaluation**, each evaluation's wall
time on the client less the summed compute of its busiest worker's tasks
(from the scheduler's task stream), over one long fit on 1 and on 2
workers, against a bare task round trip on the same cluster.

Every ratio is the ratio of the medians; its spread is the interquartile
range of the per-repeat ratios. The overhead and the round trip are not
measured in pairs: that ratio's spread runs from the low end of the
overhead's interquartile range over the high end of the round trip's to
the high over the low.
"""

import functools
import gc
import os
import shutil
import subprocess
import time

import numpy as np
from threadpoolctl import threadpool_limits

from common import (DASK_MISSING, SPREAD_WORDS, TARGETS, compared,
                    evaluation_compute, goal, iqr, measured_lines, quietly,
                    spread_text)

KEY, NAME, LETTER = "dask", "dask", "(g)"
LIBBLAS_HINT = "apt-get install -y libopenblas0-pthread"


def add_options(parser):
    parser.add_argument("--dask-n", type=int, default=200_000,
                        help="rows of section (g)")
    parser.add_argument("--dask-d", type=int, default=100,
                        help="features of section (g)")
    parser.add_argument("--dask-informative", type=int, default=40,
                        help="informative features of section (g)")
    parser.add_argument("--dask-hidden", type=int, default=64,
                        help="hidden units of section (g)")
    parser.add_argument("--dask-blocks", type=int, default=10,
                        help="row blocks of the Dask array of section (g)")
    parser.add_argument("--dask-iter", type=int, default=80,
                        help="L-BFGS iterations of section (g)'s long fits")
    parser.add_argument("--dask-spark", choices=("auto", "no"), default="auto",
                        help="section (g) times Spark MLlib's MLP where pyspark "
                             "is installed (auto), or not (no)")


QUICK = {"dask_n": 2000, "dask_d": 10, "dask_informative": 4, "dask_hidden": 8,
         "dask_blocks": 4, "dask_iter": 4}


# ----------------------------------------------------------------- the data
def classification(n, d, informative, c):
    """The section's data set (float64)."""
    from sklearn.datasets import make_classification

    return make_classification(n_samples=n, n_features=d, n_informative=informative,
                               n_classes=c, random_state=0)


@functools.lru_cache(maxsize=1)
def _classification_here(n, d, informative, c):
    return classification(n, d, informative, c)


def classification_block(i, rows, n, d, informative, c):
    """Rows ``[i * rows, (i + 1) * rows)`` of the data set, made where this
    runs (a worker makes the whole set once and keeps it until forgotten)."""
    X, y = _classification_here(n, d, informative, c)
    return X[i * rows:(i + 1) * rows].copy(), y[i * rows:(i + 1) * rows].copy()


def forget_classification():
    _classification_here.cache_clear()


def made_on_workers(client, n_blocks, rows, shape):
    """The data set as blocks made on the workers of ``client``, persisted."""
    import dask
    import dask.array as da
    from distributed import futures_of, wait

    n, d, informative, c = shape
    parts = [dask.delayed(classification_block, pure=True)(i, rows, *shape)
             for i in range(n_blocks)]
    X = da.concatenate([da.from_delayed(p[0], shape=(rows, d), dtype=float)
                        for p in parts])
    y = da.concatenate([da.from_delayed(p[1], shape=(rows,), dtype=np.int64)
                        for p in parts])
    X, y = client.persist([X, y])
    with client.as_current():
        wait(futures_of([X, y]))
    client.run(forget_classification)
    return X, y


def from_array(X, y, n_blocks):
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


# ------------------------------------------------------------- the overhead
def _round_trips(client, calls=60):
    """Bare round trips of the kind an evaluation makes: a call to a
    worker's RPC (its identity), as the fit's calls go; a task submitted
    and its result gathered where the fit goes through the scheduler
    (``direct-transfers: false``)."""
    import dask

    worker = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]
    if dask.config.get("sk-twolayer.dask.direct-transfers") is False:
        def trip():
            client.submit(_noop, pure=False).result()
    else:
        def trip():
            client.sync(client.rpc(worker).identity)
    for _ in range(5):
        trip()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        trip()
        times.append(time.perf_counter() - t)
    return times


def _evaluation_overheads(client, fit):
    """Each evaluation's wall time minus its busiest worker's compute time.

    An evaluation's work on one worker (one thread) runs one piece after
    another, so the busiest worker's summed compute is the least an
    evaluation can take; the rest is overhead: sending theta, reducing,
    receiving the result (and, through the scheduler, scheduling).
    """
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
        busy = evaluation_compute(client, fit)
    finally:
        DistributedObjective.terms = terms
    compute = {e: max(w.values()) for e, w in busy.items()}
    return [wall - compute[e] for e, wall in walls if e in compute], \
        [compute[e] for e, _ in walls if e in compute]


def _overhead(client, fit, calls):
    trips = _round_trips(client, calls)
    extra, compute = _evaluation_overheads(client, fit)
    trip, over = float(np.median(trips)), float(np.median(extra))
    (over_lo, over_hi), (trip_lo, trip_hi) = iqr(extra), iqr(trips)
    return {"round_trip_s": trip, "overhead_s": over,
            "compute_s": float(np.median(compute)),
            "overhead_vs_round_trip": over / trip,
            # (not measured in pairs: the ends of the two ranges)
            "overhead_vs_round_trip_spread": [min(over_lo / trip_hi, over / trip),
                                              max(over_hi / trip_lo, over / trip)],
            "evaluations": len(extra), "round_trips": len(trips)}


# -------------------------------------------------------------------- Spark
def system_libblas():
    """The ``libblas.so.3`` the system's loader finds, or None."""
    if shutil.which("ldconfig") is None and not os.path.exists("/sbin/ldconfig"):
        return None
    try:
        out = subprocess.run([shutil.which("ldconfig") or "/sbin/ldconfig", "-p"],
                             capture_output=True, text=True).stdout
    except OSError:
        return None
    found = [line.split("=>")[-1].strip() for line in out.splitlines()
             if "libblas.so.3 " in line]
    return found[0] if found else None


def spark_blas(spark):
    """Which BLAS Spark's MLlib runs: netlib's native one (through the
    system's ``libblas.so.3``) or its Java fallback."""
    jvm = spark._jvm
    try:
        native = jvm.dev.ludovic.netlib.blas.NativeBLAS.getInstance()
        return {"blas": native.getClass().getName(), "blas_native": True}
    except Exception:  # (py4j's error: netlib found no native BLAS)
        fallback = jvm.dev.ludovic.netlib.blas.BLAS.getInstance()
        return {"blas": fallback.getClass().getName(), "blas_native": False}


class _Spark:
    """Spark MLlib's MLP on ``local[cores]``, the data cached."""

    def __init__(self, X, y, hidden, classes, cores):
        import pandas as pd
        import pyspark
        from pyspark.ml.feature import VectorAssembler
        from pyspark.sql import SparkSession

        self.spark = (SparkSession.builder.master(f"local[{cores}]")
                      .config("spark.ui.enabled", "false")
                      .config("spark.driver.memory", "4g")
                      .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                      .getOrCreate())
        columns = [f"x{j}" for j in range(X.shape[1])]
        frame = self.spark.createDataFrame(pd.DataFrame(X, columns=columns)
                                           .assign(label=y.astype(float)))
        self.data = (VectorAssembler(inputCols=columns, outputCol="features")
                     .transform(frame).select("features", "label")
                     .repartition(cores).cache())
        self.data.count()  # cached before any clock starts
        self.layers = [X.shape[1], hidden, classes]
        self.info = {"version": pyspark.__version__, "cores": cores,
                     "system_libblas": system_libblas(), **spark_blas(self.spark)}

    def fit(self, max_iter):
        """Iterations run by a fit of at most ``max_iter``."""
        from pyspark.ml.classification import MultilayerPerceptronClassifier

        model = MultilayerPerceptronClassifier(
            layers=self.layers, maxIter=max_iter, tol=0.0, seed=0,
            solver="l-bfgs").fit(self.data)
        summary = model.summary  # a method in pyspark 4, a property before
        summary = summary() if callable(summary) else summary
        return summary.totalIterations

    def close(self):
        self.spark.stop()


def _spark(X, y, cfg, cores):
    """Spark's contender, or why there is none."""
    if cfg.dask_spark == "no":
        return None, "not asked for (--dask-spark no)"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return None, "pyspark is not installed (pip install pyspark; needs Java 17)"
    return _Spark(X, y, cfg.dask_hidden, cfg.classes, cores), None


# ---------------------------------------------------------------- the timing
def _alternate_fits(contenders, long_iter, repeats, warmup_iter=2):
    """Each contender's fits, alternating repeat by repeat (A B B A ...).

    ``contenders``: name -> (fit, per_iteration), ``fit(max_iter)`` giving
    the iterations it ran. Per repeat, a contender with ``per_iteration``
    makes a fit of one iteration, then a fit of ``long_iter``; the others
    only the long one. Returns name -> list of repeats, each a dict of the
    seconds and iterations of its fits.
    """
    names = list(contenders)
    for name in names:  # warm-up
        contenders[name][0](warmup_iter)
    runs = {name: [] for name in names}
    for r in range(repeats):
        gc.collect()
        for name in names if r % 2 == 0 else names[::-1]:
            fit, per_iteration = contenders[name]
            run = {}
            for kind, max_iter in ((("short", 1),) if per_iteration else ()) + (
                    ("long", long_iter),):
                t = time.perf_counter()
                run[f"{kind}_iter"] = int(fit(max_iter))
                run[f"{kind}_s"] = time.perf_counter() - t
            runs[name].append(run)
    return runs


def per_iteration(runs):
    """Seconds per iteration in each repeat: (long - short) / iterations between."""
    return [(r["long_s"] - r["short_s"]) / max(r["long_iter"] - r["short_iter"], 1)
            for r in runs]


def _workers(k):
    return f"{k} worker(s)"


def measure(cfg):
    try:
        import distributed  # noqa: F401

        from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier
    except ImportError:
        return dict(DASK_MISSING)
    from sk_twolayer import TwoLayerSoftmaxClassifier

    n_blocks = cfg.dask_blocks
    rows = cfg.dask_n // n_blocks
    n = rows * n_blocks
    shape = (n, cfg.dask_d, cfg.dask_informative, cfg.classes)
    X, y = classification(*shape)
    h, long_iter = cfg.dask_hidden, cfg.dask_iter
    params = dict(hidden_size=h, tol=0.0, random_state=0)
    cores = os.cpu_count() or 1
    clusters = _Clusters(processes=not cfg.quick)
    fitted = {}

    def in_memory(max_iter):
        with threadpool_limits(1):
            clf = quietly(lambda: TwoLayerSoftmaxClassifier(
                **params, max_iter=max_iter).fit(X, y))
        fitted["memory"] = clf
        return clf.n_iter_

    data = {}

    def on(workers, origin="workers"):
        client = clusters.client(workers)
        if (workers, origin) not in data:
            data[workers, origin] = (made_on_workers(client, n_blocks, rows, shape)
                                     if origin == "workers" else
                                     from_array(X, y, n_blocks))

        def fit(max_iter):
            clf = DaskTwoLayerSoftmaxClassifier(**params, max_iter=max_iter)
            clf.client = client
            quietly(lambda: clf.fit(*data[workers, origin]))
            fitted[workers, origin] = clf
            return clf.n_iter_
        return fit

    spark = None
    try:
        result = {"available": True, "n": n, "d": cfg.dask_d,
                  "informative": cfg.dask_informative, "hidden": h,
                  "classes": cfg.classes, "blocks": n_blocks, "iterations": long_iter,
                  "cores": cores, "worker_processes": clusters.processes,
                  "repeats": cfg.fit_repeats}
        worker_counts = [k for k in (1, 2, 4, 8) if k <= max(cores, 1)]
        contenders = {"memory": (in_memory, True)}
        for k in worker_counts:
            contenders[_workers(k)] = (on(k), True)
        contenders["1 worker(s), from_array"] = (on(1, "from_array"), False)
        spark, reason = _spark(X, y, cfg, min(2, cores))
        if spark is not None:
            contenders["spark"] = (spark.fit, True)
        runs = _alternate_fits(contenders, long_iter, cfg.fit_repeats)
        result["runs"] = runs

        # ---- the same model as in memory (a check, not a timing)
        one = fitted[1, "workers"]
        result["n_iter"] = [fitted["memory"].n_iter_, one.n_iter_]
        result["same_model_max_proba_gap"] = float(np.abs(
            fitted["memory"].predict_proba(X[:2000])
            - one.predict_proba(X[:2000])).max())

        # ---- per iteration, and the whole fit
        each = {name: per_iteration(r) for name, r in runs.items() if "short_s" in r[0]}
        whole = {name: [r["long_s"] for r in rs] for name, rs in runs.items()}
        result["per_iteration_s"] = {name: float(np.median(v))
                                     for name, v in each.items()}
        mem, one_it = each["memory"], each[_workers(1)]
        sent = whole["1 worker(s), from_array"]
        result["one_worker"] = {
            "memory_s": float(np.median(whole["memory"])),
            "dask_s": float(np.median(whole[_workers(1)])),
            **compared("time_ratio", whole[_workers(1)], whole["memory"]),
            "from_array_s": float(np.median(sent)),
            **compared("from_array_time_ratio", sent, whole["memory"]),
            **compared("per_iteration_ratio", one_it, mem)}
        if _workers(2) in each:
            two_it = each[_workers(2)]
            result["two_workers"] = {
                "one_s": float(np.median(one_it)), "two_s": float(np.median(two_it)),
                **compared("speedup", one_it, two_it),
                **compared("per_iteration_ratio", two_it, mem),
                **compared("vs_memory", mem, two_it)}
        result["scaling"] = [
            {"workers": k, "per_iteration_s": float(np.median(each[_workers(k)])),
             **compared("speedup_vs_one", one_it, each[_workers(k)])}
            for k in worker_counts if k > 2]

        # ---- per-evaluation overhead against a bare task round trip
        result["overhead"] = {
            workers: _overhead(clusters.client(workers),
                               lambda: on(workers)(long_iter),
                               calls=10 if cfg.quick else 60)
            for workers in worker_counts[:2]}

        # ---- Spark MLlib on the same cores: time per iteration
        if spark is None:
            result["spark"] = {"available": False, "reason": reason}
        else:
            ours = each[_workers(spark.info["cores"])]
            result["spark"] = {
                "available": True, **spark.info,
                "iterations": runs["spark"][-1]["long_iter"],
                "per_iteration_s": float(np.median(each["spark"])),
                "ours_per_iteration_s": float(np.median(ours)),
                **compared("speedup", each["spark"], ours)}
        return result
    finally:
        if spark is not None:
            spark.close()
        clusters.close()


def spark_note(s):
    """Why Spark's ratio is not a fair one, or None."""
    if s.get("available") and s.get("blas_native") is False:
        return (f"Spark ran its Java BLAS fallback ({s['blas']}): no system "
                f"libblas.so.3 ({LIBBLAS_HINT} gives it one)")
    return None


def goals(dask):
    if not dask.get("available"):
        return {}
    met = {}
    for workers, row in dask["overhead"].items():
        met[f"dask_overhead_vs_round_trip {workers} worker(s)"] = goal(
            row["overhead_vs_round_trip"], TARGETS["dask_overhead_vs_round_trip"],
            lower_is_better=True, spread=row.get("overhead_vs_round_trip_spread"),
            repeats=row.get("evaluations"))
    one, repeats = dask["one_worker"], dask.get("repeats")
    met["dask_one_worker_vs_memory"] = goal(
        one["time_ratio"], TARGETS["dask_one_worker_vs_memory"], lower_is_better=True,
        spread=one.get("time_ratio_spread"), repeats=repeats)
    met["dask_one_worker_vs_memory from_array"] = goal(
        one["from_array_time_ratio"], TARGETS["dask_one_worker_vs_memory"],
        lower_is_better=True, spread=one.get("from_array_time_ratio_spread"),
        repeats=repeats)
    if "two_workers" in dask:
        two = dask["two_workers"]
        met["dask_two_workers_vs_one"] = goal(
            two["speedup"], TARGETS["dask_two_workers_vs_one"],
            spread=two.get("speedup_spread"), repeats=repeats)
        if "vs_memory" in two:  # (the in-memory iteration's time over theirs)
            met["dask_two_workers_vs_memory"] = goal(
                two["vs_memory"], TARGETS["dask_two_workers_vs_memory"],
                spread=two.get("vs_memory_spread"), repeats=repeats)
    s = dask["spark"]
    if s.get("available"):
        note = spark_note(s)
        met["dask_speedup_vs_spark"] = goal(
            s["speedup"], TARGETS["dask_speedup_vs_spark"],
            spread=s.get("speedup_spread"), repeats=repeats,
            note=note and ("against the Java BLAS fallback: no verdict "
                           f"({LIBBLAS_HINT})"))
    return met


def text(result, run):
    return [*_table(result), *measured_lines(run)[:1]]


def _table(result):
    if not result or not result.get("available"):
        return [f"(g) Dask: skipped ({(result or {}).get('reason', 'not run')})"]
    r = result
    if "per_iteration_s" not in r:  # (measured before it timed iterations)
        return _table_before_per_iteration(r)
    workers = "worker processes" if r["worker_processes"] else "worker threads"
    it = r["per_iteration_s"]
    one, ms = r["one_worker"], lambda s: f"{s * 1e3:.0f} ms"
    lines = [f"(g) data-parallel L-BFGS on a LocalCluster ({workers}, 1 "
             f"thread each): make_classification N={r['n']} D={r['d']} "
             f"({r['informative']} informative) H={r['hidden']} C={r['classes']}, "
             f"{r['blocks']} blocks, float64, {r['cores']} cores",
             f"    ratios of medians over {r['repeats']} alternating repeats after a "
             f"warm-up; {SPREAD_WORDS}",
             f"    same model as in memory: n_iter {r['n_iter'][0]} / "
             f"{r['n_iter'][1]}, largest probability gap "
             f"{r['same_model_max_proba_gap']:.1e}",
             f"    per L-BFGS iteration ({r['iterations']}-iteration fit less a "
             f"1-iteration fit): in memory (1 BLAS thread) {ms(it['memory'])}, "
             + ", ".join(f"{k} {ms(v)}" for k, v in it.items() if k != "memory"),
             "    1 worker / in memory, per iteration: "
             f"{one['per_iteration_ratio']:.2f} "
             f"({spread_text(one['per_iteration_ratio_spread'])})"]
    if "two_workers" in r:
        two = r["two_workers"]
        lines.append(f"    2 workers / in memory, per iteration: "
                     f"{two['per_iteration_ratio']:.2f} "
                     f"({spread_text(two['per_iteration_ratio_spread'])}); 2 workers "
                     f"vs 1, speedup {two['speedup']:.2f} "
                     f"({spread_text(two['speedup_spread'])})")
    lines += [f"    whole fit, 1 worker / in memory ({one['memory_s']:.2f} s): "
              f"{one['time_ratio']:.2f} ({spread_text(one['time_ratio_spread'])}) "
              f"for blocks made on the workers ({one['dask_s']:.2f} s), "
              f"{one['from_array_time_ratio']:.2f} "
              f"({spread_text(one['from_array_time_ratio_spread'])}) for blocks sent "
              f"from the client with da.from_array ({one['from_array_s']:.2f} s)"]
    for workers, o in r["overhead"].items():
        lines.append(
            f"    per evaluation, {workers} worker(s): overhead "
            f"{o['overhead_s'] * 1e3:.1f} ms (wall - busiest worker's compute "
            f"{o['compute_s'] * 1e3:.1f} ms) = {o['overhead_vs_round_trip']:.2f}x "
            f"({spread_text(o['overhead_vs_round_trip_spread'])}) a bare round "
            f"trip of {o['round_trip_s'] * 1e3:.1f} ms ({o['evaluations']} "
            "evaluations)")
    if r["scaling"]:
        lines.append("    scaling, per iteration: " + ", ".join(
            f"{p['workers']} workers {ms(p['per_iteration_s'])} "
            f"({p['speedup_vs_one']:.2f}x)" for p in r["scaling"]))
    s = r["spark"]
    if s.get("available"):
        blas = ("native BLAS" if s["blas_native"] else "its Java BLAS fallback")
        lines.append(
            f"    Spark MLlib {s['version']} MLP, local[{s['cores']}], {blas} "
            f"({s['blas']}): {ms(s['per_iteration_s'])} per iteration vs ours on "
            f"{s['cores']} workers {ms(s['ours_per_iteration_s'])}: speedup "
            f"{s['speedup']:.2f} ({spread_text(s['speedup_spread'])})")
        if spark_note(s):
            lines.append(f"    (against the fallback: {spark_note(s)})")
    else:
        lines.append(f"    Spark MLlib: skipped ({s['reason']})")
    return lines


def _table_before_per_iteration(r):
    """Section (g) as measured before it timed iterations (whole fits only)."""
    workers = "worker processes" if r["worker_processes"] else "worker threads"
    lines = [f"(g) data-parallel L-BFGS on a LocalCluster ({workers}, 1 "
             f"thread each): N={r['n']} D={r['d']} H={r['hidden']} C={r['classes']}, "
             f"{r['blocks']} blocks, {r['iterations']} iterations, float64, "
             f"{r['cores']} cores (spread not recorded)",
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
    lines.append(f"    1 worker {one['dask_s']:.2f} s vs in memory "
                 f"{one['memory_s']:.2f} s (1 BLAS thread): time ratio "
                 f"{one['time_ratio']:.2f} (blocks made on the workers)")
    lines.append(f"    1 worker {one['from_array_s']:.2f} s vs in memory: time ratio "
                 f"{one['from_array_time_ratio']:.2f} (blocks sent from an in-memory "
                 "array, da.from_array)")
    if "two_workers" in r:
        two = r["two_workers"]
        lines.append(f"    2 workers {two['two_s']:.2f} s vs 1 worker "
                     f"{two['one_s']:.2f} s: speedup {two['speedup']:.2f}")
    s = r["spark"]
    lines.append(f"    Spark MLlib: skipped ({s['reason']})" if not s.get("available")
                 else f"    Spark MLlib {s['version']}: speedup {s['speedup']:.2f}")
    return lines
