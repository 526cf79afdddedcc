"""The distributed objective: broadcast theta, evaluate the blocks, reduce.

One evaluation of the data term is one small task graph over the blocks
that the workers hold (:class:`~._placement.Plan`):

- **broadcast**: theta leaves the client once, scattered to the root
  worker; every other worker gets it from its parent in a tree of fan-in
  ``fan_in`` (a ``relay`` task leaves a copy on each inner node, and the
  leaves' tasks fetch it from their parent), so no worker sends it more
  than ``fan_in`` times, whatever the number of workers;
- **evaluate**: one task per block, where the block is, through the
  in-memory loss (``block_terms``): no task needs more than one block in
  memory, so Dask can spill the others;
- **reduce**: each worker adds up its blocks' partial sums, then the
  partial sums of its children in the tree, in a fixed order; the client
  receives one loss and one gradient.

Tasks prefer the worker of their block (or node) but may run anywhere, so
that a lost worker never leaves one waiting; an evaluation whose tasks ran
elsewhere makes the next one look again where the blocks are.
"""

import asyncio
import itertools
from typing import NamedTuple

import numpy as np

from . import _placement, _worker
from ._faults import Cancelled, KilledWorker, retry_or_raise
from .._namespace import NUMPY


class Part(NamedTuple):
    """The blocks that hold rows of one part ("train" or "val"), the weight
    of all those rows (the denominator of the part's mean), and the memory
    each block's rows of the part take (by block index)."""

    blocks: tuple
    weight_sum: float
    nbytes: dict


