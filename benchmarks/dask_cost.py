"""Section (j): what one evaluation costs the cluster.

Run with ``python benchmarks/run.py --only dask_cost``. The scheduler runs
in a process of its own (``python -m distributed.cli.dask_scheduler``), and
K worker processes of one thread each (``dask worker --no-nanny``), all on
this machine, for each K of ``--cost-workers`` (1, 2, 4, ..., 64). The model
is wide (D=784, H=1024, C=10: P = 814,090 parameters, 6.2 MiB in float64)
and every worker holds one block of ``--cost-rows`` rows (20), so that the
compute is negligible and what is measured is the overhead of an
evaluation: sending theta out, scheduling, adding up, receiving the result.

The scheduler's process runs on a core of its own: it is pinned to one
core (``os.sched_setaffinity``, every thread) and the workers and this
process to the others, where the machine has two cores or more; the
section records whether it could. Its CPU per evaluation, and per message,
is then its own work, not a share of cores the workers took.

Each figure is per evaluation of the loss: the difference between a fit of
11 L-BFGS iterations and a fit of 1, divided by the evaluations between
them (counted on the client), the median over ``--fit-repeats`` repeats
(each row also keeps the repeats):

- ``wall_ms``: wall time on the client;
- ``scheduler_cpu_ms``, ``client_cpu_ms``: CPU time of the scheduler's
  process (``/proc/PID/stat``) and of this one (whose CPU is mostly
  scipy's L-BFGS-B itself: about 100 ms per evaluation at this P on 2
  cores, in memory too); ``scheduler_ms_per_message``: the first over the
  messages;
- ``scheduler_cpu_net_ms``: the scheduler's CPU less what it spends, over
  the same wall time, on the same cluster idle (``scheduler_idle_ms_per_s``:
  the workers' heartbeats, its periodic callbacks);
- ``tasks``: the fit's tasks the scheduler received (those whose key starts
  with ``sk-twolayer-``), ``graphs``: the ``update-graph`` messages, and
  ``messages``: every message the scheduler handled (from the client and
  the workers, what comes now and then of its own accord left out:
  heartbeats, the client's periodic look at the cluster);
- ``scheduler_mib``: the bytes of the messages the scheduler's process
  received and sent (counted in distributed's TCP comm, heartbeats
  included), and ``busiest_worker_mib``: the most any worker process
  received and sent;
- ``busiest_worker_compute_ms`` and ``workers_compute_ms``: the compute of
  the fit's tasks on the busiest worker, and on all of them, per
  evaluation (the scheduler's task stream, over one more fit of 11
  iterations, timed apart since the stream costs the scheduler work).

What is extrapolated past the largest K is counts only: tasks, messages
and bytes per evaluation, fitted as ``a + b K`` (and ``a + b K + c log2 K``
where the log term halves the residual). Wall time is not extrapolated, nor
is CPU time measured with more processes than cores; wall time is modelled
as the client's CPU plus the scheduler's CPU (its serial work) plus the
compute per worker (the busiest worker's, or all workers' over the cores
they share, whichever is larger) plus a constant fitted on the two
smallest K, and the model is checked against the other K, which it was not
fitted on (the held-out error).
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

from common import (DASK_MISSING, HERE, TARGETS, alternate, compared, dask_data,
                    evaluation_compute, goal, iqr, measured_lines, quietly,
                    spread_text)

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
    parser.add_argument("--cost-pin", choices=("yes", "no"), default="yes",
                        help="in section (j), the scheduler on a core of its own "
                             "and the other processes on the others")
    parser.add_argument("--cost-path", choices=("calls", "graph"), default="calls",
                        help="in section (j), evaluations as calls to the workers "
                             "(the default) or as task graphs through the "
                             "scheduler (direct-transfers: false)")


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
def pin(pid, cpus):
    """Every thread of process ``pid`` onto ``cpus`` (threads it starts later
    inherit it); whether it could."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), cpus)
    except (AttributeError, OSError):  # (no sched_setaffinity, a thread gone)
        return False
    return True


