"""An evaluation as one task graph, through the scheduler.

The path of a fit whose client cannot reach the workers directly (a gateway
or a NAT between them; ``direct-transfers: false``, or a client made with
``direct_to_workers=False``): each evaluation reaches the scheduler as one
task graph over the blocks that the workers hold
(:class:`~._placement.Plan`), and theta and the totals travel through the
scheduler. (Where the client reaches the workers, :mod:`._calls` keeps the
scheduler out of the evaluations.)

- **broadcast**: on a few workers (``star-workers``), the client sends
  theta to each; on more, theta leaves the client once, to the root
  worker, and every other worker gets it from its parent in a tree of
  fan-in ``fan_in`` (a ``relay`` task leaves a copy on each inner node,
  and the leaves' tasks fetch it from their parent), so that no worker
  sends it more than ``fan_in`` times, whatever the number of workers;
- **evaluate**: one task per worker (``worker_terms``), which evaluates
  its blocks through the in-memory loss on all the worker's threads at
  once; the scheduler's work grows with the workers, not their threads.
  Where a worker's rows do not fit in memory at once, a task per group of
  blocks of at most ``task-size``, between which Dask can spill;
- **reduce**: each worker adds up its tasks' partial sums, then (a tree)
  those of its children, in a fixed order; the client receives one loss
  and one gradient (a star: each worker's, which it adds in plan order).

Tasks prefer the worker of their blocks (or node) but may run anywhere, so
that a lost worker never leaves one waiting.
"""

import asyncio
from typing import NamedTuple

import numpy as np
from dask.highlevelgraph import HighLevelGraph

from . import _placement, _worker
from ._faults import ParametersLost

# What sending the parameters to a worker that leaves meanwhile raises:
# distributed's CommClosedError is an OSError; an address the scheduler
# no longer knows, a KeyError; a worker that never answers, a timeout.
_SENDING = (OSError, KeyError, TimeoutError, asyncio.TimeoutError)
# How long theta waits to be sent to a worker that is not running (paused,
# or gone but not yet seen to be) before the evaluation is planned anew.
_SEND_TIMEOUT = 5  # seconds


class Broadcast(NamedTuple):
    """The parameters of the last evaluation, as sent to the workers of a
    plan (as a star, or down a tree): ``copies[k]`` is the future worker
    ``k``'s tasks take them from."""

    theta: object
    workers: tuple
    star: bool
    copies: list


