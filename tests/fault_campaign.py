"""A randomized fault campaign for the data-parallel fit (``sk_twolayer.dask``).

Faults tested one by one prove the points someone thought of. Here, as in
Jepsen's and FoundationDB's simulations, each fit gets one fault drawn at
random (its kind, the evaluation it strikes, and a point within that
evaluation, in a worker's task or on the client at a random moment), and
the campaign counts what went wrong. Every fit must:

- end within a bound (:data:`HANG_SECONDS`): no hang;
- either give the model of the same fit without the fault (every
  evaluation the in-memory objective to 1e-10, the same number of
  iterations, the in-memory model's probabilities to 1e-6), or raise an
  error that names the cause and the setting to change; a ``KeyboardInterrupt``
  ends the fit as an interrupt does in memory (a warning, the weights so far);
- on error, leave the estimator exactly as it was (a fitted one, here);
- leave nothing on the cluster: no task, no key, no scratch on a worker.

It is seeded: a failure replays with the same ``--seed`` (the first fits
of a seed are the same whatever ``--fits``). Run it as a script::

    python tests/fault_campaign.py --fits 200 --seed 0

which prints the fits, the faults by kind, and the hangs, wrong results,
leftovers and misdiagnosed errors (exit status 1 unless those four are 0).
``tests/test_dask_faults.py`` runs a small campaign in the default test
tier and a larger one in the slow tier.

What runs on the workers (the faults in their tasks) is installed there by
:func:`arm`, which wraps the functions of ``sk_twolayer.dask._worker`` that
the tasks call, as a test double would.
"""

import argparse
import asyncio
import collections
import contextlib
import ctypes
import os
import pickle
import random
import re
import signal
import socket
import sys
import threading
import time
import traceback
import warnings

import numpy as np

# A fit that has not ended after this long is hung (the fits take seconds).
HANG_SECONDS = 120
# How long a fit may leave things on the cluster after it ends (the
# scheduler forgets released tasks a moment after they are released).
SETTLE_SECONDS = 10
WORKERS = 3

# The errors a task is made to raise, by name (built on the worker).
ERRORS = {
    "TimeoutError": lambda: TimeoutError("the object store did not answer"),
    "socket.timeout": lambda: socket.timeout("read timed out"),
    "asyncio.TimeoutError": lambda: asyncio.TimeoutError(),
    "OSError": lambda: OSError(5, "Input/output error"),
    "KeyError": lambda: KeyError("a missing key"),
    "MemoryError": lambda: MemoryError("Unable to allocate 1.2 GiB"),
}
# How each names itself in an error message (repr of the exception).
ERROR_NAMES = {"TimeoutError": "TimeoutError", "socket.timeout": "TimeoutError",
               "asyncio.TimeoutError": "TimeoutError", "OSError": "OSError",
               "KeyError": "KeyError", "MemoryError": "MemoryError"}

# Where a fault strikes, by the functions of sk_twolayer.dask._worker that
# do that work, on either path (calls, or a task graph):
# "evaluate", a thread's share of a worker's evaluation (block_terms);
# "sum", adding children's totals in a tree (add_children on calls, the add
# tasks of a graph); "relay", passing theta down a graph's tree; "read",
# reading and checking a block; "prepare", preparing one.
FUNCTIONS = {"evaluate": ("block_terms",), "sum": ("add_children", "add"),
             "relay": ("relay",), "read": ("check_block",),
             "prepare": ("prepare_block",)}
_KEY = re.compile(r"sk-twolayer-(train|val)-\w+-(\d+)-\d+-(sum|relay)")


# ------------------------------------------------------- on the workers
def _strikes(kind, name, args, evaluation):
    """Whether a call of ``name`` with ``args`` is the ``kind`` of work of
    training evaluation ``evaluation`` (any, for reading and preparing)."""
    import distributed

    if kind in ("read", "prepare"):
        return True
    if name in ("block_terms", "add_children"):  # (their spec says which)
        spec = args[0]
        return spec.part == "train" and spec.evaluation == evaluation
    try:  # a task of a graph: its key says which
        key = distributed.get_worker().get_current_task()
    except (KeyError, ValueError):
        return False  # (not a task: a call of the function inside another)
    match = _KEY.search(str(key))
    return (match is not None and match[1] == "train"
            and int(match[2]) == evaluation and match[3] == kind)