# ------------------------------------------------ the ways to reach workers
def install_echo(dask_worker):
    """On a worker: a handler of its RPC that sends back what it gets."""
    from distributed.protocol.serialize import to_serialize

    async def echo(theta=None):
        return {"theta": to_serialize(theta)}

    dask_worker.handlers["sk_twolayer_bench_echo"] = echo


class Echo:
    """An actor that sends back what it gets."""

    def echo(self, theta):
        return theta


def _echo_task(theta):
    return theta


def transports(client, theta, repeats, exchanges=20):
    """What one exchange of ``theta`` with every worker of ``client`` costs
    (the client sends it to each and gets it back from each), by each way
    Dask offers to reach the workers without a graph per step, and by the
    task graph: milliseconds per exchange, per repeat (the mean of
    ``exchanges``), the ways alternating."""
    import asyncio

    from distributed.protocol.serialize import to_serialize

    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    client.run(install_echo)
    with client.as_current():  # (an actor's handle calls through this client)
        actors = [client.submit(Echo, actor=True, workers=[w], pure=False).result()
                  for w in workers]

    async def calls():
        return await asyncio.gather(*[
            client.rpc(w).sk_twolayer_bench_echo(theta=to_serialize(theta))
            for w in workers])

    def by_calls():
        for _ in range(exchanges):
            client.sync(calls)

    def by_actors():
        for _ in range(exchanges):
            for future in [actor.echo(theta) for actor in actors]:
                future.result()

    def by_graph():
        for _ in range(exchanges):
            copies = client.scatter([theta] * len(workers), workers=workers,
                                    hash=False)
            client.gather([client.submit(_echo_task, copy, workers=[w], pure=False)
                           for copy, w in zip(copies, workers)])

    times = alternate({"calls": by_calls, "actors": by_actors, "graph": by_graph},
                      repeats)
    return {name: [1e3 * t / exchanges for t in seconds]
            for name, seconds in times.items()}


def _cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ProcessCluster:
    """A scheduler process and ``n_workers`` worker processes (one thread,
    no nanny), on loopback, with a client of this process; where there are
    two cores or more (and ``pinned``), the scheduler on a core of its own
    and the workers and this process on the others."""

    def __init__(self, n_workers, pinned=True):
        from distributed import Client

        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else []
        self._affinity = set(cores)
        self.pinning = {"pinned": False, "cores": len(cores)}
        if not pinned:
            self.pinning["reason"] = "not asked for"
        elif len(cores) < 2:
            self.pinning["reason"] = "fewer than two cores to share out"
        else:
            self.pinning.update(scheduler_cpus=cores[:1], others_cpus=cores[1:])

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
        self._pin(self.processes[0].pid, "scheduler_cpus")
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
        self._pin(self.processes[0].pid, "scheduler_cpus")  # (every thread now)
        self.scheduler_pid = self.client.run_on_scheduler(install_counters)
        self.client.run_on_scheduler(count_bytes)
        self.client.run(count_bytes)

    def pin_the_others(self):
        """The workers and this process onto the cores the scheduler does not
        have (after a warm-up: a worker's first task imports the fit on
        every core), every thread of each; threads they start later inherit
        their creator's cores."""
        for process in self.processes[1:]:
            self._pin(process.pid, "others_cpus")
        self._pin(os.getpid(), "others_cpus")
        if "scheduler_cpus" in self.pinning:
            self.pinning["pinned"] = not self.pinning.get("reason")

    def _pin(self, pid, which):
        cpus = self.pinning.get(which)
        if cpus is not None and not pin(pid, set(cpus)):
            self.pinning["reason"] = f"sched_setaffinity failed for process {pid}"

    def compute(self, fit):
        """The compute of each training evaluation of ``fit()`` on the
        busiest worker and on all of them (milliseconds, medians), clocked
        on the workers (calls) or read from the task stream (task graphs)."""
        busy = evaluation_compute(self.client, fit)
        return {"busiest_worker_compute_ms":
                1e3 * float(np.median([max(w.values()) for w in busy.values()])),
                "workers_compute_ms":
                1e3 * float(np.median([sum(w.values()) for w in busy.values()]))}

    def idle_cpu(self, seconds=3.0):
        """The scheduler's CPU milliseconds per second with no fit running
        (the workers' heartbeats and its periodic work), over ``seconds``."""
        cpu, wall = _cpu_seconds(self.scheduler_pid), time.perf_counter()
        time.sleep(seconds)
        return (1e3 * (_cpu_seconds(self.scheduler_pid) - cpu)
                / (time.perf_counter() - wall))

    def sample(self):
        """Counters of the scheduler, this process and the workers, now."""
        counts = self.client.run_on_scheduler(read_counters)
        return {"wall": time.perf_counter(), "client_cpu": time.process_time(),
                "scheduler_cpu": _cpu_seconds(self.scheduler_pid),
                "scheduler_io": counts.pop("bytes"),
                "worker_io": self.client.run(bytes_counted),
                **counts}

    def close(self):
        if self.pinning.get("others_cpus"):
            pin(os.getpid(), self._affinity)  # (this process, as it was)
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


