"""The distributed objective: broadcast theta, evaluate the blocks, reduce.

One evaluation of the data term sums every prepared block's share of it,
on the workers that hold the blocks, by the plan of :mod:`._placement`
(a star of the workers, or a tree of fan-in ``fan-in``). It travels one of
two ways:

- **calls** (:mod:`._calls`, where the client reaches the workers: the
  default): the client calls the workers' own RPC with theta, and they
  answer with their totals, worker to worker in a tree; the scheduler
  takes no part in an evaluation, only in setting up, in replacing a lost
  worker and in ending the fit;
- **a task graph** (:mod:`._graph`, where the client cannot reach the
  workers: ``direct-transfers: false``, a client made with
  ``direct_to_workers=False``, or a first call that fails where the same
  evaluation through the scheduler works, with a warning): one graph per
  evaluation, through the scheduler.

An evaluation that lost a worker, whose evaluation failed on a worker, or
whose blocks moved, is planned anew (where the blocks are now, once Dask
has recomputed those lost with their worker) and tried again
(``retries``), and one evaluation, tries included, ends by
``evaluation-timeout``. Either way the sums are added in plan order: for a
given placement, the same bits.
"""

import itertools
import time
from typing import NamedTuple

import numpy as np

from . import _placement, _worker
from ._calls import CallPath
from ._config import direct_transfers
from ._faults import (Cancelled, Deadline, KilledWorker, ParametersLost, TaskFailed,
                      WorkerLost, lost_data_error, reading_failed, retry_or_raise,
                      workers_of)
from ._graph import GraphPath
from .._namespace import NUMPY
from .._warnings import warn


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