class GraphPath:
    """Evaluations of the prepared ``blocks`` (futures) as task graphs.

    ``direct``: scatter theta and gather the totals directly between the
    client and the workers (where the client reaches them, but a setting
    asks for this path); otherwise through the scheduler.
    """

    def __init__(self, client, blocks, settings, watch, direct=False):
        self.client, self.blocks = client, blocks
        self.settings, self.watch, self.direct = settings, watch, direct
        self._last = None  # the last Broadcast

    def evaluate(self, spec, theta, plan, star, attempt, deadline=None):
        """One evaluation, as one task graph: its :class:`~._worker.Partial`.

        Raises what a wait raises (``KilledWorker``, lost futures,
        :class:`~._faults.TaskFailed`, :class:`~._faults.ParametersLost`),
        for the objective to try again.
        """
        totals = self._submit(spec, theta, plan, star, attempt, deadline)
        partials = self.watch.gather(totals, direct=self.direct, deadline=deadline)
        # (One total from a tree; from a star, the workers', in plan order.)
        return _worker.add(*partials) if len(partials) > 1 else partials[0]

    def _submit(self, spec, theta, plan, star, attempt, deadline=None):
        """Send theta out, and submit one evaluation as one task graph; the
        futures of its totals: the root's (a tree), or each worker's (a
        star).

        Each worker evaluates its blocks in one task (``worker_terms``: the
        groups of :func:`~._placement.tasks` at once, on its threads; more
        tasks only where its rows do not fit in memory at once), and adds
        its children's totals to its own (``add``); inner nodes of a tree
        pass theta on (``relay``). Tasks prefer their worker but may run
        anywhere, so that a lost worker never leaves one waiting.
        """
        prefix = f"sk-twolayer-{spec.part}-{spec.token}-{spec.evaluation}-{attempt}"
        copies, relays = self._broadcast(theta, plan, prefix, reuse=attempt == 0,
                                         star=star, deadline=deadline)
        graph = _Graph(prefix)
        for k in relays:  # theta down the tree, to its inner nodes
            graph.add(plan.workers[k], copies[k],
                      (_worker.relay, copies[plan.parent(k)]), priority=1)
        totals = {}
        for k in reversed(range(len(plan.workers))):  # leaves first
            worker = plan.workers[k]
            inputs = []
            for j, task in enumerate(plan.tasks[k]):
                blocks = [self.blocks[i] for group in task for i in group]
                ends = np.cumsum([len(group) for group in task])
                positions = tuple(tuple(range(end - len(group), end))
                                  for group, end in zip(task, ends))
                key = f"{prefix}-evaluate-{k}-{j}"
                graph.add(worker, key, (_worker.worker_terms, spec, copies[k], worker,
                                        positions, *blocks))
                inputs.append(key)
            if not star:
                inputs += [totals.pop(child) for child in plan.children(k)]
            totals[k] = self._sum(graph, worker, inputs, f"{prefix}-sum-{k}")
        outputs = [totals[k] for k in sorted(totals)]
        futures = self.watch.held(self.client.get(
            graph.hlg(), outputs + [copies[k] for k in relays], sync=False))
        # The relays' copies, kept with theta for a validation pass at it.
        relayed = dict(zip([copies[k] for k in relays], futures[len(outputs):]))
        self._last = self._last._replace(
            copies=[relayed.get(c, c) if isinstance(c, str) else c for c in copies])
        return futures[:len(outputs)]

    def _broadcast(self, theta, plan, prefix, reuse, star, deadline=None):
        """For each worker of ``plan``, where its tasks take theta from; and
        the workers that are to relay it in this evaluation's graph.

        A star: a copy sent to each running worker. A tree: theta leaves the client
        once, to the root worker; each inner node of the tree gets a copy
        from its parent (a ``relay`` task, whose key is its entry), and a
        leaf's tasks fetch theirs from its parent (the parent's entry). A
        validation pass at the point just evaluated reuses the copies of
        that evaluation.
        """
        last = self._last
        if (reuse and last is not None and last.workers == plan.workers
                and last.star == star and np.array_equal(last.theta, theta)):
            return last.copies, []
        if star:
            # (A worker that runs no task now, paused or unknown, gets none:
            # its tasks run elsewhere.)
            copies = self._scatter(theta, plan.workers[:max(plan.running, 1)],
                                   deadline)
            copies += copies[:1] * (len(plan.workers) - len(copies))
            relays = []
        else:
            copies = self._scatter(theta, plan.workers[:1], deadline)
            relays = [k for k in range(1, len(plan.workers)) if len(plan.children(k))]
            for k in range(1, len(plan.workers)):
                copies.append(f"{prefix}-relay-{k}" if k in relays
                              else copies[plan.parent(k)])
        self._last = Broadcast(theta.copy(), plan.workers, star, copies)
        return copies, relays

    def _scatter(self, theta, workers, deadline=None):
        """A copy of theta sent to each of ``workers`` (None: anywhere), in
        one call (one round trip to the scheduler, whatever the workers).

        A worker that has left, or left while it is sent, or is paused,
        raises :class:`~._faults.ParametersLost`: the evaluation is planned
        anew and tried again. (Where fewer workers took copies than were
        asked for, the others' tasks fetch one.)
        """
        named = [w for w in workers if w is not None]
        timeout = _SEND_TIMEOUT if named else self.settings.no_workers_timeout
        left = None if deadline is None else deadline.left()
        if left is not None:
            timeout = max(min(timeout, left), 0.001)
        try:
            futures = self.watch.held(self.client.scatter(
                [theta] * len(workers), hash=False, workers=named or None,
                direct=self.direct, timeout=timeout))
            if len(futures) == 1:
                return futures
            who_has = self.client.who_has(futures)
        except _SENDING as error:
            raise ParametersLost(repr(error)) from error
        held = {w: f for f in futures for w in who_has.get(f.key, ())}
        return [held.get(w, futures[0]) for w in workers]

    def _sum(self, graph, worker, inputs, key):
        """The key of the sum of ``inputs`` on ``worker``, in their order
        (the one input itself where there is one).

        A chain of ``add`` tasks, each taking the running sum and up to
        ``fan_in`` more inputs: each runs as soon as its inputs are there,
        so the worker's total is ready one task after its last input, and
        at most ``fan_in`` partial sums wait in memory to be added.
        """
        total, rest = inputs[0], inputs[1:]
        step = self.settings.fan_in
        for j in range(0, len(rest), step):
            graph.add(worker, f"{key}-{j}", (_worker.add, total, *rest[j:j + step]),
                      priority=1)
            total = f"{key}-{j}"
        return total



class _Graph:
    """One evaluation's tasks, sent to the scheduler as one graph.

    A layer per worker and priority, annotated with the worker (preferred,
    not required: ``allow_other_workers``), as Dask's ``annotate`` does for
    the collections built under it.
    """

    def __init__(self, prefix):
        self.prefix, self.layers = prefix, {}

    def add(self, worker, key, task, priority=0):
        self.layers.setdefault((worker, priority), {})[key] = task

    def hlg(self):
        layers, annotations = {}, {}
        for n, ((worker, priority), tasks) in enumerate(self.layers.items()):
            name = f"{self.prefix}-layer-{n}"
            layers[name] = tasks
            annotations[name] = dict(_placement.restriction(worker),
                                     **({"priority": priority} if priority else {}))
        graph = HighLevelGraph(layers, {name: set() for name in layers})
        for name, annotation in annotations.items():
            graph.layers[name].annotations = annotation or None
        return graph
