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
from ._faults import Cancelled, KilledWorker, ParametersLost, retry_or_raise
from .._namespace import NUMPY

# What sending the parameters to a worker that leaves meanwhile raises:
# distributed's CommClosedError is an OSError; an address the scheduler
# no longer knows, a KeyError; a worker that never answers, a timeout.
_SENDING = (OSError, KeyError, TimeoutError, asyncio.TimeoutError)


class Part(NamedTuple):
    """The blocks that hold rows of one part ("train" or "val"), the weight
    of all those rows (the denominator of the part's mean), the memory each
    block's rows of the part take (by block index), and their count."""

    blocks: tuple
    weight_sum: float
    nbytes: dict
    n_rows: int


class Parts(NamedTuple):
    """The training rows and the validation rows (None without validation)
    of the prepared blocks; ``uniform``: the training rows' weights are all
    equal and positive, so that they are left out (the weighted mean is the
    plain mean, as in memory)."""

    train: Part
    val: Part | None
    uniform: bool

    @classmethod
    def of(cls, summaries, validation):
        """The parts of blocks whose summaries (``_worker.Summary`` of
        ``"train"`` and ``"val"``, by block) are given; ``validation``:
        whether the fit has validation rows."""
        def part(name):
            chosen = tuple(i for i, s in enumerate(summaries) if s[name].n)
            return Part(chosen,
                        float(sum(summaries[i][name].weight for i in chosen)),
                        {i: summaries[i][name].nbytes for i in chosen},
                        int(sum(summaries[i][name].n for i in chosen)))

        train = part("train")
        if not train.blocks:
            raise ValueError("Every row was held out for validation: lower "
                             "validation_fraction.")
        rows = [summaries[i]["train"] for i in train.blocks]
        uniform = bool(min(s.low for s in rows) == max(s.high for s in rows) > 0)
        if uniform:
            train = train._replace(weight_sum=float(train.n_rows))
        return cls(train, part("val") if validation else None, uniform)


class Placed(NamedTuple):
    """The prepared blocks of a fit: futures of :class:`~._worker.Prepared`,
    the worker each was placed on (None: anywhere), and their parts."""

    blocks: list
    workers: list
    parts: Parts


class Broadcast(NamedTuple):
    """The parameters of the last evaluation, as sent to the workers of a
    plan: ``copies[k]`` is the future worker ``k``'s tasks take them from."""

    theta: object
    workers: tuple
    copies: list


class DistributedObjective:
    """The data term over blocks on the workers, one evaluation at a time.

    ``placed`` is the fit's :class:`Placed` blocks; ``spec`` is the
    :class:`~._worker.LossSpec` of the fit (its ``part`` and ``weight_sum``
    are set per part here).
    """

    def __init__(self, client, placed, spec, settings, watch):
        self.client, self.placed, self.spec = client, placed, spec
        self.settings, self.watch = settings, watch
        self.evaluations = 0
        self._plans = None
        self._last = None  # the last Broadcast

    # ------------------------------------------------------------- planning
    def plan(self, part):
        """The plan of ``part``, from where the blocks are now."""
        if self._plans is None:
            blocks = self.placed.blocks
            who_has = self.client.who_has(blocks)
            locations = [_placement.where(placed, who_has.get(block.key) or ())
                         for placed, block in zip(self.placed.workers, blocks)]
            workers = self.watch.workers()
            self._plans = {
                name: _placement.plan(locations, p.blocks, self.settings.fan_in,
                                      workers, p.nbytes, self.settings.task_bytes)
                for name, p in self.placed.parts._asdict().items()
                if isinstance(p, Part)}
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
                result = self.watch.gather(
                    root, timeout=self.settings.evaluation_timeout,
                    what=f"Evaluation {self.evaluations} of the loss")
            except (KilledWorker, Cancelled, ParametersLost) as error:
                retry_or_raise(error, attempt, self.settings, self._data_lost)
                self.replan()
                continue
            if not result.planned:
                self.replan()
            return result

    def _task(self, *args, **kwargs):
        """``client.submit``, kept track of (so that a fit that fails leaves
        none of its tasks behind)."""
        return self.watch.held(self.client.submit(*args, **kwargs))

    def _data_lost(self):
        # ("lost" is a block lost with its worker that the scheduler will
        # compute again; "cancelled", one it cannot.)
        return any(block.status == "cancelled" for block in self.placed.blocks)

    def _submit(self, part, theta, plan, attempt):
        """Submit one evaluation's tasks; the future of its total."""
        spec = self.spec._replace(part=part,
                                  weight_sum=getattr(self.placed.parts, part).weight_sum)
        prefix = (f"sk-twolayer-{part}-{spec.token}-{self.evaluations}-{attempt}")
        copies = self._broadcast(theta, plan, prefix, reuse=attempt == 0)
        sums = {}
        for k in reversed(range(len(plan.workers))):  # leaves first
            worker = plan.workers[k]
            where = _placement.restriction(worker)
            terms = [
                self._task(
                    _worker.block_terms, spec, copies[k], worker,
                    *[self.placed.blocks[i] for i in task],
                    key=f"{prefix}-block-{task[0]}",
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
        last = self._last
        if (reuse and last is not None and last.workers == plan.workers
                and np.array_equal(last.theta, theta)):
            return last.copies  # (a validation pass at the point just evaluated)
        copies = [self._scatter(theta, plan.workers[0])]
        for k in range(1, len(plan.workers)):
            parent = copies[plan.parent(k)]
            if len(plan.children(k)):
                parent = self._task(
                    _worker.relay, parent, key=f"{prefix}-relay-{k}", pure=False,
                    priority=1, **_placement.restriction(plan.workers[k]))
            copies.append(parent)
        self._last = Broadcast(theta.copy(), plan.workers, copies)
        return copies

    def _scatter(self, theta, root):
        """theta, sent to the worker ``root`` (or anywhere, where it has
        left or is paused). A worker that leaves while it is sent raises
        :class:`~._faults.ParametersLost`: the evaluation is tried again."""
        workers = self.watch.workers()  # (waits while none runs)
        running = root in workers and workers[root].running
        try:
            return self.watch.held(self.client.scatter(
                theta, hash=False, workers=[root] if running else None,
                timeout=self.settings.no_workers_timeout))
        except _SENDING as error:
            raise ParametersLost(repr(error)) from error

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
            total = self._task(_worker.add, total, *rest[j:j + step],
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
