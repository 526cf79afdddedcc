"""The rows of a fit, held as blocks on the workers: the steps, in order.

:class:`DaskRows` is what the in-memory estimator's ``_fit`` reads its data
through (the interface of ``_InMemoryRows`` in
:mod:`sk_twolayer._classifier`), so that the whole fit (labels, class
weights, validation, solver, attributes) is the in-memory estimator's. It
puts the steps in order; each lives in the module named here:

1. **blocks** (:mod:`._inputs`): the user's collections as row blocks, X,
   y and the weights lined up; an in-memory validation set cut alike;
2. **room** (:func:`._placement.check_room`): a block too large for any
   worker is an error, before it is read (where Dask knows its length) and
   after;
3. **check** (:func:`._worker.check_block`, on the workers): each block is
   read from its source once and checked as the in-memory fit checks
   data; the client learns each block's length, labels and label weights,
   and nothing of length n_samples, and adds them up here;
4. **place** (:func:`._placement.balance`, then
   :func:`._placement.settle`): a worker for each block, so that each
   worker thread holds its share of the rows;
5. **prepare** (:func:`._worker.prepare_block`, on that worker): labels
   become class indices, class weights are folded into the sample weights,
   X is aligned in memory, and the validation rows are held out; the
   checked blocks are then released;
6. **parts** (:class:`._objective.Parts`): which blocks hold training and
   validation rows, and their weights;
7. **evaluate** (:class:`._objective.DistributedObjective`), once per
   evaluation of the loss;
8. **release** (:meth:`DaskRows.close`): when the fit ends, whatever its
   outcome, the scheduler forgets every task of the fit and the workers
   drop its scratch memory.

What can go wrong on the cluster is said as :mod:`._faults` says it.
"""

import uuid

import dask
import numpy as np
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import validate_data

from .._classifier import _check_validation_weight
from .._namespace import NUMPY
from . import _placement, _worker
from ._config import settings
from ._faults import (KilledWorker, TaskFailed, Watch, logger, reading_error,
                      reading_failed)
from ._inputs import is_dask, is_sparse, memory_blocks, meta, row_blocks
from ._objective import DistributedLoss, DistributedObjective, Parts, Placed

_NAMES = ("X", "y", "sample_weight")
_VALIDATION_NAMES = ("X_val", "y_val", "sample_weight_val")


