"""The rows of a fit, held as blocks on the workers.

:class:`DaskRows` is what the in-memory estimator's ``_fit`` reads its data
through (the interface of ``_InMemoryRows`` in
:mod:`sk_twolayer._classifier`), so that the whole fit (labels, class
weights, validation, solver, attributes) is the in-memory estimator's. What
it does with the blocks, in order:

1. **check**: each block is read from its source once and checked as the
   in-memory fit checks data; the client learns each block's length,
   labels and label weights, and nothing of length n_samples;
2. **place**: each block gets a worker, so that each worker thread holds
   its share of the rows (:func:`~._placement.balance`);
3. **prepare**: on that worker, labels become class indices, class weights
   are folded into the sample weights, X is aligned in memory, and the
   validation rows are held out; the checked blocks are then released;
4. **evaluate**: :class:`~._objective.DistributedObjective`, once per
   evaluation of the loss.
"""

import uuid

import dask
import dask.array as da
import numpy as np
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import validate_data

from .._classifier import _check_validation_weight
from .._namespace import NUMPY
from . import _placement, _worker
from ._config import settings
from ._faults import KilledWorker, Watch
from ._inputs import is_dask, meta, row_blocks
from ._objective import DistributedLoss, DistributedObjective, Part


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
        self._objective = None
        X_meta = validate_data(estimator, meta(X), dtype=[np.float64, np.float32],
                               reset=first_call, ensure_min_samples=0)
        self.dtype = X_meta.dtype if first_call else estimator.coefs_[0].dtype
        self.n_features = X_meta.shape[1]
        if y is None:
            raise ValueError(
                f"{type(estimator).__name__} requires y to be passed, but the "
                "target y is None."
            )
        blocks = row_blocks(X, y, sample_weight)
        # Where Dask knows the blocks' lengths, a block too large for any
        # worker is an error before it is read.
        itemsize = np.dtype(self.dtype).itemsize
        self._check_room([0 if np.isnan(n) else n * self.n_features * itemsize
                          for n in blocks.lengths])
        # Read from their source once; the checked blocks stay on the
        # workers until their prepared form replaces them.
        self._checked = self._check(blocks)
        try:
            stats = self.watch.gather(self.client.map(_worker.stats_of,
                                                      self._checked, pure=False))
        except KilledWorker as error:
            raise RuntimeError(
                "Reading and checking the row blocks killed the workers that "
                "ran them, again and again (KilledWorker): a block may not fit "
                "in a worker's memory. Cut X into smaller blocks (X.rechunk(...)"
                ", df.repartition(...)), or use workers with more memory."
            ) from error
        self._check_room([s.nbytes for s in stats])
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

    def _check_room(self, nbytes):
        """A ``MemoryError`` where the largest block cannot fit in any worker.

        A worker holds a block twice while it prepares it (checked and
        prepared, where X is copied to be aligned or split), and Dask
        pauses a worker whose process passes ``distributed.worker.memory.pause``
        of its memory limit; spilling to disk cannot cut a block. Blocks of
        ``nbytes`` are checked against the room that each worker has left
        beside what its process holds besides data.
        """
        workers = self.client.scheduler_info()["workers"]
        if not any(nbytes) or not workers:
            return
        limits = [info.get("memory_limit") or 0 for info in workers.values()]
        if not all(limits):
            return  # a worker without a memory limit can take any block
        fraction = (dask.config.get("distributed.worker.memory.pause", None)
                    or dask.config.get("distributed.worker.memory.terminate", None)
                    or 1.0)
        room = max(
            limit * fraction - max(0, info["metrics"].get("memory", 0)
                                   - info["metrics"].get("managed_bytes", 0))
            for limit, info in zip(limits, workers.values()))
        largest = int(np.argmax(nbytes))
        need = 2 * nbytes[largest]
        if need > room:
            mib = 2.0 ** 20
            raise MemoryError(
                f"Row block {largest} of X takes {nbytes[largest] / mib:.0f} MiB, "
                f"and a worker holds a block twice while it prepares it "
                f"({need / mib:.0f} MiB), but the workers have at most "
                f"{room / mib:.0f} MiB for data (memory limits of "
                f"{min(limits) / mib:.0f} to {max(limits) / mib:.0f} MiB, less "
                "what each worker process takes). Cut X into smaller blocks "
                "(X.rechunk({0: rows}), or df.repartition(partition_size=...)), "
                "use workers with more memory, or pass float32 data."
            )

    def _check(self, blocks, names=("X", "y", "sample_weight")):
        """Futures of the blocks, checked on the workers (``_worker.Checked``)."""
        return self.client.compute([
            dask.delayed(_worker.check_block, pure=False)(
                i, xb, blocks.y[i], None if blocks.sample_weight is None
                else blocks.sample_weight[i], self.dtype, names)
            for i, xb in enumerate(blocks.X)
        ])

    # --------------------------------------------------- the fit's interface
    @property
    def n_samples(self):
        return self._n_train

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
            blocks, placed, parts, uniform = self._prepared
            self._objective = DistributedObjective(
                self.client, blocks, placed, parts,
                self._spec._replace(uniform=uniform), self.settings, self.watch)
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
        placed = self._placement()
        offsets = np.concatenate([[0], np.cumsum(self._n_rows)[:-1]])
        blocks = [
            self.client.submit(_worker.prepare_block, checked, int(offset),
                               labels=self.labels, per_class=self._per_class,
                               split=split, pure=False,
                               **_placement.restriction(worker))
            for checked, offset, worker in zip(self._checked, offsets, placed)
        ]
        # The prepared blocks replace the checked ones, which the cluster
        # releases once each is prepared (and recomputes from their source,
        # should a prepared block be lost).
        del self._checked
        if self.settings.balance:
            self._settle(blocks, placed)
        blocks += given
        placed += [None] * len(given)
        summaries = self._summaries(blocks, placed)
        parts = {}
        for part in ("train", "val"):
            chosen = tuple(i for i, s in enumerate(summaries) if s[part].n)
            parts[part] = Part(chosen,
                               float(sum(summaries[i][part].weight for i in chosen)),
                               {i: summaries[i][part].nbytes for i in chosen})
        if not parts["train"].blocks:
            raise ValueError("Every row was held out for validation: lower "
                             "validation_fraction.")
        train = [summaries[i]["train"] for i in parts["train"].blocks]
        self._n_train = int(sum(s.n for s in train))
        # Equal positive weights make the weighted mean the plain mean: the
        # workers then leave them out, as the in-memory fit does.
        low, high = min(s.low for s in train), max(s.high for s in train)
        uniform = bool(low == high > 0)
        if uniform:
            parts["train"] = parts["train"]._replace(weight_sum=float(self._n_train))
        if plan is None:
            del parts["val"]
        else:
            _check_validation_weight(parts["val"].weight_sum)
        self._prepared = (blocks, placed, parts, uniform)
        if plan is None:
            return None
        # X, y, sw: ignored by the distributed loss, which knows its blocks.
        return {"X": None, "y": None, "sw": None, "scores": [], "losses": []}

    def _placement(self):
        """A worker for each checked block: where it is, or (``balance``)
        where each worker thread gets its share of the rows."""
        self.watch.wait(self._checked)
        who_has = self.client.who_has(self._checked)
        holders = [who_has.get(block.key) or () for block in self._checked]
        if not self.settings.balance:
            return [_placement.where(None, h) for h in holders]
        return _placement.balance(self.client.nthreads(), holders, self._n_rows)

    def _settle(self, blocks, placed):
        """Move the blocks that were prepared away from their place there.

        A preparation only prefers its placed worker (held to it, the
        recomputation of a block lost with that worker would wait for it
        forever), so Dask's work stealing can run it on an idle worker
        instead, which undoes the balance (seen with distributed 2025.1).
        Such blocks are moved, in up to ``balance-rounds`` rounds (a move
        can be stolen too); ``blocks`` is updated in place.
        """
        for round_ in range(self.settings.balance_rounds + 1):
            self.watch.wait(blocks)
            who_has = self.client.who_has(blocks)
            alive = self.client.nthreads()
            astray = [i for i, worker in enumerate(placed)
                      if worker in alive and worker not in who_has.get(blocks[i].key, ())]
            if not astray or round_ == self.settings.balance_rounds:
                return
            for i in astray:
                blocks[i] = self.client.submit(
                    _worker.moved, blocks[i], pure=False,
                    **_placement.restriction(placed[i]))

    def _summaries(self, blocks, placed):
        """Each prepared block's summary, computed where the block is (a task
        that ran elsewhere would fetch the whole block for it)."""
        self.watch.wait(blocks)
        who_has = self.client.who_has(blocks)
        where = [_placement.where(worker, who_has.get(block.key) or ())
                 for block, worker in zip(blocks, placed)]
        return self.watch.gather([
            self.client.submit(_worker.summary_of, block, pure=False,
                               **_placement.restriction(worker))
            for block, worker in zip(blocks, where)
        ])

    def _given(self, estimator, validation):
        """The user's validation set, checked against the fitted features as
        in memory, then checked and prepared on the workers."""
        X_val, y_val, sw_val = validation
        names = ("X_val", "y_val", "sample_weight_val")
        # Names, their order, the number of features and the dtype kinds
        # checked as in memory; the values on the workers, block by block.
        if is_dask(X_val):
            validate_data(estimator, meta(X_val), reset=False, ensure_min_samples=0,
                          dtype=[np.float64, np.float32])
        else:
            X_val = da.from_array(validate_data(
                estimator, X_val, reset=False, accept_sparse="csr",
                dtype=[np.float64, np.float32]))
        checked = self._check(row_blocks(X_val, y_val, sw_val, names=names), names)
        return [self.client.submit(_worker.prepare_block, block, 0,
                                   labels=self.labels, per_class=None, split="val",
                                   pure=False)
                for block in checked]
