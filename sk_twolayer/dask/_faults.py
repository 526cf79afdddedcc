"""The cluster as a fit sees it: its workers, waiting on it, and what goes wrong.

Dask itself recovers from most losses: a block lost with its worker is
recomputed from its source (the persisted blocks keep their graph), and a
task whose worker died runs elsewhere. What is left to a fit:

- to see every worker, on every supported release, from a fresh reply of
  the scheduler (:func:`workers_of`);
- not to wait forever where no worker is left, nor past a deadline
  (``evaluation-timeout``, :class:`Deadline`), and never to take a task's
  own exception for the end of a wait (:class:`Watch`): on Python 3.11
  and later ``socket.timeout``, ``asyncio.TimeoutError`` and
  ``concurrent.futures.TimeoutError`` are all the builtin ``TimeoutError``;
- to try an evaluation again where its tasks' workers died under them too
  often (``KilledWorker``), the parameters, which have no source, were
  lost with a worker, or a task failed (:class:`TaskFailed`: reading a
  lost block again timed out, say) (:func:`retry_or_raise`);
- to say clearly what went wrong and what to do where the fit cannot go
  on: a closed client, a lost scheduler, data without a source lost, a
  block that kills its workers, a task that keeps failing (the ``*_error``
  functions and :func:`translated`).
"""

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import socket
import threading
import time
import weakref
from typing import NamedTuple

from distributed.comm.core import CommClosedError
from distributed.comm import get_address_host_port
from distributed.scheduler import KilledWorker, Scheduler

logger = logging.getLogger("sk_twolayer.dask")

# Lost futures raise this (distributed's FutureCancelledError derives from it).
Cancelled = concurrent.futures.CancelledError


class ParametersLost(Exception):
    """The parameters could not be sent to a worker: it left meanwhile."""


class WorkerLost(Exception):
    """A worker that an evaluation called could not be reached: it died, or
    left, or the client (or its parent in the tree) cannot reach it."""


class TaskFailed(Exception):
    """A task of the fit raised ``error`` (its own exception, which a wait
    must not take for a timeout); ``task`` names the task."""

    def __init__(self, error, task=None):
        super().__init__(f"{task or 'a task'} raised {error!r}")
        self.error, self.task = error, task


class EvaluationTimeout(RuntimeError):
    """An evaluation went past ``evaluation-timeout``."""


class Deadline:
    """When a wait must end: ``seconds`` from now (``None``: never), for
    ``what`` (said in the error). ``left()`` is the time left, ``check()``
    raises :class:`EvaluationTimeout` once it has passed."""

    def __init__(self, seconds, what=None):
        self.seconds, self.what = seconds, what
        self.end = None if seconds is None else time.monotonic() + seconds

    def left(self):
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def check(self):
        if self.end is not None and time.monotonic() >= self.end:
            raise EvaluationTimeout(
                f"{self.what or 'An evaluation of the loss'} took more than "
                f"{self.seconds:g} s, the setting sk-twolayer.dask.evaluation-timeout "
                "(which counts everything an evaluation does: sending the "
                "parameters, its tasks, gathering their sums, and its tries "
                "after lost workers or failed tasks), and the fit stopped: a "
                "task may be stuck on a worker (see the dashboard's task "
                "stream). Raise the setting (or set it to null, no limit) if "
                "evaluations take that long."
            )


# ------------------------------------------------------------------ workers
class WorkerInfo(NamedTuple):
    """What a fit needs to know of one worker."""

    nthreads: int
    memory_limit: int  # bytes; 0 where the worker has no limit
    unmanaged: int  # bytes its process holds beside its data
    running: bool  # False while paused (memory) or closing


# From distributed 2025.10 the scheduler's ``identity`` lists only the
# first ``n_workers`` workers (5 by default up to 2026.6); earlier releases
# take no argument and list them all.
_ALL_WORKERS = ({"n_workers": -1}
                if "n_workers" in inspect.signature(Scheduler.identity).parameters
                else {})


