"""The tests' clusters of worker processes, and how they close.

Dask's own close gives each nanny 5 s to end its worker process. On a
loaded machine a worker can take longer (seen in CI's midrange session,
two sessions sharing 2 cores: "Worker process still alive after 4.0
seconds, killing", then the killed process not yet reaped when the nanny's
time ran out), and the close fails with a TimeoutError that leaves the
scheduler open. Here the nannies are closed first, each within
NANNY_CLOSE_S, and then the rest of the cluster, as Dask does.
"""

import asyncio
import contextlib

from distributed import LocalCluster

NANNY_CLOSE_S = 60


def new(n_workers, **kwargs):
    """A LocalCluster of ``n_workers`` processes of one thread, on loopback."""
    return LocalCluster(host="127.0.0.1", n_workers=n_workers, threads_per_worker=1,
                        processes=True, dashboard_address=":0", **kwargs)


@contextlib.contextmanager
def of_processes(n_workers, **kwargs):
    """``new``'s cluster, closed by ``close`` on the way out."""
    cluster = new(n_workers, **kwargs)
    try:
        yield cluster
    finally:
        close(cluster)


def close(cluster):
    """Close ``cluster``: its nannies first, each within NANNY_CLOSE_S."""
    async def close_nannies():
        await asyncio.gather(*[nanny.close(timeout=NANNY_CLOSE_S)
                               for nanny in list(cluster.workers.values())])

    cluster.sync(close_nannies)
    cluster.close()