PERIODIC = ("heartbeat_worker", "heartbeat-client", "keep-alive", "identity",
            "set_metadata", "get_metadata", "run_function", "broadcast")


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
        # (every message but what comes now and then of its own accord, the
        # heartbeats, the client's look at the cluster, the cluster's record
        # of itself, and our own readings)
        "ops": {op: n for op, n in ops.items() if n and op not in PERIODIC},
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
    # (the path: calls to the workers, or task graphs through the scheduler)
    path = ({"sk-twolayer.dask.direct-transfers": False}
            if getattr(cfg, "cost_path", "calls") == "graph" else {})
    DistributedObjective.terms = counted
    table, ways = [], None
    try:
        for k in [int(k) for k in cfg.cost_workers.split(",")]:
            started = time.perf_counter()
            topologies = {"star" if k <= star_workers else "tree": dict(path)}
            if k <= cfg.cost_compare:
                topologies = {"star": {"sk-twolayer.dask.star-workers": k, **path},
                              "tree": {"sk-twolayer.dask.star-workers": 0, **path}}
            cluster = ProcessCluster(k, pinned=cfg.cost_pin == "yes")
            default = "star" if k <= star_workers else "tree"
            try:
                X, y = dask_data(k, rows, d, c)
                X, y = cluster.client.persist([X, y])
                for settings in topologies.values():
                    fit(cluster.client, X, y, 2, settings)  # warm up the workers
                cluster.pin_the_others()
                runs = {name: [] for name in topologies}
                for repeat in range(cfg.fit_repeats):
                    names = list(topologies)[::(-1) ** repeat]  # (alternating)
                    for name in names:
                        runs[name].append(per_evaluation(cluster, X, y,
                                                         topologies[name]))
                idle = cluster.idle_cpu(0.5 if cfg.quick else 3.0)
                compute = cluster.compute(lambda: fit(cluster.client, X, y, 11,
                                                      topologies[default]))
                if k == 2:  # (the ways to reach the workers, side by side)
                    ways = transports(cluster.client, np.zeros(P), cfg.fit_repeats,
                                      exchanges=2 if cfg.quick else 20)
            finally:
                cluster.close()
            medians = {name: {key: float(np.median([e[key] for e in per]))
                              for key in per[0] if key != "ops"}
                       for name, per in runs.items()}
            row = {"workers": k, "repeats": cfg.fit_repeats, "topology": default,
                   **medians[default], "ops": runs[default][-1]["ops"], **compute,
                   "pinning": cluster.pinning,
                   "scheduler_ms_per_message": (medians[default]["scheduler_cpu_ms"]
                                                / max(medians[default]["messages"], 1)),
                   # (each repeat's figures, for the spreads)
                   "per_repeat": {key: [e[key] for e in runs[default]]
                                  for key in ("wall_ms", "scheduler_cpu_ms",
                                              "client_cpu_ms", "messages",
                                              "scheduler_mib")}}
            row["scheduler_cpu_ms_spread"] = iqr(row["per_repeat"]["scheduler_cpu_ms"])
            # The scheduler's work for the evaluation itself: its CPU less
            # what it spends meanwhile on a cluster of K idle workers (their
            # heartbeats), which grows with the wall time, and so here, on 2
            # cores, with K for want of cores.
            row["scheduler_idle_ms_per_s"] = idle
            row["scheduler_cpu_net_ms"] = max(
                row["scheduler_cpu_ms"] - idle * row["wall_ms"] / 1e3, 0.0)
            if len(medians) > 1:
                other = "tree" if default == "star" else "star"
                row["star_wall_ms"] = medians["star"]["wall_ms"]
                row["tree_wall_ms"] = medians["tree"]["wall_ms"]
                # (the two alternate, repeat by repeat: the default's time
                # over the other's)
                row.update(compared("default_vs_other",
                                    [e["wall_ms"] for e in runs[default]],
                                    [e["wall_ms"] for e in runs[other]]))
            table.append(row)
            # (each row as it comes: a long run stopped part way keeps them)
            print(f"[dask_cost: {k} workers in {time.perf_counter() - started:.0f} s] "
                  + json.dumps(row), file=sys.stderr, flush=True)
    finally:
        DistributedObjective.terms = terms
    result = {"available": True, "d": d, "hidden": h, "classes": c,
              "parameters": P, "rows_per_worker": rows,
              "path": "graph" if path else "calls", "table": table}
    if ways is not None:
        result["transports"] = {
            "workers": 2, "repeats": cfg.fit_repeats, "ms": ways,
            **{f"{name}_ms": float(np.median(v)) for name, v in ways.items()},
            **compared("graph_vs_calls", ways["graph"], ways["calls"]),
            **compared("actors_vs_calls", ways["actors"], ways["calls"])}
    return result