def workers_of(client):
    """Every worker of ``client``'s cluster, by address: :class:`WorkerInfo`.

    Read from the scheduler's own reply, asked for every worker. Not from
    ``Client.scheduler_info()``: up to distributed 2026.8 it returns the
    client's cache of the reply, which the client's periodic refresh may
    overwrite between the call and the read, with the first 5 workers
    (2025.10 to 2026.6) or with none (2026.7 and 2026.8).
    """
    try:
        identity = client.sync(client.scheduler.identity, **_ALL_WORKERS)
    except TypeError:  # a scheduler older than this client
        identity = client.sync(client.scheduler.identity)
    workers = identity.get("workers") or {}
    out = {}
    for address, info in workers.items():
        metrics = info.get("metrics") or {}
        out[address] = WorkerInfo(
            nthreads=int(info.get("nthreads") or 1),
            memory_limit=int(info.get("memory_limit") or 0),
            unmanaged=max(0, int(metrics.get("memory", 0))
                          - int(metrics.get("managed_bytes", 0))),
            running=info.get("status", "running") == "running",
        )
    return out


# ------------------------------------------------------------------- errors
def _scheduler(client):
    scheduler = getattr(client, "scheduler", None)
    return getattr(scheduler, "address", None)


def closed_client_error(client):
    return RuntimeError(
        f"The Dask client {client.id} is {client.status}: a fit, a score or a "
        "prediction needs a running one. Connect a new client "
        "(clf.client = Client(address)), or set clf.client = None to use the "
        "current client (distributed.default_client())."
    )