class DistributedObjective:
    """The data term over blocks on the workers, one evaluation at a time.

    ``blocks`` are futures of :class:`~._worker.Prepared` blocks, and
    ``placed[i]`` the worker block ``i`` was placed on; ``parts`` maps
    ``"train"`` (and ``"val"``) to a :class:`Part`; ``spec`` is the
    :class:`~._worker.LossSpec` of the fit (its ``part`` and
    ``weight_sum`` are set per part here).
    """

    def __init__(self, client, blocks, placed, parts, spec, settings, watch):
        self.client, self.blocks, self.placed = client, blocks, placed
        self.parts, self.spec = parts, spec
        self.settings, self.watch = settings, watch
        self.evaluations = 0
        self._plans = None
        self._last = None  # (theta, workers, copies) of the last broadcast

    # ------------------------------------------------------------- planning
    def plan(self, part):
        """The plan of ``part``, from where the blocks are now."""
        if self._plans is None:
            who_has = self.client.who_has(self.blocks)
            locations = [_placement.where(placed, who_has.get(block.key) or ())
                         for placed, block in zip(self.placed, self.blocks)]
            workers = self.client.scheduler_info()["workers"]
            nthreads = {w: info["nthreads"] for w, info in workers.items()}

            def task_bytes(worker):
                # A task's blocks, in memory at once, take at most an eighth
                # of the worker's memory limit per thread: well below the
                # 60% at which Dask starts to spill.
                limit = (workers.get(worker) or {}).get("memory_limit") or np.inf
                return min(self.settings.task_bytes,
                           limit / (8 * nthreads.get(worker, 1)))

            self._plans = {
                name: _placement.plan(locations, p.blocks, self.settings.fan_in,
                                      nthreads, p.nbytes, task_bytes)
                for name, p in self.parts.items()}
        return self._plans[part]

    def replan(self):
        """Look again where the blocks are before the next evaluation."""
        self._plans = None

    # ----------------------------------------------------------- evaluating
    def terms(self, part, theta):
        """The sum of all blocks' shares of ``part`` at ``theta``: a
        :class:`~._worker.Partial` whose value is the loss (and, for
        ``"val"``, the accuracy) and whose grad is the data term's gradient
        (float64; None for ``"val"``)."""
        self.evaluations += 1
        for attempt in itertools.count():
            plan = self.plan(part)
            try:
                root = self._submit(part, theta, plan, attempt)
                result = self.watch.gather(root)
            except (KilledWorker, Cancelled) as error:
                retry_or_raise(error, attempt, self.settings, self._data_lost)
                self.replan()
                continue
            if not result.planned:
                self.replan()
            return result

    def _data_lost(self):
        # ("lost" is a block lost with its worker that the scheduler will
        # compute again; "cancelled", one it cannot.)
        return any(block.status == "cancelled" for block in self.blocks)

    def _submit(self, part, theta, plan, attempt):
        """Submit one evaluation's tasks; the future of its total."""
        spec = self.spec._replace(part=part,
                                  weight_sum=self.parts[part].weight_sum)
        prefix = (f"sk-twolayer-{part}-{spec.token}-{self.evaluations}-{attempt}")
        copies = self._broadcast(theta, plan, prefix, reuse=attempt == 0)
        sums = {}
        for k in reversed(range(len(plan.workers))):  # leaves first
            worker = plan.workers[k]
            where = _placement.restriction(worker)
            terms = [
                self.client.submit(
                    _worker.block_terms, spec, copies[k], worker,
                    *[self.blocks[i] for i in task], key=f"{prefix}-block-{task[0]}",
                    pure=False, **where)
                for task in plan.tasks[k]
            ]
            inputs = terms + [sums.pop(child) for child in plan.children(k)]
            sums[k] = self._sum(inputs, f"{prefix}-sum-{k}", where)
        return sums[0]

    def _broadcast(self, theta, plan, prefix, reuse):
        """For each worker of ``plan``, the future its tasks take theta from.

        theta leaves the client once, to the root worker. Only the inner
        nodes of the tree keep a copy (a ``relay`` task): a leaf's tasks
        fetch theirs from its parent.
        """
        if reuse and self._last is not None:
            last_theta, workers, copies = self._last
            if workers == plan.workers and np.array_equal(last_theta, theta):
                return copies  # (a validation pass at the point just evaluated)
        copies = [self._scatter(theta, plan.workers[0])]
        for k in range(1, len(plan.workers)):
            parent = copies[plan.parent(k)]
            if len(plan.children(k)):
                parent = self.client.submit(
                    _worker.relay, parent, key=f"{prefix}-relay-{k}", pure=False,
                    priority=1, **_placement.restriction(plan.workers[k]))
            copies.append(parent)
        self._last = (theta.copy(), plan.workers, copies)
        return copies

    def _scatter(self, theta, root):
        """theta, sent to the worker ``root`` (or, if it has left, anywhere)."""
        while True:
            if root not in self.watch.workers():  # (waits while there are none)
                root = None
            try:
                return self.client.scatter(
                    theta, hash=False, workers=None if root is None else [root],
                    timeout=self.settings.no_workers_timeout)
            except (TimeoutError, asyncio.TimeoutError):  # it left after all
                root = None

    def _sum(self, inputs, key, where):
        """The sum of ``inputs`` on one worker, in their order.

        A chain of ``add`` tasks, each taking the running sum and up to
        ``fan_in`` more inputs: each runs as soon as its inputs are there,
        while later blocks are still being evaluated, so the worker's total
        is ready one task after its last input, and at most ``fan_in``
        partial sums wait in memory to be added.
        """
        total, rest = inputs[0], inputs[1:]
        step = self.settings.fan_in
        for j in range(0, len(rest), step):
            total = self.client.submit(_worker.add, total, *rest[j:j + step],
                                       key=f"{key}-{j}", pure=False, priority=1,
                                       **where)
        return total


class DistributedLoss:
    """``TwoLayerLoss``'s interface, with the data term summed on the workers.

    ``terms(part, theta)`` is :meth:`DistributedObjective.terms` (once the
    blocks are ready). The penalty is the in-memory loss's own, added once
    on the client. ``X``, ``y`` and ``sample_weight`` are accepted and
    ignored: the rows are the blocks on the workers.
    """

    ops = NUMPY

    def __init__(self, terms, layout, activation, penalty):
        self.terms = terms
        self.layout, self.activation, self.penalty = layout, activation, penalty

    def loss_gradient(self, theta, X=None, y=None, sample_weight=None, grad=None):
        total = self.terms("train", theta)
        if grad is None:
            grad = np.empty_like(theta)
        grad[...] = total.grad
        self.penalty.add_gradient(theta, grad)
        return float(total.value[0]) + self.penalty.value(theta), grad

    def evaluate(self, theta, X=None, y=None, sample_weight=None):
        total = self.terms("val", theta)
        return float(total.value[0]), float(total.value[1])
