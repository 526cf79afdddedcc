"""The distributed objective: broadcast theta, evaluate the blocks, reduce.

One evaluation of the data term reaches the scheduler as one task graph
over the blocks that the workers hold (:class:`~._placement.Plan`), with
theta and the totals sent between the client and the workers directly
(``direct-transfers``), not through the scheduler:

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
that a lost worker never leaves one waiting; an evaluation whose tasks ran
elsewhere makes the next one look again where the blocks are.
"""

import asyncio
import itertools
from typing import NamedTuple

import numpy as np
from dask.highlevelgraph import HighLevelGraph

from . import _placement, _worker
from ._faults import Cancelled, KilledWorker, ParametersLost, retry_or_raise
from .._namespace import NUMPY

# What sending the parameters to a worker that leaves meanwhile raises:
# distributed's CommClosedError is an OSError; an address the scheduler
# no longer knows, a KeyError; a worker that never answers, a timeout.
_SENDING = (OSError, KeyError, TimeoutError, asyncio.TimeoutError)
# How long theta waits to be sent to a worker that is not running (paused,
# or gone but not yet seen to be) before the evaluation is planned anew.
_SEND_TIMEOUT = 5  # seconds


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
    plan (as a star, or down a tree): ``copies[k]`` is the future worker
    ``k``'s tasks take them from."""

    theta: object
    workers: tuple
    star: bool
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
                totals = self._submit(part, theta, plan, attempt)
                partials = self.watch.gather(
                    totals, direct=self.settings.direct,
                    timeout=self.settings.evaluation_timeout,
                    what=f"Evaluation {self.evaluations} of the loss")
            except (KilledWorker, Cancelled, ParametersLost) as error:
                retry_or_raise(error, attempt, self.settings, self._data_lost)
                self.replan()
                continue
            # (One total from a tree; from a star, the workers', in plan order.)
            result = _worker.add(*partials) if len(partials) > 1 else partials[0]
            if not result.planned:
                self.replan()
            return result

    def _data_lost(self):
        # ("lost" is a block lost with its worker that the scheduler will
        # compute again; "cancelled", one it cannot.)
        return any(block.status == "cancelled" for block in self.placed.blocks)

    def star(self, plan):
        """Whether an evaluation of ``plan`` is a star: the client sends the
        parameters to every worker and adds up their totals itself (two
        transfers on the way, where a tree takes four from two workers on),
        rather than a tree of fan-in ``fan_in`` (whose traffic at the
        client, the root and every node is bounded whatever the workers)."""
        return len(plan.workers) <= self.settings.star_workers

    def _submit(self, part, theta, plan, attempt):
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
        spec = self.spec._replace(part=part,
                                  weight_sum=getattr(self.placed.parts, part).weight_sum)
        prefix = f"sk-twolayer-{part}-{spec.token}-{self.evaluations}-{attempt}"
        star = self.star(plan)
        copies, relays = self._broadcast(theta, plan, prefix, reuse=attempt == 0,
                                         star=star)
        graph = _Graph(prefix)
        for k in relays:  # theta down the tree, to its inner nodes
            graph.add(plan.workers[k], copies[k],
                      (_worker.relay, copies[plan.parent(k)]), priority=1)
        totals = {}
        for k in reversed(range(len(plan.workers))):  # leaves first
            worker = plan.workers[k]
            inputs = []
            for j, task in enumerate(plan.tasks[k]):
                blocks = [self.placed.blocks[i] for group in task for i in group]
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

    def _broadcast(self, theta, plan, prefix, reuse, star):
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
            copies = self._scatter(theta, plan.workers[:max(plan.running, 1)])
            copies += copies[:1] * (len(plan.workers) - len(copies))
            relays = []
        else:
            copies = self._scatter(theta, plan.workers[:1])
            relays = [k for k in range(1, len(plan.workers)) if len(plan.children(k))]
            for k in range(1, len(plan.workers)):
                copies.append(f"{prefix}-relay-{k}" if k in relays
                              else copies[plan.parent(k)])
        self._last = Broadcast(theta.copy(), plan.workers, star, copies)
        return copies, relays

    def _scatter(self, theta, workers):
        """A copy of theta sent to each of ``workers`` (None: anywhere), in
        one call (one round trip to the scheduler, whatever the workers).

        A worker that has left, or left while it is sent, or is paused,
        raises :class:`~._faults.ParametersLost`: the evaluation is planned
        anew and tried again. (Where fewer workers took copies than were
        asked for, the others' tasks fetch one.)
        """
        named = [w for w in workers if w is not None]
        try:
            futures = self.watch.held(self.client.scatter(
                [theta] * len(workers), hash=False, workers=named or None,
                direct=self.settings.direct,
                timeout=_SEND_TIMEOUT if named else self.settings.no_workers_timeout))
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
