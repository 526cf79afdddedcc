"""Waiting for the cluster without hanging, and the errors a fit can meet there.

Dask itself recovers from most losses: a block lost with its worker is
recomputed from its source (the persisted blocks keep their graph), and a
task whose worker died runs elsewhere. What is left to a fit:

- not to wait forever where no worker is left (:class:`Watch`);
- to try an evaluation again where its tasks' workers died under them too
  often (``KilledWorker``) or the parameters, which have no source, were
  lost with a worker (:func:`retry_or_raise`);
- to say so clearly where data without a source (scattered) were lost
  (:func:`lost_data_error`).
"""

import asyncio
import concurrent.futures
import logging
import time

import distributed
from distributed.scheduler import KilledWorker  # noqa: F401 (for the callers)

logger = logging.getLogger("sk_twolayer.dask")

# Lost futures raise this (distributed's FutureCancelledError derives from it).
Cancelled = concurrent.futures.CancelledError


class Watch:
    """Waits for futures of ``client``, looking at the cluster every
    ``settings.poll_interval`` seconds while it waits.

    Without a single running worker (none at all, or all of them paused
    for want of memory) for ``settings.no_workers_timeout`` seconds, it
    gives up with an error: nothing could finish. It never gives up on a
    gather while a worker runs, however long the results take to arrive: a
    gather that makes progress is never cut off.
    """

    def __init__(self, client, settings):
        self.client, self.settings = client, settings
        self._since = None  # since when there has been no worker

    def wait(self, futures, on_poll=None):
        """Wait until the futures are done (finished, erred or lost)."""
        while True:
            try:
                with self.client.as_current():  # (wait uses the current client)
                    distributed.wait(futures, timeout=self.settings.poll_interval)
                return
            except (TimeoutError, asyncio.TimeoutError,
                    concurrent.futures.TimeoutError):
                self._poll(on_poll)

    def gather(self, futures, on_poll=None):
        """The futures' results.

        The gather runs on the client's event loop as one request, which
        this polls: a result lost with its worker while it is gathered is
        recomputed, and waited for, as long as some worker is there to do it.
        """
        request = asyncio.run_coroutine_threadsafe(
            self.client.gather(futures, asynchronous=True),
            self.client.loop.asyncio_loop)
        try:
            while True:
                try:
                    return request.result(timeout=self.settings.poll_interval)
                except concurrent.futures.TimeoutError:
                    self._poll(on_poll)
        finally:
            request.cancel()

    def workers(self):
        """The workers and their threads; waits while there are none."""
        while True:
            nthreads = self.client.nthreads()
            if nthreads:
                self._since = None
                return nthreads
            time.sleep(self.settings.poll_interval)
            self._poll(None)

    def _poll(self, on_poll):
        if on_poll is not None:
            on_poll()
        workers = self.client.scheduler_info().get("workers") or {}
        if any(info.get("status", "running") == "running"
               for info in workers.values()):
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


def lost_data_error():
    return RuntimeError(
        "Lost row blocks of the data with a worker, and they could not be "
        "recomputed: they were scattered to the cluster (client.scatter) or "
        "came from a source that cannot be read again. Build X and y from a "
        "source Dask can read again (dd.read_parquet, da.from_zarr, "
        "da.from_array, ...), and fit again."
    )


def retry_or_raise(error, attempt, settings, data_lost):
    """Return if a failed evaluation is to be tried again; else raise.

    ``error`` is the ``KilledWorker`` or ``Cancelled`` the evaluation met.
    ``data_lost()`` says whether the data blocks themselves were lost beyond
    recovery: then nothing helps. Otherwise the evaluation's own futures
    were lost (the parameters, scattered, with their worker) or its tasks
    killed their workers too often, and it is tried again up to
    ``settings.retries`` times.
    """
    if isinstance(error, Cancelled):
        if data_lost():
            raise lost_data_error() from error
        reason = "its parameters were lost with a worker"
    else:
        reason = "its tasks' workers died under them (KilledWorker)"
    if attempt >= settings.retries:
        raise error
    logger.warning("An evaluation is tried again (%d of %d): %s.", attempt + 1,
                   settings.retries, reason)