class DistributedObjective:
    """The data term over blocks on the workers, one evaluation at a time.

    ``placed`` is the fit's :class:`Placed` blocks; ``spec`` is the
    :class:`~._worker.LossSpec` of the fit (its ``part``, ``weight_sum``
    and ``evaluation`` are set per evaluation here).
    """

    def __init__(self, client, placed, spec, settings, watch):
        self.client, self.placed, self.spec = client, placed, spec
        self.settings, self.watch = settings, watch
        self.evaluations = 0
        self._plans = None
        # Calls where the client may reach the workers, else a task graph.
        self.calls = (CallPath(client, watch, spec.token)
                      if direct_transfers(settings, client) else None)
        self.graph = GraphPath(client, placed.blocks, settings, watch)

    # ------------------------------------------------------------- planning
    def plan(self, part, deadline=None):
        """The plan of ``part``, from where the blocks are now."""
        if self._plans is None:
            locations, workers = self._where_blocks_are(deadline)
            self._plans = {
                name: _placement.plan(locations, p.blocks, self.settings.fan_in,
                                      workers, p.nbytes, self.settings.task_bytes)
                for name, p in self.placed.parts._asdict().items()
                if isinstance(p, Part)}
        return self._plans[part]

    def replan(self):
        """Look again where the blocks are before the next evaluation."""
        self._plans = None

    def _where_blocks_are(self, deadline=None):
        """The worker of each block, and the workers (:class:`WorkerInfo`).

        Calls evaluate each block where it is: they first wait until every
        block is on a live worker (Dask recomputes those lost with a
        worker, and the scheduler may not have seen a worker go yet). Task
        graphs run anywhere: a block whose holder is not known goes to
        None, anywhere.
        """
        blocks = self.placed.blocks
        while True:
            if self._data_lost():
                raise lost_data_error()
            self._check_read()
            if self.calls is not None:
                try:
                    self.watch.wait(blocks, deadline=deadline)
                except Cancelled as error:
                    raise lost_data_error() from error
            who_has = self.client.who_has(blocks)
            workers = self.watch.workers()
            locations = [_placement.where(placed, who_has.get(block.key) or ())
                         for placed, block in zip(self.placed.workers, blocks)]
            if self.calls is None or all(w in workers for w in locations):
                return locations, workers
            if deadline is not None:
                deadline.check()
            time.sleep(min(0.05, self.settings.poll_interval))

    def star(self, plan):
        """Whether an evaluation of ``plan`` is a star: the client sends the
        parameters to every worker and adds up their totals itself (two
        transfers on the way, where a tree takes four from two workers on),
        rather than a tree of fan-in ``fan_in`` (whose traffic at the
        client, the root and every node is bounded whatever the workers)."""
        return len(plan.workers) <= self.settings.star_workers

    # ----------------------------------------------------------- evaluating
    def terms(self, part, theta):
        """The sum of all blocks' shares of ``part`` at ``theta``: a
        :class:`~._worker.Partial` whose value is the loss (and, for
        ``"val"``, the accuracy) and whose grad is the data term's gradient
        (float64; None for ``"val"``)."""
        self.evaluations += 1
        self.watch.check()  # (calls to workers would not notice)
        spec = self.spec._replace(
            part=part, weight_sum=getattr(self.placed.parts, part).weight_sum,
            evaluation=self.evaluations)
        deadline = Deadline(self.settings.evaluation_timeout,
                            f"Evaluation {self.evaluations} of the loss")
        for attempt in itertools.count():
            deadline.check()
            try:
                plan = self.plan(part, deadline)
                result = self._attempt(spec, theta, plan, attempt, deadline)
            except _worker.BlockMissing:
                # (The blocks moved: stolen, rebalanced or recomputed.)
                if attempt >= self.settings.retries + 10:
                    raise
            except WorkerLost as error:
                if not self._reached_before(plan):
                    continue  # now through the scheduler
                retry_or_raise(error, attempt, self.settings, self._data_lost)
            except (KilledWorker, Cancelled, ParametersLost, TaskFailed) as error:
                self._check_read()
                retry_or_raise(error, attempt, self.settings, self._data_lost)
            else:
                if not result.planned:
                    self.replan()
                return result
            self.replan()

    def _attempt(self, spec, theta, plan, attempt, deadline):
        """One try of an evaluation, by calls or as a task graph."""
        if self.calls is not None:
            return self.calls.evaluate(spec, theta, plan, self.placed.blocks,
                                       self.star(plan), deadline)
        return self.graph.evaluate(spec, theta, plan, self.star(plan), attempt,
                                   deadline)

    def _reached_before(self, plan):
        """After a call that could not reach a worker: whether calls go on.

        Where no call of the fit has been answered yet, and a worker that
        the scheduler sees running does not answer the client either, the
        client cannot reach the workers (a gateway or a NAT between them):
        the fit goes on through the scheduler, with a warning.
        """
        calls = self.calls
        if calls.answered:
            return True
        running = [w for w, info in workers_of(self.client).items() if info.running]
        unreachable = [w for w in plan.workers if w in running and not calls.reaches(w)]
        # (A worker that died meanwhile does not answer either: the
        # scheduler has seen it go by the time a connection gave up.)
        still = workers_of(self.client) if unreachable else {}
        unreachable = [w for w in unreachable if w in still and still[w].running]
        if not unreachable:
            return True
        self.calls = None
        warn(
            f"Could not reach the workers directly (worker {unreachable[0]} does "
            "not answer the client, although the scheduler sees it running): a "
            "gateway or a NAT may lie between them. This fit evaluates through "
            "the scheduler instead, one task graph per evaluation (slower). "
            "Set the setting sk-twolayer.dask.direct-transfers to false (or "
            "make the client with direct_to_workers=False) to skip the try.",
            UserWarning)
        return False

    def _data_lost(self):
        # ("lost" is a block lost with its worker that the scheduler will
        # compute again; "cancelled", one it cannot.)
        return any(block.status == "cancelled" for block in self.placed.blocks)

    def _check_read(self):
        """The error of a block lost with its worker whose reading again
        failed, after Dask's tries (a source that timed out, say)."""
        for i, block in enumerate(self.placed.blocks):
            if block.status == "error":
                error = block.exception()
                raise reading_failed(i, "X", error, self.settings.retries,
                                     again=True) from error


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
