"""An evaluation as calls to the workers, the scheduler out of the loop.

Where the client reaches the workers (``direct-transfers``, by default),
an evaluation is a call to each worker's own RPC server, the one that
answers the scheduler and the other workers: no graph, no task, no message
to the scheduler. The workers answer through :func:`~._worker.evaluate`,
which their ``Client.run`` sets up when the fit first calls them
(:func:`~._worker.serve`), and which reads the blocks from the worker's
memory, where Dask keeps, spills and restores them.

- **a star** (up to ``star-workers`` workers): the client calls every
  worker at once with theta, and adds their totals in plan order;
- **a tree** (more workers): the client calls the root; each worker calls
  its children in the tree of fan-in ``fan-in`` at once, worker to worker,
  evaluates its own blocks meanwhile, and adds its children's totals to
  its own, in order: theta and the totals move worker to worker, and no
  worker sends or receives more than ``fan-in + 1`` of them.

A call is answered with the totals, or with the error that the worker's
evaluation raised (:class:`~._faults.TaskFailed`), so that a failure of the
connection (the worker died; the client cannot reach it) is never taken for
an error of the evaluation, nor the other way round.
"""

import asyncio
from typing import NamedTuple

from distributed.comm.core import CommClosedError

from . import _worker
from ._faults import TaskFailed, WorkerLost

# What a call raises where its worker, or one it calls, cannot be reached.
_UNREACHABLE = (OSError, CommClosedError, asyncio.TimeoutError, TimeoutError)


class _Raised(NamedTuple):
    """What the calls of an evaluation raised: ``unreachable``, a failure of
    a connection; otherwise, of the call itself."""

    error: BaseException
    unreachable: bool


def nodes(plan, blocks, star):
    """The :class:`~._worker.Node` of each worker of ``plan`` that the
    client calls: every worker (a star), or the root, whose children are
    the rest of the tree. ``blocks`` are the futures of the blocks."""
    def node(k, children):
        tasks = plan.tasks[k]
        groups = tuple(tuple(blocks[i].key for i in group)
                       for task in tasks for group in task)
        return _worker.Node(plan.workers[k], groups, len(tasks) > 1, children)

    if star:
        return [node(k, ()) for k in range(len(plan.workers))]

    def subtree(k):
        return node(k, tuple(subtree(c) for c in plan.children(k)))

    return [subtree(0)]


class CallPath:
    """Evaluations of the prepared blocks by calls to the workers of
    ``client``'s cluster; ``token`` is the fit's."""

    def __init__(self, client, watch, token):
        self.client, self.watch, self.token = client, watch, token
        self.served = set()  # the workers that answer this fit's calls
        self.answered = False  # whether a call of the fit has been answered

    def serve(self, workers):
        """Have ``workers`` answer the fit's calls (once each: through the
        scheduler, at the first evaluation on them)."""
        new = sorted(set(workers) - self.served)
        if new:
            self.client.run(_worker.serve, workers=new)
            self.served.update(new)

    def evaluate(self, spec, theta, plan, blocks, star, deadline=None):
        """One evaluation: the :class:`~._worker.Partial` of all blocks.

        Raises :class:`~._faults.TaskFailed` where a worker's evaluation
        failed (with the worker's error), :class:`~._faults.WorkerLost`
        where a worker could not be reached (it died, or the client cannot
        reach it), and :class:`~._worker.BlockMissing` where a block has
        left the worker that the plan put it on.
        """
        self.serve(plan.workers)
        called = nodes(plan, blocks, star)

        async def all_of_them():
            # (What the calls raise, told apart from what a wait raises.)
            try:
                return await asyncio.gather(*[
                    _worker.call(self.client.rpc, spec, theta, node)
                    for node in called])
            except _UNREACHABLE as error:
                return _Raised(error, True)
            except Exception as error:  # (an answer that did not travel, say)
                return _Raised(error, False)

        def still_there(workers):
            # (A call to a worker that died waits for the connection's
            # timeout, 30 s by default: the scheduler sees it go first.)
            gone = [w for w in plan.workers if w not in workers]
            if gone:
                raise WorkerLost(f"worker {gone[0]} left the cluster")

        partials = self.watch.outcome(all_of_them(), on_poll=still_there,
                                      deadline=deadline)
        if isinstance(partials, _Raised):
            if partials.unreachable:
                raise WorkerLost(repr(partials.error)) from partials.error
            raise TaskFailed(partials.error, "a call of the evaluation") \
                from partials.error
        for partial in partials:
            if isinstance(partial, _worker.Failure):
                if isinstance(partial.error, _worker.BlockMissing):
                    raise partial.error
                if partial.lost:
                    raise WorkerLost(f"{partial.worker}: {partial.error!r}")
                raise TaskFailed(partial.error,
                                 f"the evaluation on worker {partial.worker}")
        self.answered = True
        return _worker.add(*partials) if len(partials) > 1 else partials[0]

    def reaches(self, worker, timeout=5):
        """Whether the client can open a connection to ``worker`` (asks it
        for its identity, directly)."""
        async def ask():
            return await asyncio.wait_for(self.client.rpc(worker).identity(), timeout)

        try:
            self.watch.outcome(ask())
        except _UNREACHABLE:
            return False
        return True