# Counts, which do not depend on how many cores the processes share: what
# is extrapolated past the largest K measured.
COUNTED = ("tasks", "messages", "scheduler_mib", "busiest_worker_mib")
# Where the scheduler's CPU per evaluation is reported, whatever was fitted.
REPORTED_AT = (2, 4, 8, 16)


def cost_model(result):
    """The model of the counts against K, fitted to the measured rows (the
    results file holds only measurements; the model is derived from them):
    to the rows of the topology that the largest K used (a tree), where
    there are three or more, since a star's costs grow differently; its
    predictions at 100 and 1,000 workers, extrapolations past the largest K;
    and the model of the wall time with its held-out error."""
    table = result["table"]
    rows = [row for row in table if row["topology"] == table[-1]["topology"]]
    rows = rows if len(rows) >= 3 else table
    ks = [row["workers"] for row in rows]
    models, predictions = {}, {}
    for name in COUNTED:
        if all(name in row for row in rows):
            models[name] = fit_overhead(ks, [row[name] for row in rows])
            predictions[name] = {str(k): float(predict(models[name], k))
                                 for k in (100, 1000)}
    return {"models": models, "predictions": predictions, "fitted_on": ks,
            "topology": rows[-1]["topology"], "max_workers_measured": max(ks),
            "wall": wall_model(table)}


WALL_PARTS = ("client_cpu_ms", "scheduler_cpu_ms", "busiest_worker_compute_ms",
              "workers_compute_ms")


def serial_ms(row):
    """The work of an evaluation that nothing overlaps: the client's CPU, the
    scheduler's CPU and the compute per worker (the busiest worker's, or all
    workers' over the cores they share, whichever is the larger)."""
    pinning = row.get("pinning") or {}
    cores = len(pinning.get("others_cpus") or []) or pinning.get("cores") or 1
    compute = max(row["busiest_worker_compute_ms"], row["workers_compute_ms"] / cores)
    return row["client_cpu_ms"] + row["scheduler_cpu_ms"] + compute