def arm(kind, action, evaluation=None, marker=None, error=None, seconds=0.0):
    """On a worker: make its ``kind`` of work (a key of :data:`FUNCTIONS`)
    of training evaluation ``evaluation`` do ``action`` first: ``"kill"``
    (SIGKILL), ``"raise"`` (``ERRORS[error]``), ``"sleep"`` (``seconds``)
    or ``"pause"`` (the worker pauses, and the work goes on). With
    ``marker`` (a path), only once across the cluster: the first to create
    the file acts."""
    import distributed

    from sk_twolayer.dask import _worker as module

    for name in FUNCTIONS[kind]:
        original = getattr(getattr(module, name), "__wrapped__", getattr(module, name))

        def faulty(*args, _name=name, _original=original, **kwargs):
            due = _strikes(kind, _name, args, evaluation)
            if due and marker is not None:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    due = False
            if due:
                if action == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                elif action == "raise":
                    raise ERRORS[error]()
                elif action == "sleep":
                    time.sleep(seconds)
                elif action == "pause":  # (on the worker's event loop)
                    worker = distributed.get_worker()
                    worker.loop.add_callback(pause, worker)
            return _original(*args, **kwargs)

        faulty.__wrapped__ = original
        setattr(module, name, faulty)


def disarm():
    """On a worker: undo :func:`arm`."""
    from sk_twolayer.dask import _worker as module

    for names in FUNCTIONS.values():
        for name in names:
            function = getattr(module, name)
            setattr(module, name, getattr(function, "__wrapped__", function))


def unpause(dask_worker):
    from distributed.core import Status

    if dask_worker.status == Status.paused:
        dask_worker.status = Status.running


def die():
    """On a worker: die (SIGKILL) in a moment, once this call has returned."""
    threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGKILL)).start()


def pause(dask_worker):
    from distributed.core import Status

    dask_worker.status = Status.paused


# ------------------------------------------------------------ what is left
def left_on(client):
    """The tasks the scheduler holds, and, per worker, the keys it holds and
    the fits' scratch (loss objects) alive in its process."""
    def scratch(dask_worker):
        import gc

        from sk_twolayer.dask import _worker as module

        gc.collect()
        return module.scratch_of(dask_worker)

    tasks = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
    held = client.run(lambda dask_worker: len(dask_worker.data))
    return tasks, held, client.run(scratch)


def clean_state(client):
    workers = list(client.run(os.getpid))
    return 0, dict.fromkeys(workers, 0), dict.fromkeys(workers, (0, 0))


def left_after(client, wait=SETTLE_SECONDS):
    """What is left, once nothing is, or after ``wait`` seconds; and
    whether that is nothing. (A worker that a fault killed may still be
    leaving, or its replacement starting: the look is taken again.)"""
    from distributed.comm.core import CommClosedError

    deadline = time.monotonic() + wait
    while True:
        try:
            clean = clean_state(client)
            left = left_on(client)
        except (CommClosedError, OSError) as error:
            left, clean = repr(error), None
        if left == clean or time.monotonic() > deadline:
            return left, left == clean
        time.sleep(0.1)


