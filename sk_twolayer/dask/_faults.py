"""The cluster as a fit sees it: its workers, waiting on it, and what goes wrong.

Dask itself recovers from most losses: a block lost with its worker is
recomputed from its source (the persisted blocks keep their graph), and a
task whose worker died runs elsewhere. What is left to a fit:

- to see every worker, on every supported release (:func:`workers_of`);
- not to wait forever where no worker is left, nor longer than
  ``evaluation-timeout`` for one evaluation (:class:`Watch`);
- to try an evaluation again where its tasks' workers died under them too
  often (``KilledWorker``) or the parameters, which have no source, were
  lost with a worker (:func:`retry_or_raise`);
- to say clearly what went wrong and what to do where the fit cannot go
  on: a closed client, a lost scheduler, data without a source lost, a
  block that kills its workers (the ``*_error`` functions and
  :func:`translated`).
"""

import asyncio
import concurrent.futures
import contextlib
import logging
import time
import weakref
from typing import NamedTuple

import distributed
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker  # noqa: F401 (for the callers)

logger = logging.getLogger("sk_twolayer.dask")

# Lost futures raise this (distributed's FutureCancelledError derives from it).
Cancelled = concurrent.futures.CancelledError
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError)


class ParametersLost(Exception):
    """The parameters could not be sent to a worker: it left meanwhile."""


# ------------------------------------------------------------------ workers
class WorkerInfo(NamedTuple):
    """What a fit needs to know of one worker."""

    nthreads: int
    memory_limit: int  # bytes; 0 where the worker has no limit
    unmanaged: int  # bytes its process holds beside its data
    running: bool  # False while paused (memory) or closing


def workers_of(client):
    """Every worker of ``client``'s cluster, by address: :class:`WorkerInfo`.

    From distributed 2025.10 through 2026.6, ``Client.scheduler_info()``
    lists only the first 5 workers unless asked for all of them
    (``n_workers=-1``); earlier releases list all and ignore the argument
    (they take ``**kwargs``), and later ones list all by default.
    """
    workers = client.scheduler_info(n_workers=-1).get("workers") or {}
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


def lost_scheduler_error(client, address):
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
    gather while a worker runs, however long the results take to arrive,
    but where a ``timeout`` is given. A client that stops running (its
    scheduler lost) ends the wait at the next look.

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

    def wait(self, futures, on_poll=None):
        """Wait until the futures are done (finished, erred or lost)."""
        while True:
            try:
                with self.client.as_current():  # (wait uses the current client)
                    distributed.wait(futures, timeout=self.settings.poll_interval)
                return
            except _TIMEOUTS:
                self._poll(on_poll)

    def gather(self, futures, on_poll=None, timeout=None, what=None, direct=None):
        """The futures' results.

        The gather runs on the client's event loop as one request, which
        this polls: a result lost with its worker while it is gathered is
        recomputed, and waited for, as long as some worker is there to do it.
        With ``timeout`` (seconds), it gives up after that long with an
        error that names ``what`` it waited for. ``direct``: fetch the
        results from the workers, not through the scheduler.
        """
        request = asyncio.run_coroutine_threadsafe(
            self.client.gather(futures, asynchronous=True, direct=direct),
            self.client.loop.asyncio_loop)
        start = time.monotonic()
        try:
            while True:
                try:
                    return request.result(timeout=self.settings.poll_interval)
                except concurrent.futures.TimeoutError:
                    self._poll(on_poll)
                    if timeout is not None and time.monotonic() - start > timeout:
                        raise RuntimeError(
                            f"{what} took more than {timeout:g} s, the setting "
                            "sk-twolayer.dask.evaluation-timeout, and the fit "
                            "stopped: a task may be stuck on a worker (see the "
                            "dashboard's task stream). Raise the setting (or set "
                            "it to null, no limit) if evaluations take that long."
                        ) from None
        finally:
            request.cancel()

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
        self.check()
        if on_poll is not None:
            on_poll()
        if workers is None:
            workers = workers_of(self.client)
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

    ``error`` is the ``KilledWorker``, ``Cancelled`` or
    :class:`ParametersLost` that the evaluation met.
    ``data_lost()`` says whether the data blocks themselves were lost beyond
    recovery: then nothing helps. Otherwise the evaluation's own futures
    were lost (the parameters, with their worker) or its tasks killed their
    workers too often, and it is tried again up to ``settings.retries``
    times.
    """
    if isinstance(error, Cancelled):
        if data_lost():
            raise lost_data_error() from error
        reason = "its parameters were lost with a worker"
    elif isinstance(error, KilledWorker):
        reason = "its tasks' workers died under them (KilledWorker)"
    else:
        reason = f"the worker it sent the parameters to left ({error})"
    if attempt >= settings.retries:
        raise RuntimeError(
            f"An evaluation of the loss failed {attempt + 1} times, the last "
            f"time because {reason}, and the fit stopped (tries after the "
            f"first: the setting sk-twolayer.dask.retries, {settings.retries}). "
            "Workers keep dying during this fit: look at their logs for the "
            "cause (memory, most often), then fit again."
        ) from error
    logger.warning("An evaluation is tried again (%d of %d): %s.", attempt + 1,
                   settings.retries, reason)