def wall_model(table):
    """Wall time per evaluation = a constant + :func:`serial_ms`, the
    constant fitted on the two smallest K, checked on every other K (its
    held-out error: predicted over measured, less one). None where the
    rows lack what it needs (measured before it)."""
    if len(table) < 3 or not all(p in row for row in table for p in WALL_PARTS):
        return None
    ordered = sorted(table, key=lambda row: row["workers"])
    fitted, held = ordered[:2], ordered[2:]
    constant = float(np.mean([row["wall_ms"] - serial_ms(row) for row in fitted]))
    checks = [{"workers": row["workers"], "measured_ms": row["wall_ms"],
               "predicted_ms": constant + serial_ms(row),
               "error": (constant + serial_ms(row)) / row["wall_ms"] - 1}
              for row in held]
    return {"constant_ms": constant, "fitted_on": [row["workers"] for row in fitted],
            "held_out": checks,
            "max_abs_error": max(abs(c["error"]) for c in checks)}


def ops_text(ops):
    """The scheduler's messages of one evaluation by operation, most first."""
    return ", ".join(f"{op} {n:g}" for op, n in
                     sorted(ops.items(), key=lambda item: -item[1]))


def goals(cost):
    if not cost.get("available"):
        return {}
    met = {}
    rows = {row["workers"]: row for row in cost["table"]}
    if 16 in rows:  # (bytes counted, not timed)
        met["dask_cost_scheduler_mib 16 workers"] = goal(
            rows[16]["scheduler_mib"], TARGETS["dask_cost_scheduler_mib_16"],
            lower_is_better=True, exact=True)
    if 2 in rows:
        row = rows[2]
        met["dask_cost_scheduler_cpu_ms 2 workers"] = goal(
            row["scheduler_cpu_ms"], TARGETS["dask_cost_scheduler_cpu_ms_2"],
            lower_is_better=True, spread=row.get("scheduler_cpu_ms_spread"),
            repeats=row.get("repeats"))
        if "default_vs_other" in row:
            met["dask_cost_star_vs_tree 2 workers"] = goal(
                row["default_vs_other"], TARGETS["dask_cost_star_vs_tree_2"],
                lower_is_better=True, spread=row["default_vs_other_spread"],
                repeats=row.get("repeats"))
        elif "tree_wall_ms" in row:  # (measured before the repeats were kept)
            met["dask_cost_star_vs_tree 2 workers"] = goal(
                row["wall_ms"] / min(row["star_wall_ms"], row["tree_wall_ms"]),
                TARGETS["dask_cost_star_vs_tree_2"], lower_is_better=True)
    # (the slope of a straight line through every K measured; its spread,
    # that of the lines through each repeat's figures)
    ks = sorted(rows)
    slope, slopes = None, None
    if len(ks) > 1:
        slope = float(np.polyfit(ks, [rows[k]["scheduler_cpu_ms"] for k in ks], 1)[0])
        per_repeat = [rows[k].get("per_repeat", {}).get("scheduler_cpu_ms")
                      for k in ks]
        if all(per_repeat) and len({len(p) for p in per_repeat}) == 1:
            slopes = iqr([np.polyfit(ks, [p[r] for p in per_repeat], 1)[0]
                          for r in range(len(per_repeat[0]))])
    met["dask_cost_scheduler_cpu_ms per added worker"] = goal(
        slope, TARGETS["dask_cost_scheduler_cpu_ms_per_worker"], lower_is_better=True,
        spread=slopes, repeats=rows[ks[0]].get("repeats") if ks else None)
    return met


def text(result, run):
    return [*_table(result), *measured_lines(run)[:1]]