# ---------------------------------------------------------------- the fits
class Config:
    """One fit's data and parameters, drawn from ``rng``."""

    def __init__(self, rng):
        from sklearn.datasets import make_classification

        self.n = int(rng.choice([900, 1500, 2100]))
        self.seed = int(rng.integers(3))
        X, y = make_classification(self.n, 12, n_informative=6, n_classes=3,
                                   random_state=self.seed)
        self.X, self.y = X, y
        blocks = int(rng.integers(3, 10))
        cuts = np.sort(rng.choice(np.arange(1, self.n), blocks - 1, replace=False))
        self.rows = tuple(int(r) for r in np.diff(np.r_[0, cuts, self.n]))
        self.tree = bool(rng.random() < 0.3)
        self.params = dict(hidden_size=8, max_iter=10, tol=0.0, random_state=0)

    def settings(self):
        tree = {"sk-twolayer.dask.star-workers": 0, "sk-twolayer.dask.fan-in": 2}
        return dict(tree if self.tree else {},
                    **{"sk-twolayer.dask.poll-interval": "50ms",
                       "sk-twolayer.dask.evaluation-timeout": "30s"})

    def dask(self):
        import dask.array as da

        return (da.from_array(self.X, chunks=(self.rows, -1)),
                da.from_array(self.y, chunks=(self.rows,)))

    def describe(self):
        return (f"{self.n} rows in {len(self.rows)} blocks, "
                f"{'tree' if self.tree else 'star'}")


class Recorder:
    """Every evaluation of the training loss that the fits of a thread make:
    (theta, loss, gradient), to compare with the in-memory objective."""

    def __init__(self):
        self.calls = collections.defaultdict(list)
        from sk_twolayer.dask import _objective

        self._class = _objective.DistributedLoss
        self._original = self._class.loss_gradient
        recorder = self

        def recording(loss, theta, *args, **kwargs):
            value, grad = recorder._original(loss, theta, *args, **kwargs)
            recorder.calls[threading.get_ident()].append(
                (np.array(theta, copy=True), value, np.array(grad, copy=True)))
            return value, grad

        self._class.loss_gradient = recording

    def take(self):
        return self.calls.pop(threading.get_ident(), [])

    def close(self):
        self._class.loss_gradient = self._original


def worst_evaluation(calls, config, fitted):
    """The largest relative gap between the recorded evaluations and the
    in-memory objective at the same points."""
    from sk_twolayer._loss import TwoLayerLoss
    from sk_twolayer._params import ParamLayout

    layout = ParamLayout(config.X.shape[1], fitted.hidden_size,
                         len(fitted.classes_), np.float64)
    local = TwoLayerLoss(layout, reg=fitted.reg)
    gap = 0.0
    for theta, value, grad in calls:
        expected, expected_grad = local.loss_gradient(theta, config.X, config.y)
        gap = max(gap, abs(value - expected) / abs(expected),
                  np.abs(grad - expected_grad).max() / np.abs(expected_grad).max())
    return gap


# ------------------------------------------------------------------ faults
class Fault:
    """A fault: what it strikes, and what the fit must then do.

    ``expect`` is ``"same"`` (the fit recovers: the model of the fit without
    the fault; with a ``warning`` that matches, where given), ``"interrupted"`` (a KeyboardInterrupt: the fit ends as an
    interrupt does) or a regular expression that the error must match (it
    names the cause and the setting to change). ``worker`` is the task
    fault to :func:`arm` on the workers, ``client`` an action taken on the
    client, after ``delay`` seconds, when evaluation ``evaluation`` starts.
    """

    def __init__(self, kind, expect, evaluation, worker=None, client=None,
                 delay=0.0, settings=None, detail="", warning=None):
        self.kind, self.expect, self.evaluation = kind, expect, evaluation
        self.worker, self.client, self.delay = worker, client, delay
        self.settings = settings or {}
        self.detail = detail
        self.warning = warning  # what a warning must say, where one must

    def __str__(self):
        return f"{self.kind} at evaluation {self.evaluation} {self.detail}".strip()


KINDS = ["kill", "pause", "task error", "task error, always", "slow task",
         "direct connection fails", "scheduler gone", "client closed",
         "KeyboardInterrupt", "worker joins", "fits at once"]


