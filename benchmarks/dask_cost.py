"""Section (j): what one evaluation costs the cluster.

Run with ``python benchmarks/run.py --only dask_cost``. The scheduler runs
in a process of its own (``python -m distributed.cli.dask_scheduler``), and
K worker processes of one thread each (``dask worker --no-nanny``), all on
this machine, for each K of ``--cost-workers`` (1, 2, 4, ..., 64). The model
is wide (D=784, H=1024, C=10: P = 814,090 parameters, 6.2 MiB in float64)
and every worker holds one block of ``--cost-rows`` rows (20), so that the
compute is negligible and what is measured is the overhead of an
evaluation: sending theta out, scheduling, adding up, receiving the result.

Each figure is per evaluation of the loss: the difference between a fit of
11 L-BFGS iterations and a fit of 1, divided by the evaluations between
them (counted on the client), the median over ``--fit-repeats`` repeats:

- ``wall_ms``: wall time on the client;
- ``scheduler_cpu_ms``, ``client_cpu_ms``: CPU time of the scheduler's
  process (``/proc/PID/stat``) and of this one (whose CPU is mostly
  scipy's L-BFGS-B itself: about 100 ms per evaluation at this P on 2
  cores, in memory too);
- ``scheduler_cpu_net_ms``: the scheduler's CPU less what it spends, over
  the same wall time, on the same cluster idle (``scheduler_idle_ms_per_s``:
  the workers' heartbeats, its periodic callbacks), which grows with the
  wall time as well as with K;
- ``tasks``: the fit's tasks the scheduler received (those whose key starts
  with ``sk-twolayer-``), ``graphs``: the ``update-graph`` messages, and
  ``messages``: every message the scheduler handled (from the client and
  the workers, heartbeats left out);
- ``scheduler_mib``: the bytes of the messages the scheduler's process
  received and sent (counted in distributed's TCP comm, heartbeats
  included), and ``busiest_worker_mib``: the most any worker process
  received and sent.

On 2 cores, K worker processes share the two cores with the scheduler and
the client: wall time grows with K for want of cores, not only overhead;
the CPU and byte counts are what the model extrapolates. The overhead is
fitted as ``a + b K`` (and ``a + b K + c log2 K``, reported where the log
term lowers the residual by more than half), and extrapolated to 100 and
1,000 workers: figures above the largest K measured are extrapolations.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import (DASK_MISSING, HERE, TARGETS, dask_data, goal, measured_lines,
                    quietly)

KEY, NAME, LETTER = "dask_cost", "dask_cost", "(j)"
DEFAULT = False


def add_options(parser):
    parser.add_argument("--cost-workers", default="1,2,4,8,16,32,64",
                        help="numbers of workers of section (j)")
    parser.add_argument("--cost-rows", type=int, default=20,
                        help="rows per worker of section (j)")
    parser.add_argument("--cost-compare", type=int, default=8,
                        help="in section (j), up to this many workers, measure "
                             "the star and the tree side by side")


QUICK = {"cost_workers": "1,2", "cost_compare": 2}


# --------------------------------------------------------- on the scheduler
def install_counters(dask_scheduler):
    """Count, on the scheduler, every message it handles (by operation) and
    our tasks in each graph it receives."""
    import functools
    import inspect

    from distributed.diagnostics.plugin import SchedulerPlugin

    counts = {"ops": {}, "tasks": 0, "graphs": 0}

    def counting(op, handler):
        # (A coroutine function stays one: the scheduler awaits those.)
        if inspect.iscoroutinefunction(handler):
            @functools.wraps(handler)  # (the scheduler reads its signature)
            async def handle(*args, **kwargs):
                counts["ops"][op] = counts["ops"].get(op, 0) + 1
                return await handler(*args, **kwargs)
        else:
            @functools.wraps(handler)
            def handle(*args, **kwargs):
                counts["ops"][op] = counts["ops"].get(op, 0) + 1
                return handler(*args, **kwargs)
        return handle

    for table in (dask_scheduler.handlers, dask_scheduler.stream_handlers):
        for op, handler in list(table.items()):
            table[op] = counting(op, handler)

    class Tasks(SchedulerPlugin):
        def update_graph(self, scheduler, *, tasks, **kwargs):
            counts["graphs"] += 1
            counts["tasks"] += sum(str(k).startswith("sk-twolayer-") for k in tasks)

    dask_scheduler.add_plugin(Tasks(), name="sk-twolayer-bench-counts")
    dask_scheduler._sk_twolayer_counts = counts
    return os.getpid()


def count_bytes():
    """Count, in this process, the bytes of every message it sends and
    receives over TCP (distributed's comm layer: frames, not the socket's
    own counters, which ``/proc/PID/io`` does not see)."""
    from distributed.comm import tcp

    if hasattr(tcp, "_sk_twolayer_bytes"):
        return os.getpid()
    total = tcp._sk_twolayer_bytes = [0]
    write, read = tcp.TCP.write, tcp.read_bytes_rw

    async def counted_write(self, *args, **kwargs):
        n = await write(self, *args, **kwargs)
        total[0] += n
        return n

    async def counted_read(stream, n):
        total[0] += n
        return await read(stream, n)

    tcp.TCP.write, tcp.read_bytes_rw = counted_write, counted_read
    return os.getpid()


def bytes_counted():
    from distributed.comm import tcp

    return tcp._sk_twolayer_bytes[0]


def read_counters(dask_scheduler):
    counts = dask_scheduler._sk_twolayer_counts
    return {"ops": dict(counts["ops"]), "tasks": counts["tasks"],
            "graphs": counts["graphs"], "bytes": bytes_counted()}


# ---------------------------------------------------------------- processes
def _cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ProcessCluster:
    """A scheduler process and ``n_workers`` worker processes (one thread,
    no nanny), on loopback, with a client of this process."""

    def __init__(self, n_workers):
        from distributed import Client

        self._dir = tempfile.TemporaryDirectory(prefix="sk-twolayer-cost-")
        sfile = os.path.join(self._dir.name, "scheduler.json")
        # (PYTHONPATH first: a run of another checkout's sk_twolayer, for a
        # before-and-after, sets it.)
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join(
                       filter(None, [os.environ.get("PYTHONPATH"), str(HERE),
                                     str(HERE.parent)])))
        self.log = open(os.path.join(self._dir.name, "cluster.log"), "w")
        # (cwd: python -m puts it first on sys.path, before PYTHONPATH)
        quiet = {"stdout": self.log, "stderr": subprocess.STDOUT, "env": env,
                 "cwd": self._dir.name}
        self.processes = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
             "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", sfile],
            **quiet)]
        deadline = time.monotonic() + 120
        while not os.path.exists(sfile):
            if time.monotonic() > deadline:
                raise RuntimeError("the scheduler did not start")
            time.sleep(0.1)
        self.processes += [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
             sfile, "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--memory-limit", "0", "--host", "127.0.0.1"], **quiet)
            for _ in range(n_workers)]
        self.client = Client(scheduler_file=sfile, set_as_default=False)
        self.client.wait_for_workers(n_workers, timeout=600)
        self.scheduler_pid = self.client.run_on_scheduler(install_counters)
        self.client.run_on_scheduler(count_bytes)
        self.client.run(count_bytes)

    def idle_cpu(self, seconds=3.0):
        """The scheduler's CPU milliseconds per second with no fit running
        (the workers' heartbeats and its periodic work), over ``seconds``."""
        cpu, wall = _cpu_seconds(self.scheduler_pid), time.perf_counter()
        time.sleep(seconds)
        return 1e3 * (_cpu_seconds(self.scheduler_pid) - cpu) / (time.perf_counter() - wall)

    def sample(self):
        """Counters of the scheduler, this process and the workers, now."""
        counts = self.client.run_on_scheduler(read_counters)
        return {"wall": time.perf_counter(), "client_cpu": time.process_time(),
                "scheduler_cpu": _cpu_seconds(self.scheduler_pid),
                "scheduler_io": counts.pop("bytes"),
                "worker_io": self.client.run(bytes_counted),
                **counts}

    def close(self):
        # The scheduler closes its workers and itself; what still runs after
        # a few seconds is killed (a worker whose scheduler went away would
        # wait half a minute to reconnect).
        with contextlib.suppress(Exception):
            self.client.shutdown()
        self.client.close()
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.log.close()
        self._dir.cleanup()


def _difference(after, before):
    ops = {op: n - before["ops"].get(op, 0) for op, n in after["ops"].items()}
    return {
        "wall": after["wall"] - before["wall"],
        "client_cpu": after["client_cpu"] - before["client_cpu"],
        "scheduler_cpu": after["scheduler_cpu"] - before["scheduler_cpu"],
        "scheduler_io": after["scheduler_io"] - before["scheduler_io"],
        "worker_io": {w: n - before["worker_io"].get(w, 0)
                      for w, n in after["worker_io"].items()},
        "tasks": after["tasks"] - before["tasks"],
        "graphs": after["graphs"] - before["graphs"],
        # (every message but the workers' heartbeats and our own readings)
        "ops": {op: n for op, n in ops.items()
                if n and op not in ("heartbeat_worker", "run_function", "broadcast")},
    }


# -------------------------------------------------------------------- model
def fit_overhead(ks, values):
    """Least squares ``a + b K``, and ``a + b K + c log2 K``; the chosen
    model as a dict: the log term (the depth of a tree) only where it halves
    the residual and neither it nor the slope comes out negative, which
    would mean it fits noise and would extrapolate below zero."""
    ks, values = np.asarray(ks, float), np.asarray(values, float)
    linear = np.column_stack([np.ones_like(ks), ks])
    coef, *_ = np.linalg.lstsq(linear, values, rcond=None)
    residual = float(np.sum((linear @ coef - values) ** 2))
    model = {"a": float(coef[0]), "b": float(coef[1]), "c": 0.0,
             "residual": residual}
    if coef[1] < 0:  # (no growth with K: the mean, rather than a line to below 0)
        model = {"a": float(values.mean()), "b": 0.0, "c": 0.0,
                 "residual": float(np.sum((values - values.mean()) ** 2))}
    if len(ks) > 3:
        logs = np.column_stack([linear, np.log2(ks)])
        coef3, *_ = np.linalg.lstsq(logs, values, rcond=None)
        residual3 = float(np.sum((logs @ coef3 - values) ** 2))
        if residual3 < 0.5 * residual and coef3[1] >= 0 and coef3[2] >= 0:
            model = {"a": float(coef3[0]), "b": float(coef3[1]),
                     "c": float(coef3[2]), "residual": residual3}
    return model


def predict(model, k):
    return model["a"] + model["b"] * k + model["c"] * np.log2(k)


# ---------------------------------------------------------------- benchmark
def measure(cfg):
    """Per-evaluation overhead against the number of workers."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401

        from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier
        from sk_twolayer.dask._objective import DistributedObjective
    except ImportError:
        return dict(DASK_MISSING)

    d, h, c, rows = 784, 1024, 10, cfg.cost_rows
    if cfg.quick:
        d, h = 20, 16
    P = d * h + h * c + h + c
    evaluations = [0]
    terms = DistributedObjective.terms

    def counted(self, part, theta):
        evaluations[0] += 1
        return terms(self, part, theta)

    def fit(client, X, y, max_iter, settings):
        clf = DaskTwoLayerSoftmaxClassifier(hidden_size=h, max_iter=max_iter,
                                            tol=0.0, random_state=0)
        clf.client = client
        with dask.config.set(settings):
            quietly(lambda: clf.fit(X, y))

    def per_evaluation(cluster, X, y, settings):
        """The counters of one evaluation: a fit of 11 iterations less a
        fit of 1, over the evaluations between them."""
        samples, counts = [], []
        for max_iter in (1, 11):
            before, n0 = cluster.sample(), evaluations[0]
            fit(cluster.client, X, y, max_iter, settings)
            samples.append(_difference(cluster.sample(), before))
            counts.append(evaluations[0] - n0)
        between = max(counts[1] - counts[0], 1)
        one, many = samples
        return {
            "wall_ms": 1e3 * (many["wall"] - one["wall"]) / between,
            "client_cpu_ms": 1e3 * (many["client_cpu"] - one["client_cpu"]) / between,
            "scheduler_cpu_ms": 1e3 * (many["scheduler_cpu"]
                                       - one["scheduler_cpu"]) / between,
            "tasks": (many["tasks"] - one["tasks"]) / between,
            "graphs": (many["graphs"] - one["graphs"]) / between,
            "messages": (sum(many["ops"].values()) - sum(one["ops"].values()))
            / between,
            # (by operation: where the messages come from)
            "ops": {op: round((n - one["ops"].get(op, 0)) / between, 2)
                    for op, n in many["ops"].items() if n > one["ops"].get(op, 0)},
            "scheduler_mib": (many["scheduler_io"] - one["scheduler_io"])
            / between / 2**20,
            "busiest_worker_mib": max(
                (n - one["worker_io"].get(w, 0) for w, n in many["worker_io"].items()),
                default=0) / between / 2**20,
        }

    # Each evaluation as the settings make it (a star up to star-workers,
    # a tree above); where K <= --cost-compare, also the other topology,
    # the two alternating, for the star against the tree side by side.
    # (none before the star: a checkout of before it, measured with
    # --compare 0, is a tree throughout)
    star_workers = dask.config.get("sk-twolayer.dask.star-workers", 0)
    DistributedObjective.terms = counted
    table = []
    try:
        for k in [int(k) for k in cfg.cost_workers.split(",")]:
            started = time.perf_counter()
            topologies = {"star" if k <= star_workers else "tree": {}}
            if k <= cfg.cost_compare:
                topologies = {"star": {"sk-twolayer.dask.star-workers": k},
                              "tree": {"sk-twolayer.dask.star-workers": 0}}
            cluster = ProcessCluster(k)
            try:
                X, y = dask_data(k, rows, d, c)
                X, y = cluster.client.persist([X, y])
                for settings in topologies.values():
                    fit(cluster.client, X, y, 2, settings)  # warm up the workers
                runs = {name: [] for name in topologies}
                for repeat in range(cfg.fit_repeats):
                    names = list(topologies)[::(-1) ** repeat]  # (alternating)
                    for name in names:
                        runs[name].append(per_evaluation(cluster, X, y,
                                                         topologies[name]))
                idle = cluster.idle_cpu(0.5 if cfg.quick else 3.0)
            finally:
                cluster.close()
            medians = {name: {key: float(np.median([e[key] for e in per]))
                              for key in per[0] if key != "ops"}
                       for name, per in runs.items()}
            default = "star" if k <= star_workers else "tree"
            row = {"workers": k, "repeats": cfg.fit_repeats, "topology": default,
                   **medians[default], "ops": runs[default][-1]["ops"]}
            # The scheduler's work for the evaluation itself: its CPU less
            # what it spends meanwhile on a cluster of K idle workers (their
            # heartbeats), which grows with the wall time, and so here, on 2
            # cores, with K for want of cores.
            row["scheduler_idle_ms_per_s"] = idle
            row["scheduler_cpu_net_ms"] = max(
                row["scheduler_cpu_ms"] - idle * row["wall_ms"] / 1e3, 0.0)
            if len(medians) > 1:
                row["star_wall_ms"] = medians["star"]["wall_ms"]
                row["tree_wall_ms"] = medians["tree"]["wall_ms"]
            table.append(row)
            # (each row as it comes: a long run stopped part way keeps them)
            print(f"[dask_cost: {k} workers in {time.perf_counter() - started:.0f} s] "
                  + json.dumps(row), file=sys.stderr, flush=True)
    finally:
        DistributedObjective.terms = terms
    return {"available": True, "d": d, "hidden": h, "classes": c, "parameters": P,
            "rows_per_worker": rows, "table": table}


MODELLED = ("wall_ms", "scheduler_cpu_ms", "scheduler_cpu_net_ms", "client_cpu_ms",
            "tasks", "messages", "scheduler_mib", "busiest_worker_mib")


def cost_model(result):
    """The model of each figure against K, fitted to the measured rows (the
    results file holds only measurements; the model is derived from them):
    to the rows of the topology that the largest K used (a tree), where
    there are three or more, since a star's costs grow differently; and its
    predictions at 100 and 1,000 workers, extrapolations past the largest K.
    """
    table = result["table"]
    rows = [row for row in table if row["topology"] == table[-1]["topology"]]
    rows = rows if len(rows) >= 3 else table
    ks = [row["workers"] for row in rows]
    models, predictions = {}, {}
    for name in MODELLED:
        if all(name in row for row in rows):
            models[name] = fit_overhead(ks, [row[name] for row in rows])
            predictions[name] = {str(k): float(predict(models[name], k))
                                 for k in (100, 1000)}
    return {"models": models, "predictions": predictions, "fitted_on": ks,
            "topology": rows[-1]["topology"], "max_workers_measured": max(ks)}


def ops_text(ops):
    """The scheduler's messages of one evaluation by operation, most first."""
    return ", ".join(f"{op} {n:g}" for op, n in
                     sorted(ops.items(), key=lambda item: -item[1]))


def goals(cost):
    if not cost.get("available"):
        return {}
    met = {}
    rows = {row["workers"]: row for row in cost["table"]}
    if 16 in rows:
        met["dask_cost_scheduler_mib 16 workers"] = goal(
            rows[16]["scheduler_mib"], TARGETS["dask_cost_scheduler_mib_16"],
            lower_is_better=True)
    if 2 in rows:
        met["dask_cost_scheduler_cpu_ms 2 workers"] = goal(
            rows[2]["scheduler_cpu_ms"], TARGETS["dask_cost_scheduler_cpu_ms_2"],
            lower_is_better=True)
        if "tree_wall_ms" in rows[2]:
            # (the default's time over the faster topology's: 1.0 where
            # the default is the faster)
            met["dask_cost_star_vs_tree 2 workers"] = goal(
                rows[2]["wall_ms"] / min(rows[2]["star_wall_ms"],
                                         rows[2]["tree_wall_ms"]),
                TARGETS["dask_cost_star_vs_tree_2"], lower_is_better=True)
    # (the slope of a straight line through every K measured)
    ks = sorted(rows)
    met["dask_cost_scheduler_cpu_ms per added worker"] = goal(
        float(np.polyfit(ks, [rows[k]["scheduler_cpu_ms"] for k in ks], 1)[0])
        if len(ks) > 1 else None,
        TARGETS["dask_cost_scheduler_cpu_ms_per_worker"], lower_is_better=True)
    return met


def text(result, run):
    return [*_table(result), *measured_lines(run)[:1]]


def _table(result):
    if not result or not result.get("available"):
        return [f"(j) Dask cost per evaluation: skipped "
                f"({(result or {}).get('reason', 'not run')})"]
    r = result
    lines = [f"(j) cost of one evaluation, scheduler in its own process: D={r['d']} "
             f"H={r['hidden']} C={r['classes']} (P={r['parameters']}), "
             f"{r['rows_per_worker']} rows per worker, worker processes of 1 thread",
             "    | workers | wall ms | scheduler CPU ms | less idle | client CPU ms | "
             "tasks | graphs | messages | MiB through scheduler | "
             "MiB through busiest worker |",
             "    |---|---|---|---|---|---|---|---|---|---|"]
    for row in r["table"]:
        lines.append(
            f"    | {row['workers']} ({row['topology']}) | {row['wall_ms']:.0f} | "
            f"{row['scheduler_cpu_ms']:.1f} | {row.get('scheduler_cpu_net_ms', 0):.1f} | "
            f"{row['client_cpu_ms']:.1f} | {row['tasks']:.1f} | {row['graphs']:.2f} | "
            f"{row['messages']:.1f} | {row['scheduler_mib']:.2f} | "
            f"{row['busiest_worker_mib']:.1f} |")
    for row in r["table"]:
        if row.get("ops"):
            lines.append(f"    messages by operation, {row['workers']} workers: "
                         + ops_text(row["ops"]))
    compared = [row for row in r["table"] if "star_wall_ms" in row]
    if compared:
        lines.append("    star against tree, wall ms per evaluation, alternating: " + ", ".join(
            f"{row['workers']} workers {row['star_wall_ms']:.0f} / {row['tree_wall_ms']:.0f}"
            for row in compared))
    fitted = cost_model(r)
    lines.append("    fitted per evaluation (a + b K [+ c log2 K]) to K = "
                 f"{', '.join(map(str, fitted['fitted_on']))}; extrapolated past "
                 f"{fitted['max_workers_measured']} workers:")
    for name, model in fitted["models"].items():
        log = f" + {model['c']:.3g} log2 K" if model["c"] else ""
        p = fitted["predictions"][name]
        lines.append(f"    {name}: {model['a']:.3g} + {model['b']:.3g} K{log}"
                     f"  -> {p['100']:.3g} at 100, {p['1000']:.3g} at 1,000 workers")
    return lines