def _scheduler_answers(address, timeout=1.0):
    """Whether a scheduler still listens at ``address``: True, False, or
    None where that cannot be told (an address of another kind)."""
    if not address:
        return None
    if address.startswith("inproc://"):  # a cluster in this process
        from distributed.comm.inproc import global_manager

        try:
            return global_manager.get_listener_for(
                address.split("://", 1)[1]) is not None
        except ValueError:  # (another process's address)
            return None
    if not address.startswith(("tcp://", "tls://")):
        return None
    try:
        socket.create_connection(get_address_host_port(address),
                                 timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def lost_scheduler_error(client, address):
    """The error of a client that stopped running during a call: closed
    while its scheduler still answers, or cut off from a scheduler that
    went away (or the network to it)."""
    if client.status in ("closing", "closed") and _scheduler_answers(address):
        return RuntimeError(
            f"The Dask client {client.id} was closed during this call (its "
            f"scheduler at {address} still answers). The model was left as "
            "it was before this call. Keep the client open while it fits: "
            "connect a new one (clf.client = Client(address)), or set "
            "clf.client = None to use the current client, and call again."
        )
    return RuntimeError(
        f"Lost the connection to the Dask scheduler at {address} (client "
        f"{client.id}, now {client.status}): the cluster went away, or the "
        "network to it did. The model was left as it was before this call. "
        "Check that the cluster runs (restart it if it closed), connect a "
        "client to it, and call again."
    )


def lost_data_error():
    return RuntimeError(
        "Lost row blocks of the data with a worker, and they could not be "
        "recomputed: they were scattered to the cluster (client.scatter) or "
        "came from a source that cannot be read again. Build X and y from a "
        "source Dask can read again (dd.read_parquet, da.from_zarr, "
        "da.from_array, ...), and fit again."
    )


def reading_error():
    return RuntimeError(
        "Reading and checking the row blocks killed the workers that ran them, "
        "again and again (KilledWorker): a block may not fit in a worker's "
        "memory. Cut X into smaller blocks (X.rechunk(...), "
        "df.repartition(...)), or use workers with more memory."
    )


def reading_failed(index, name, error, retries, again=False):
    """The error of a block whose reading failed ``retries + 1`` times."""
    return RuntimeError(
        f"Reading row block {index} of {name}{' again' if again else ''} "
        f"failed {retries + 1} times, the last time with {error!r}, and the "
        "fit stopped (tries after the first: the setting "
        f"sk-twolayer.dask.retries, {retries}). If its source is slow or "
        "flaky, raise the setting; otherwise see the error's traceback for "
        "its cause."
    )


def check_running(client):
    """A clear error where ``client`` is closed (or closing)."""
    if client.status in ("closing", "closed"):
        raise closed_client_error(client)


@contextlib.contextmanager
def translated(client):
    """Errors of a lost connection, said as such.

    Where ``client`` stops running inside the block (its scheduler went away,
    or the cluster closed), whatever failed (a ``KeyError`` from an empty
    reply, an ``OSError``, a lost result) is reported as the lost scheduler
    it comes from.
    """
    check_running(client)
    address = _scheduler(client)
    try:
        yield
    except Exception as error:
        if client.status != "running" or isinstance(error, CommClosedError):
            raise lost_scheduler_error(client, address) from error
        raise


# ------------------------------------------------------------------ waiting
class Watch:
    """Waits for futures of ``client``, looking at the cluster every
    ``settings.poll_interval`` seconds while it waits.

    Without a single running worker (none at all, or all of them paused
    for want of memory) for ``settings.no_workers_timeout`` seconds, it
    gives up with an error: nothing could finish. It never gives up on a
    wait while a worker runs, however long the results take to arrive,
    but at a :class:`Deadline`, where one is given. A client that stops
    running (its scheduler lost) ends the wait at the next look.

    It also keeps track of the futures a fit makes (:meth:`held`), so that
    the fit can leave nothing behind on the cluster (:meth:`release`),
    even where an error's traceback still refers to some of them.
    """

    def __init__(self, client, settings):
        check_running(client)
        self.client, self.settings = client, settings
        self.address = _scheduler(client)
        self._since = None  # since when there has been no worker
        self._futures = weakref.WeakSet()

    def held(self, futures):
        """``futures`` (a list, or one future), kept track of; returned."""
        self._futures.update(futures if isinstance(futures, list) else [futures])
        return futures

    def release(self):
        """Release every future of the fit that is still referred to (by an
        error's traceback, say): the scheduler then forgets their tasks, and
        those they alone needed. (Not ``Client.cancel``, which fails in the
        scheduler on a task that no client wants but a cancelled one needs,
        such as the parts of an evaluation.)"""
        futures = list(self._futures)
        self._futures = weakref.WeakSet()
        for future in futures:
            future.release()

    def _step(self, deadline):
        """How long to wait before the next look at the cluster."""
        left = None if deadline is None else deadline.left()
        return self.settings.poll_interval if left is None else min(
            self.settings.poll_interval, left)

    def wait(self, futures, on_poll=None, deadline=None):
        """Wait until the futures are done (finished, erred or lost for
        good: a lost one raises ``Cancelled``).

        Each future says when it is done (``add_done_callback``), and this
        waits on that, looking at the cluster between looks. (Not
        ``distributed.wait`` under ``Client.as_current``: that sets Dask's
        global ``scheduler`` setting, which fits in several threads at once
        then leave set to ``dask.distributed`` for the whole process.)
        """
        pending = [f for f in futures if not f.done()]
        if pending:
            done, lock, left = threading.Event(), threading.Lock(), [len(pending)]

            def one_done(_):
                with lock:
                    left[0] -= 1
                    if not left[0]:
                        done.set()

            for future in pending:
                future.add_done_callback(one_done)
            while not done.wait(self._step(deadline)):
                self._poll(on_poll)
                if deadline is not None:
                    deadline.check()
        lost = [f.key for f in futures if f.cancelled()]
        if lost:
            raise Cancelled(lost)

    def outcome(self, awaitable, on_poll=None, deadline=None):
        """The result of ``awaitable``, run on the client's event loop.

        It runs as one request, which this polls, looking at the cluster
        between looks; with a :class:`Deadline`, it is cancelled once that
        has passed. The poll asks whether the request is done, and never
        takes the request's own outcome for "not yet": a task that raised a
        ``TimeoutError`` of its own has finished, and its error is raised
        here as it came.
        """
        async def run():
            return await awaitable

        request = asyncio.run_coroutine_threadsafe(run(), self.client.loop.asyncio_loop)
        try:
            while True:
                done, _ = concurrent.futures.wait([request],
                                                  timeout=self._step(deadline))
                if done:
                    break
                self._poll(on_poll)
                if deadline is not None:
                    deadline.check()
        finally:
            request.cancel()
        return request.result()

    def gather(self, futures, on_poll=None, deadline=None, direct=None):
        """The futures' results (:meth:`outcome` of the client's gather).

        A result lost with its worker while it is gathered is recomputed,
        and waited for, as long as some worker is there to do it.
        ``direct``: fetch the results from the workers, not through the
        scheduler. A task that failed raises :class:`TaskFailed`
        (``KilledWorker`` and lost futures as they are).
        """
        try:
            return self.outcome(self.client.gather(futures, asynchronous=True,
                                                   direct=direct),
                                on_poll=on_poll, deadline=deadline)
        except (KilledWorker, Cancelled):
            raise
        except Exception as error:
            erred = [f for f in futures if f.status == "error"]
            if not erred:
                raise
            raise TaskFailed(error, erred[0].key) from error

    def workers(self):
        """Every worker (:class:`WorkerInfo`, by address), once one runs."""
        while True:
            self.check()
            workers = workers_of(self.client)
            if any(info.running for info in workers.values()):
                self._since = None
                return workers
            time.sleep(self.settings.poll_interval)
            self._poll(None, workers)

    def check(self):
        """The lost-scheduler error, where the client has lost its scheduler
        (a call to it would wait up to distributed.comm.timeouts.connect for
        the client to reconnect)."""
        if self.client.status != "running":
            raise lost_scheduler_error(self.client, self.address)

    def _poll(self, on_poll, workers=None):
        """A look at the cluster while waiting: an error where the client
        stopped, or no worker has run for too long; ``on_poll(workers)``
        looks too (at :class:`WorkerInfo` by address)."""
        self.check()
        if workers is None:
            workers = workers_of(self.client)
        if on_poll is not None:
            on_poll(workers)
        if any(info.running for info in workers.values()):
            self._since = None
        elif self._since is None:
            self._since = time.monotonic()
        elif time.monotonic() - self._since > self.settings.no_workers_timeout:
            wait = self.settings.no_workers_timeout
            if workers:  # all of them paused, or closing
                raise RuntimeError(
                    f"No Dask worker has run a task for {wait:g} s: all "
                    f"{len(workers)} are paused (their memory is above "
                    "distributed.worker.memory.pause of their limit, and they "
                    "cannot spill it) or closing, and the fit cannot go on. "
                    "Give the workers more memory, use more workers, or pass "
                    "float32 data; see the memory section of the docs. (The "
                    "wait is the setting sk-twolayer.dask.no-workers-timeout.)"
                )
            raise RuntimeError(
                f"No Dask worker has been running for {wait:g} s, and the fit "
                "cannot go on without one. Start workers (or a new cluster) and "
                "fit again. (The wait is the setting "
                "sk-twolayer.dask.no-workers-timeout.)"
            )


# ----------------------------------------------------------------- retrying
def retry_or_raise(error, attempt, settings, data_lost):
    """Return if a failed evaluation is to be tried again; else raise.

    ``error`` is the ``KilledWorker``, ``Cancelled``, :class:`WorkerLost`,
    :class:`ParametersLost` or :class:`TaskFailed` that the evaluation met.
    ``data_lost()`` says whether the data blocks themselves were lost beyond
    recovery: then nothing helps. Otherwise the evaluation's own futures
    were lost (the parameters, with their worker), its tasks killed their
    workers too often, or one of them failed, and it is tried again up to
    ``settings.retries`` times; the error then says what failed, and what
    to do about it.
    """
    advice = ("Workers keep dying during this fit: look at their logs for the "
              "cause (memory, most often), then fit again.")
    if isinstance(error, Cancelled):
        if data_lost():
            raise lost_data_error() from error
        reason = "its parameters were lost with a worker"
    elif isinstance(error, KilledWorker):
        reason = "its tasks' workers died under them (KilledWorker)"
    elif isinstance(error, WorkerLost):
        reason = f"a worker it called could not be reached ({error})"
    elif isinstance(error, TaskFailed):
        reason = f"{error.task or 'a task'} raised {error.error!r}"
        if isinstance(error.error, MemoryError):
            advice = ("A worker ran out of memory: lower the setting "
                      "sk-twolayer.dask.task-size, or give the workers more "
                      "memory, then fit again.")
        else:
            advice = ("The task keeps failing with this error: see its "
                      "traceback (above), fix its cause (a source that cannot "
                      "be read again, say), then fit again.")
    else:
        reason = f"the worker it sent the parameters to left ({error})"
    if attempt >= settings.retries:
        raise RuntimeError(
            f"An evaluation of the loss failed {attempt + 1} times, the last "
            f"time because {reason}, and the fit stopped (tries after the "
            f"first: the setting sk-twolayer.dask.retries, {settings.retries}). "
            + advice
        ) from (error.error if isinstance(error, TaskFailed) else error)
    logger.warning("An evaluation is tried again (%d of %d): %s.", attempt + 1,
                   settings.retries, reason)