def draw(rng, config, marker):
    """One fault, drawn at random."""
    kind = str(rng.choice(KINDS))
    evaluation = int(rng.integers(1, 9))
    # (Sums of partial sums run in a tree, and on three workers no node
    # relays theta: a star has only the workers' evaluations.)
    task = str(rng.choice(["evaluate", "sum"] if config.tree else ["evaluate"]))
    delay = float(rng.uniform(0.0, 0.03))
    if kind == "kill":
        if rng.random() < 0.5:
            return Fault(kind, "same", evaluation, worker=dict(
                kind=task, action="kill", marker=marker), detail=f"in a {task} task")
        return Fault(kind, "same", evaluation, client="kill", delay=delay,
                     detail=f"from the client after {delay * 1e3:.0f} ms")
    if kind == "pause":
        return Fault(kind, "same", evaluation, worker=dict(
            kind=task, action="pause", marker=marker), detail=f"in a {task} task")
    if kind.startswith("task error"):
        error = str(rng.choice(sorted(ERRORS)))
        if kind == "task error":
            return Fault(kind, "same", evaluation, worker=dict(
                kind=task, action="raise", error=error, marker=marker),
                detail=f"{error} in a {task} task, once")
        expect = (rf"(?s)failed 2 times.*{ERROR_NAMES[error]}.*"
                  r"sk-twolayer\.dask\.retries, 1"
                  + (r".*task-size" if error == "MemoryError" else ""))
        return Fault(kind, expect, evaluation, worker=dict(
            kind=task, action="raise", error=error), settings={
                "sk-twolayer.dask.retries": 1},
            detail=f"{error} in every {task} task")
    if kind == "slow task":
        return Fault(kind, r"(?s)took more than 1\.5 s.*evaluation-timeout",
                     evaluation, worker=dict(kind=task, action="sleep", seconds=4.0,
                                             marker=marker),
                     settings={"sk-twolayer.dask.evaluation-timeout": "1.5s"},
                     detail=f"a {task} task of 4 s")
    if kind == "direct connection fails":
        return Fault(kind, "same", 1, client="refuse direct",
                     detail="the client cannot reach the workers",
                     warning=r"directly .*direct-transfers")
    if kind == "scheduler gone":
        return Fault(kind, r"Lost the connection to the Dask scheduler at \S+",
                     evaluation, client="close scheduler", delay=delay)
    if kind == "client closed":
        return Fault(kind, r"client \S+ was closed during this call", evaluation,
                     client="close client", delay=delay)
    if kind == "KeyboardInterrupt":
        return Fault(kind, "interrupted", evaluation, client="interrupt",
                     delay=delay, detail=f"after {delay * 1e3:.0f} ms")
    if kind == "worker joins":
        return Fault(kind, "same", evaluation, client="add worker", delay=delay)
    return Fault(kind, "same", evaluation, detail="three fits, one cluster")