class DaskRows:
    """The training rows of a fit, as blocks on the workers of ``client``.

    ``X``, ``y`` and ``sample_weight`` are the user's Dask collections, which
    the callbacks see, and the loss ignores: it knows its blocks.
    """

    ops = NUMPY

    def __init__(self, estimator, client, X, y, sample_weight, first_call):
        self.client = client
        self.settings = settings()
        self.watch = Watch(client, self.settings)
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.solver_weight = None
        self.token = uuid.uuid4().hex
        self._objective = self._placed = self._checked = None
        try:
            self._read(estimator, first_call)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------ 1-3: read, check
    def _read(self, estimator, first_call):
        X_meta = validate_data(estimator, meta(self.X), dtype=[np.float64, np.float32],
                               reset=first_call, ensure_min_samples=0)
        self.dtype = X_meta.dtype if first_call else estimator.coefs_[0].dtype
        self.n_features = X_meta.shape[1]
        if self.y is None:
            raise ValueError(
                f"{type(estimator).__name__} requires y to be passed, but the "
                "target y is None."
            )
        blocks = row_blocks(self.X, self.y, self.sample_weight)
        # The checked blocks stay on the workers until their prepared form
        # replaces them.
        self._checked, stats = self._check(blocks, is_sparse(self.X))
        self._n_rows = np.array([s.n_rows for s in stats], dtype=np.int64)
        if not self._n_rows.sum():
            raise ValueError(
                f"Found array with 0 sample(s) (shape=(0, {self.n_features})) "
                f"while a minimum of 1 is required by {type(estimator).__name__}."
            )
        labels = unique_labels(*[s.labels for s in stats if s.n_rows])
        _, labels = estimator._encode_labels(labels, first_call, False, None)
        mass = np.zeros(labels.size)
        for s in stats:
            np.add.at(mass, np.searchsorted(labels, s.labels), s.mass)
        self.labels = labels
        self._per_class = estimator._class_factors(labels, mass, incremental=False)

    def _check(self, blocks, sparse, names=_NAMES):
        """Futures of the blocks checked on the workers, and their
        :class:`~._worker.BlockStats`, with the room checked before and
        after reading (before only where Dask knows the lengths of dense
        blocks: a sparse block's size is known once it is read)."""
        workers = self.watch.workers()
        pause = (dask.config.get("distributed.worker.memory.pause", None)
                 or dask.config.get("distributed.worker.memory.terminate", None)
                 or 1.0)
        if not sparse:
            row = self.n_features * np.dtype(self.dtype).itemsize
            _placement.check_room([0 if np.isnan(n) else n * row
                                   for n in blocks.lengths], workers, pause, names[0])
        # (Dask tries the reading of a block again where it fails: a source
        # that timed out, say; the checks return bad data, never raise.)
        checked = self.watch.held(self.client.compute([
            dask.delayed(_worker.check_block, pure=False)(
                i, xb, blocks.y[i], None if blocks.sample_weight is None
                else blocks.sample_weight[i], self.dtype, names)
            for i, xb in enumerate(blocks.X)
        ], retries=self.settings.retries))
        stats = self._gather(self.watch.held(
            self.client.map(_worker.stats_of, checked, pure=False)), names[0])
        bad = [s.error for s in stats if s.error is not None]
        if bad:
            raise bad[0]
        _placement.check_room([s.nbytes for s in stats], workers, pause, names[0])
        return checked, stats

    def _gather(self, futures, name):
        """The results of ``futures``, one per row block of ``name``; a
        block that could not be read, after Dask's tries (``retries``), is
        an error that names it, its cause and the setting."""
        try:
            return self.watch.gather(futures)
        except KilledWorker as error:
            raise reading_error() from error
        except TaskFailed as failed:
            erred = [i for i, f in enumerate(futures) if f.status == "error"]
            raise reading_failed(erred[0] if erred else "?", name, failed.error,
                                 self.settings.retries) from failed.error

    # --------------------------------------------------- the fit's interface
    @property
    def n_samples(self):
        return self._placed.parts.train.n_rows

    def objective(self, loss):
        """The in-memory loss's penalty, with its data term on the workers."""
        self._spec = _worker.LossSpec(
            token=self.token, part=None, dtype=self.dtype,
            shape=(loss.layout.n_features, loss.layout.n_hidden,
                   loss.layout.n_classes),
            activation=loss.activation, uniform=False, weight_sum=None)
        return DistributedLoss(self.terms, loss.layout, loss.activation,
                               loss.penalty)

    def terms(self, part, theta):
        """:meth:`DistributedObjective.terms` of the prepared blocks."""
        if self._objective is None:
            self._objective = DistributedObjective(
                self.client, self._placed,
                self._spec._replace(uniform=self._placed.parts.uniform),
                self.settings, self.watch)
        return self._objective.terms(part, theta)

    def hold_out(self, estimator, validation, rng, incremental):
        """Place and prepare the blocks; the validation dict, or None.

        Early stopping holds out each row with probability
        ``validation_fraction``, drawn from a stream keyed by the fit's
        random generator and indexed by the row's position, so that the
        same rows are held out whatever the chunking and the workers. A
        validation set passed as ``X_val, y_val`` (Dask or in memory) is
        checked against the fitted features as in memory, and kept on the
        workers as well.
        """
        plan = estimator._validation_plan(validation, int(self._n_rows.sum()),
                                          incremental)
        given = self._given(estimator, validation) if plan == "given" else []
        split = None
        if plan not in (None, "given"):
            split = (int(rng.randint(np.iinfo(np.int64).max, dtype=np.int64)),
                     estimator.validation_fraction)
        blocks, placed = self._prepare(split)
        blocks += given
        placed += [None] * len(given)
        parts = Parts.of(self._summaries(blocks, placed), plan is not None)
        if parts.val is not None:
            _check_validation_weight(parts.val.weight_sum)
        self._placed = Placed(blocks, placed, parts)
        if plan is None:
            return None
        # X, y, sw: ignored by the distributed loss, which knows its blocks.
        return {"X": None, "y": None, "sw": None, "scores": [], "losses": []}

    def close(self):
        """Leave nothing of the fit on the cluster: cancel its futures (the
        scheduler forgets their tasks), and have the workers drop the fit's
        scratch memory. Called when the fit ends, whatever the outcome."""
        self._objective = self._placed = self._checked = None
        try:
            self.watch.release()
            if self.client.status == "running":
                self.client.run(_worker.forget, self.token, on_error="ignore")
        except Exception as error:  # (never in place of the fit's own error)
            logger.warning("Could not release the fit's tasks and scratch memory "
                           "on the cluster: %r", error)

    # ------------------------------------------------------- 4-5: place, prepare
    def _prepare(self, split):
        """The blocks prepared on the workers they are placed on: futures
        of :class:`~._worker.Prepared`, and those workers."""
        placed = self._placement()
        offsets = np.concatenate([[0], np.cumsum(self._n_rows)[:-1]])
        blocks = self.watch.held([
            self.client.submit(_worker.prepare_block, checked, int(offset),
                               labels=self.labels, per_class=self._per_class,
                               split=split, pure=False, retries=self.settings.retries,
                               **_placement.restriction(worker))
            for checked, offset, worker in zip(self._checked, offsets, placed)
        ])
        # The prepared blocks replace the checked ones, which the cluster
        # releases once each is prepared (and recomputes from their source,
        # should a prepared block be lost).
        self._checked = None
        if self.settings.balance:
            _placement.settle(self.client, self.watch, blocks, placed,
                              self.settings.balance_rounds)
            self.watch.held(blocks)
        return blocks, placed

    def _placement(self):
        """A worker for each checked block: where it is, or (``balance``)
        where each worker thread gets its share of the rows."""
        self.watch.wait(self._checked)
        who_has = self.client.who_has(self._checked)
        holders = [who_has.get(block.key) or () for block in self._checked]
        if not self.settings.balance:
            return [_placement.where(None, h) for h in holders]
        nthreads = {w: info.nthreads for w, info in self.watch.workers().items()}
        return _placement.balance(nthreads, holders, self._n_rows)

    def _summaries(self, blocks, placed):
        """Each prepared block's summary, computed where the block is (a task
        that ran elsewhere would fetch the whole block for it)."""
        self.watch.wait(blocks)
        who_has = self.client.who_has(blocks)
        where = [_placement.where(worker, who_has.get(block.key) or ())
                 for block, worker in zip(blocks, placed)]
        return self._gather(self.watch.held([
            self.client.submit(_worker.summary_of, block, pure=False,
                               **_placement.restriction(worker))
            for block, worker in zip(blocks, where)
        ]), "X")

    # ---------------------------------------------------- the validation set
    def _given(self, estimator, validation):
        """The user's validation set (Dask or in memory, dense or sparse, of
        any width), checked against the fitted features as in memory, then
        checked and prepared on the workers."""
        X_val, y_val, sw_val = validation
        # Names, their order, the number of features and the dtype kinds
        # checked as in memory; the values on the workers, block by block.
        if is_dask(X_val):
            validate_data(estimator, meta(X_val), reset=False, ensure_min_samples=0,
                          dtype=[np.float64, np.float32])
            blocks, sparse = row_blocks(X_val, y_val, sw_val, _VALIDATION_NAMES), \
                is_sparse(X_val)
        else:
            X_val = validate_data(estimator, X_val, reset=False, accept_sparse="csr",
                                  dtype=[np.float64, np.float32])
            blocks = memory_blocks(X_val, y_val, sw_val, _VALIDATION_NAMES)
            sparse = not isinstance(X_val, np.ndarray)
        checked, _ = self._check(blocks, sparse, _VALIDATION_NAMES)
        return self.watch.held([
            self.client.submit(_worker.prepare_block, block, 0, labels=self.labels,
                               per_class=None, split="val", pure=False,
                               retries=self.settings.retries)
            for block in checked])