def _table(result):
    if not result or not result.get("available"):
        return [f"(j) Dask cost per evaluation: skipped "
                f"({(result or {}).get('reason', 'not run')})"]
    r = result
    path = {"calls": "calls to the workers", "graph": "task graphs through the "
            "scheduler"}.get(r.get("path"), "task graphs (measured before calls)")
    lines = [f"(j) cost of one evaluation ({path}), scheduler in its own process: "
             f"D={r['d']} H={r['hidden']} C={r['classes']} (P={r['parameters']}), "
             f"{r['rows_per_worker']} rows per worker, worker processes of 1 thread",
             "    | workers | wall ms | scheduler CPU ms | spread | ms per message | "
             "less idle | client CPU ms | busiest worker compute ms | tasks | graphs | "
             "messages | MiB through scheduler | MiB through busiest worker |",
             "    |---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(row, key, fmt):
        return format(row[key], fmt) if key in row else ""

    for row in r["table"]:
        lines.append(
            f"    | {row['workers']} ({row['topology']}) | {row['wall_ms']:.0f} | "
            f"{row['scheduler_cpu_ms']:.1f} | "
            f"{spread_text(row.get('scheduler_cpu_ms_spread'), 1)} | "
            f"{cell(row, 'scheduler_ms_per_message', '.2f')} | "
            f"{row.get('scheduler_cpu_net_ms', 0):.1f} | "
            f"{row['client_cpu_ms']:.1f} | "
            f"{cell(row, 'busiest_worker_compute_ms', '.1f')} | {row['tasks']:.1f} | "
            f"{row['graphs']:.2f} | {row['messages']:.1f} | "
            f"{row['scheduler_mib']:.2f} | {row['busiest_worker_mib']:.1f} |")
    lines.append("    " + pinning_text(r["table"]))
    for row in r["table"]:
        if row.get("ops"):
            lines.append(f"    messages by operation, {row['workers']} workers: "
                         + ops_text(row["ops"]))
    compared_rows = [row for row in r["table"] if "star_wall_ms" in row]
    if compared_rows:
        lines.append("    star against tree, wall ms per evaluation, alternating: "
                     + ", ".join(f"{row['workers']} workers "
                                 f"{row['star_wall_ms']:.0f} / {row['tree_wall_ms']:.0f}"
                                 for row in compared_rows))
    at = {row["workers"]: row for row in r["table"]}
    lines.append("    the scheduler's CPU per evaluation: " + ", ".join(
        f"{k} workers {at[k]['scheduler_cpu_ms']:.1f} ms" if k in at
        else f"{k} workers not measured" for k in REPORTED_AT))
    fitted = cost_model(r)
    lines.append("    counts fitted per evaluation (a + b K [+ c log2 K]) to K = "
                 f"{', '.join(map(str, fitted['fitted_on']))}; extrapolated past "
                 f"{fitted['max_workers_measured']} workers:")
    for name, model in fitted["models"].items():
        log = f" + {model['c']:.3g} log2 K" if model["c"] else ""
        p = fitted["predictions"][name]
        lines.append(f"    {name}: {model['a']:.3g} + {model['b']:.3g} K{log}"
                     f"  -> {p['100']:.3g} at 100, {p['1000']:.3g} at 1,000 workers")
    lines.append("    " + wall_text(fitted["wall"]))
    return lines


def pinning_text(table):
    """Whether the scheduler had a core of its own, in words."""
    pinnings = [row.get("pinning") for row in table]
    if not any(pinnings):
        return ("the scheduler shared the cores with the workers (not pinned: "
                "measured before pinning)")
    if all(p and p.get("pinned") for p in pinnings):
        p = pinnings[0]
        return (f"the scheduler pinned to CPU {p['scheduler_cpus']}, the workers and "
                f"the client to CPUs {p['others_cpus']} (os.sched_setaffinity)")
    reasons = sorted({(p or {}).get("reason", "not recorded") for p in pinnings
                      if not (p or {}).get("pinned")})
    return f"the scheduler not on a core of its own: {'; '.join(reasons)}"


def wall_text(wall):
    """The wall-time model and its held-out error, in words."""
    if wall is None:
        return ("wall time: no model (it needs three K or more, each with the "
                "workers' compute recorded)")
    return (f"wall time = {wall['constant_ms']:.0f} ms + client CPU + scheduler CPU "
            "+ compute per worker, the constant fitted on K = "
            f"{', '.join(map(str, wall['fitted_on']))}; held out: "
            + ", ".join(f"{c['workers']} workers {c['predicted_ms']:.0f} ms predicted, "
                        f"{c['measured_ms']:.0f} measured ({c['error']:+.0%})"
                        for c in wall["held_out"]))