# ------------------------------------------------------------ the campaign
class Campaign:
    """Fits with faults on a LocalCluster of worker processes, and the
    counts of what went wrong."""

    def __init__(self, seed, workers=WORKERS, log=print, tmp=None):
        import tempfile

        self.rng = np.random.default_rng(seed)
        self.seed, self.n_workers, self.log = seed, workers, log
        self.tmp = tmp or tempfile.mkdtemp(prefix="sk-twolayer-faults-")
        self.cluster = self.client = None
        self.counts = collections.Counter()
        self.by_kind = collections.Counter()
        self.failures = []
        self._references = {}
        self._marker = 0

    # ------------------------------------------------------------ cluster
    def _connect(self):
        """A client of a cluster of ``n_workers`` running workers, with no
        fault armed and none paused. (A worker a fault killed may still be
        leaving, or its replacement starting: the set-up is tried again, and
        on a new cluster at the last try.)"""
        from distributed.comm.core import CommClosedError

        for attempt in range(3):
            try:
                return self._set_up()
            except (CommClosedError, OSError, TimeoutError, RuntimeError):
                if attempt == 1:
                    self._close_cluster()
                time.sleep(1)
        return self._set_up()

    def _set_up(self):
        import dask
        from distributed import Client, LocalCluster

        if self.cluster is None or self.cluster.status.name != "running":
            self._close_cluster()
            with dask.config.set({
                    "distributed.worker.multiprocessing-method": "forkserver"}):
                self.cluster = LocalCluster(
                    host="127.0.0.1", n_workers=self.n_workers, threads_per_worker=1,
                    processes=True, memory_limit=0, dashboard_address=":0")
        if self.client is None or self.client.status != "running":
            self.client = Client(self.cluster, set_as_default=False)
        if len(self.cluster.worker_spec) != self.n_workers:
            self.cluster.scale(self.n_workers)
        self.client.wait_for_workers(self.n_workers, timeout=60)
        deadline = time.monotonic() + 60
        while len(self.client.scheduler_info(n_workers=-1)["workers"]) > self.n_workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not scale down")
            time.sleep(0.1)
        self.client.run(disarm)
        self.client.run(unpause)
        return self.client

    def _close_cluster(self):
        """Close the client and the cluster, within a bound: a cluster whose
        scheduler a fault closed may wait on its workers forever, whose
        processes are then killed."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
        if self.cluster is not None:
            try:
                self.cluster.close(timeout=20)
            except Exception:
                for nanny in list(getattr(self.cluster, "workers", {}).values()):
                    process = getattr(getattr(nanny, "process", None), "process", None)
                    with contextlib.suppress(Exception):
                        os.kill(process.pid, signal.SIGKILL)
        self.client = self.cluster = None

    def close(self):
        self._close_cluster()

    # ---------------------------------------------------------- references
    def reference(self, config):
        """The in-memory fit of ``config``'s data."""
        from sk_twolayer import TwoLayerSoftmaxClassifier

        key = (config.n, config.seed)
        if key not in self._references:
            self._references[key] = TwoLayerSoftmaxClassifier(**config.params).fit(
                config.X, config.y)
        return self._references[key]

    def _fitted(self, client, config):
        """A fitted estimator (fitted in memory), to fit again on Dask."""
        from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier

        clf = DaskTwoLayerSoftmaxClassifier(**dict(config.params, max_iter=2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(config.X[:200], config.y[:200])
        clf.set_params(**config.params)
        clf.client = client
        return clf

    # ----------------------------------------------------------- one fit
    def run(self, n_fits):
        from sk_twolayer.dask import _objective

        self._recorder = Recorder()
        self._attempt = _objective.DistributedObjective._attempt
        try:
            for i in range(n_fits):
                config = Config(self.rng)
                self._marker += 1
                fault = draw(self.rng, config, os.path.join(
                    self.tmp, f"fault-{self._marker}"))
                self.by_kind[fault.kind] += 1
                self.counts["fits"] += 3 if fault.kind == "fits at once" else 1
                problems = self._one(config, fault)
                line = (f"{i + 1:4d} {str(fault):60.60s} {config.describe():32s} "
                        + ("ok" if not problems else "; ".join(problems)))
                self.log(line)
                if problems:
                    self.failures.append(line)
        finally:
            self._recorder.close()
            self.close()
        return self.counts

    def _one(self, config, fault):
        import dask

        client = self._connect()
        reference = self.reference(config)
        if fault.kind == "fits at once":
            return self._at_once(client, config)
        clf = self._fitted(client, config)
        before = pickle.dumps(clf)
        if fault.worker is not None:
            client.run(arm, evaluation=fault.evaluation, **fault.worker)
        outcome = {}
        settings = dict(config.settings(), **fault.settings)
        with self._client_fault(client, fault) as armed:
            def fit():
                try:
                    with dask.config.set(settings), \
                            warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        clf.fit(*config.dask())
                    outcome["warnings"] = [str(w.message) for w in caught]
                except BaseException as error:  # KeyboardInterrupt included
                    outcome["error"] = error
                finally:
                    outcome["calls"] = self._recorder.take()

            thread = threading.Thread(target=fit, daemon=True)
            armed["thread"] = thread
            start = time.monotonic()
            thread.start()
            thread.join(HANG_SECONDS)
            elapsed = time.monotonic() - start
        if thread.is_alive():
            self.counts["hangs"] += 1
            stack = "".join(traceback.format_stack(
                sys._current_frames().get(thread.ident)))
            self._close_cluster()  # (which may unblock it)
            return [f"HANG after {elapsed:.0f} s:\n{stack}"]
        problems = self._judge(fault, outcome, clf, before, config, reference)
        problems += self._leftovers(fault)
        return problems

    def _judge(self, fault, outcome, clf, before, config, reference):
        error = outcome.get("error")
        calls = outcome.get("calls", [])
        if fault.expect == "interrupted":
            if isinstance(error, KeyboardInterrupt):  # outside the solver's loop
                if pickle.dumps(clf) != before:
                    self.counts["changed by an error"] += 1
                    return ["interrupted outside the solver, and the model changed"]
                return []
            if error is not None or not any("interrupted" in w for w in
                                            outcome.get("warnings", [])):
                self.counts["misdiagnosed"] += 1
                return [f"MISDIAGNOSED: interrupt gave {error!r}"]
            return []
        if fault.expect == "same":
            if error is not None:
                self.counts["misdiagnosed"] += 1
                return [f"MISDIAGNOSED: {type(error).__name__}: {error}"[:600]]
            gap = worst_evaluation(calls, config, clf) if calls else np.inf
            proba = np.abs(clf.predict_proba(config.X)
                           - reference.predict_proba(config.X)).max()
            if gap > 1e-10 or proba > 1e-6 or clf.n_iter_ != reference.n_iter_:
                self.counts["wrong results"] += 1
                return [f"WRONG: evaluations off by {gap:.2g}, probabilities by "
                        f"{proba:.2g}, {clf.n_iter_} iterations for "
                        f"{reference.n_iter_}"]
            if fault.warning and not any(re.search(fault.warning, w) for w in
                                         outcome.get("warnings", [])):
                self.counts["misdiagnosed"] += 1
                return [f"MISDIAGNOSED: no warning /{fault.warning}/ "
                        f"({outcome.get('warnings')})"]
            wrong = [w for w in outcome.get("warnings", [])
                     if "directly" in w and fault.warning is None]
            if wrong:  # (a dead worker taken for one the client cannot reach)
                self.counts["misdiagnosed"] += 1
                return [f"MISDIAGNOSED: warned {wrong[0][:200]!r}"]
            return []
        if error is None:
            if fault.kind in ("client closed", "scheduler gone"):
                # (It struck after the fit's last evaluation, while it was
                # ending: the fit's model must then be the right one.)
                return self._judge(Fault(fault.kind, "same", fault.evaluation),
                                   outcome, clf, before, config, reference)
            self.counts["misdiagnosed"] += 1
            return [f"MISDIAGNOSED: no error, expected /{fault.expect}/"]
        text = f"{type(error).__name__}: {error}"
        problems = []
        if not re.search(fault.expect, text):
            self.counts["misdiagnosed"] += 1
            problems.append(f"MISDIAGNOSED: {text[:600]} (expected /{fault.expect}/)")
        if pickle.dumps(clf) != before:
            self.counts["changed by an error"] += 1
            problems.append("the failed fit changed the model")
        return problems

    def _leftovers(self, fault):
        if fault.kind == "scheduler gone":  # nothing left: no cluster
            self._close_cluster()
            return []
        if fault.kind == "client closed":
            self.client = None  # (a new one looks at what is left)
        client = self._connect_for_leftovers()
        left, clean = left_after(client)
        if clean:
            return []
        self.counts["leftovers"] += 1
        if isinstance(left, str):  # (the look itself failed, all along)
            return [f"LEFTOVERS: could not look: {left}"]
        return [f"LEFTOVERS: tasks {left[0]}, keys {left[1]}, scratch {left[2]}"]

    def _connect_for_leftovers(self):
        from distributed import Client

        if self.client is None or self.client.status != "running":
            self.client = Client(self.cluster, set_as_default=False)
        return self.client

    def _at_once(self, client, config):
        """Three fits at once on one cluster, of three data sets."""
        import dask

        from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier

        configs = [config] + [Config(self.rng) for _ in range(2)]
        results = {}

        def fit(k, c):
            try:
                clf = DaskTwoLayerSoftmaxClassifier(**c.params)
                clf.client = client
                clf.fit(*c.dask())
                results[k] = (clf, self._recorder.take())
            except BaseException as error:
                results[k] = (error, [])

        # (dask.config.set is global, not per thread: the fits share the
        # first one's settings, set here once.)
        with dask.config.set(config.settings()):
            threads = [threading.Thread(target=fit, args=(k, c), daemon=True)
                       for k, c in enumerate(configs)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(HANG_SECONDS)
        if any(thread.is_alive() for thread in threads):
            self.counts["hangs"] += 1
            self._close_cluster()
            return ["HANG: fits at once"]
        problems = []
        for k, c in enumerate(configs):
            got, calls = results[k]
            if isinstance(got, BaseException):
                self.counts["misdiagnosed"] += 1
                problems.append(f"MISDIAGNOSED: fit {k}: {got!r}"[:600])
                continue
            reference = self.reference(c)
            gap = worst_evaluation(calls, c, got) if calls else np.inf
            proba = np.abs(got.predict_proba(c.X) - reference.predict_proba(c.X)).max()
            if gap > 1e-10 or proba > 1e-6 or got.n_iter_ != reference.n_iter_:
                self.counts["wrong results"] += 1
                problems.append(f"WRONG: fit {k}: evaluations off by {gap:.2g}, "
                                f"probabilities by {proba:.2g}")
        return problems + self._leftovers(Fault("fits at once", "same", 0))

    # ------------------------------------------------- faults on the client
    @contextlib.contextmanager
    def _client_fault(self, client, fault):
        """While the fit runs: ``fault.client`` done ``fault.delay`` seconds
        after evaluation ``fault.evaluation`` starts (or, for the direct
        connections, from the start)."""
        from sk_twolayer.dask import _objective

        armed = {}
        if fault.client is None:
            yield armed
            return
        if fault.client == "refuse direct":
            with _refused_direct(client):
                yield armed
            return
        original, cluster = self._attempt, self.cluster
        done = threading.Event()

        def act():
            with contextlib.suppress(Exception):
                if fault.client == "kill":
                    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
                    client.run(die, workers=[random.Random(fault.evaluation)
                                             .choice(workers)])
                elif fault.client == "close scheduler":
                    cluster.sync(cluster.scheduler.close)
                elif fault.client == "close client":
                    client.close()
                elif fault.client == "add worker":
                    cluster.scale(self.n_workers + 1)
                elif fault.client == "interrupt":
                    _interrupt(armed["thread"])

        def attempt(objective, *args, **kwargs):
            if objective.evaluations == fault.evaluation and not done.is_set():
                done.set()
                threading.Timer(fault.delay, act).start()
            return original(objective, *args, **kwargs)

        _objective.DistributedObjective._attempt = attempt
        try:
            yield armed
        finally:
            _objective.DistributedObjective._attempt = original


def _interrupt(thread):
    """Raise KeyboardInterrupt in ``thread`` at its next bytecode, as Ctrl-C
    does in the main thread."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))


@contextlib.contextmanager
def _refused_direct(client, tried=None):
    """The client cannot open a connection to a worker (a gateway, a NAT):
    every connection but the scheduler's is refused (and its address added
    to ``tried``)."""
    pool = client.rpc
    original = pool.connect
    scheduler = client.scheduler.address

    async def connect(addr, *args, **kwargs):
        if addr != scheduler:
            if tried is not None:
                tried.append(addr)
            raise OSError(f"Timed out trying to connect to {addr}: unreachable")
        return await original(addr, *args, **kwargs)

    pool.connect = connect
    try:
        yield
    finally:
        pool.connect = original


def report(counts, by_kind, seed, elapsed):
    lines = [f"seed {seed}: {counts['fits']} fits in {elapsed:.0f} s",
             "faults by kind: " + ", ".join(f"{k} {by_kind[k]}" for k in KINDS
                                             if by_kind[k])]
    for name in ("hangs", "wrong results", "leftovers", "misdiagnosed",
                 "changed by an error"):
        lines.append(f"{name}: {counts[name]}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fits", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args(argv)
    start = time.monotonic()
    campaign = Campaign(args.seed, args.workers)
    counts = campaign.run(args.fits)
    print(report(counts, campaign.by_kind, args.seed, time.monotonic() - start))
    bad = sum(counts[k] for k in ("hangs", "wrong results", "leftovers",
                                  "misdiagnosed", "changed by an error"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
