"""One model, many machines: data-parallel L-BFGS on a Dask cluster.

:class:`DaskTwoLayerSoftmaxClassifier` is :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`
whose ``fit`` also takes Dask arrays and dataframes. Their row blocks are
validated and persisted once on the workers that compute them, and every
evaluation of the objective runs there, through the same loss function as
in memory: scipy's L-BFGS iterate stays on the client, and per evaluation
only parameter-sized vectors travel (the weights out, one partial loss and
gradient back per group of blocks). After the fit the weights are numpy
arrays, as after any fit.

The module needs the ``dask`` extra (``pip install "sk-twolayer[dask]"``)
and is imported only when asked for::

    from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier

How it divides the work:

- **The objective is exactly the in-memory one.** Each block contributes
  its share ``sum_i w_i l_i / W`` of the weighted mean, with ``W`` the total
  weight of *all* training rows (not a mean of per-block means, which is
  what Spark MLlib minimises when its blocks are ragged); the client adds the
  shares and the penalty once.
- **Locality without brittleness.** Blocks are grouped by the worker that
  holds them (one group per worker thread). A group's task prefers that
  worker but may run anywhere (``allow_other_workers``), so a dead worker
  never leaves a task waiting: the scheduler recomputes its lost blocks from
  their source and runs the task elsewhere, and the next evaluation groups
  the blocks by where they now are.
- **Balance.** Before the first evaluation, blocks move (once) from
  workers that hold more than their threads' share of the rows to those
  that hold less, since each evaluation waits for the busiest worker
  (and back again, should work stealing prepare one elsewhere).
- **Reuse.** A worker keeps one loss object, with its scratch buffers, per
  fit and thread across evaluations, as the in-memory L-BFGS does.
"""

import asyncio
import collections
import concurrent.futures
import copy
import inspect
import math
import textwrap
import threading
import time
import uuid

import dask
import dask.array as da
import distributed
import numpy as np
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._classifier import (
    _ALLOW_ZERO_WEIGHTS,
    TwoLayerSoftmaxClassifier,
    _check_validation_weight,
    _label_indices,
)
from ._loss import TwoLayerLoss
from ._namespace import NUMPY
from ._params import ParamLayout

__all__ = ["DaskTwoLayerSoftmaxClassifier"]

# Seconds without a single worker in the cluster after which a fit gives up.
NO_WORKERS_TIMEOUT = 30
# How often a waiting evaluation checks that workers are left (seconds).
_POLL = 1.0
# How long gathering finished results may take before the cluster is
# looked at again (seconds).
_GATHER_TIMEOUT = 5.0
# Evaluations retried after an error a lost worker caused (not a bad input).
_RETRIES = 3
# Rounds of moving blocks that work stealing prepared away from their place.
_MOVES = 3


def _is_dask(obj):
    return dask.is_dask_collection(obj)


# ------------------------------------------------------------ on the workers
def _validate_block(index, X, y, sample_weight, dtype):
    """One row block checked as the in-memory fit checks its data.

    Returns the block (X as a C-ordered float array of ``dtype``, y, the
    weights) and what the client needs to know of it: its length, labels
    and the weight of each label.
    """
    try:
        X = check_array(X, accept_sparse="csr", dtype=dtype, order="C",
                        ensure_min_samples=0, input_name="X")
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=None,
                                     ensure_min_samples=0, input_name="y"),
                         warn=True)
        if y.shape[0] != X.shape[0]:
            raise ValueError(
                f"y has {y.shape[0]} rows where X has {X.shape[0]}: y is not "
                "aligned with X. Chunk y like X (y.rechunk(X.chunks[0])), or "
                "take X and y from the same dataframe."
            )
        if X.shape[0]:
            check_classification_targets(y)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=dtype, ensure_non_negative=True, copy=True,
            **_ALLOW_ZERO_WEIGHTS,
        )
    except ValueError as error:
        raise ValueError(f"In row block {index} of the Dask input: {error}") from None
    labels, inverse = np.unique(y, return_inverse=True)
    return {
        "X": X, "y": y, "sample_weight": sample_weight,
        "stats": {"n_rows": X.shape[0], "labels": labels,
                  "mass": np.bincount(inverse.reshape(-1), weights=sample_weight,
                                      minlength=labels.size)},
    }


def _stats(block):
    return block["stats"]


def _held_out(key, offset, n, fraction):
    """Whether rows ``offset .. offset + n`` of the data are held out.

    Row ``i`` is held out when the ``i``-th number of one Philox stream
    keyed by ``key`` is below ``fraction``: the same rows whatever the
    chunking and the number of workers.
    """
    bits = np.random.Philox(key=key)
    step, skip = divmod(int(offset), 4)  # four numbers per step of the counter
    bits.advance(step)
    return np.random.Generator(bits).random(skip + n)[skip:] < fraction


def _prepare_block(block, offset, labels, per_class, split):
    """Class indices and final weights; the training and validation rows.

    ``split`` is None (all rows train), ``"val"`` (a block of the user's
    validation set) or ``(key, fraction)`` for :func:`_held_out`, with
    ``offset`` the position of the block's first row in the data.
    """
    X, sample_weight = block["X"], block["sample_weight"]
    y = _label_indices(block["y"], labels)
    if per_class is not None:
        sample_weight = sample_weight * per_class[y].astype(sample_weight.dtype)
    if split is None:
        parts = {"train": (X, y, sample_weight), "val": None}
    elif split == "val":  # a block of the user's validation set
        parts = {"train": None, "val": (X, y, sample_weight)}
    else:
        held = _held_out(split[0], offset, X.shape[0], split[1])
        kept = ~held
        parts = {"train": (X[kept], y[kept], sample_weight[kept]),
                 "val": (X[held], y[held], sample_weight[held])}
    summary = {}
    for part, rows in parts.items():
        if rows is not None:
            w = rows[2].astype(np.float64)
            summary[part] = {"n": rows[0].shape[0], "weight": w.sum(),
                             "min": w.min(initial=np.inf),
                             "max": w.max(initial=-np.inf)}
    parts["summary"] = summary
    return parts


def _summary(block):
    return block["summary"]


def _moved(block):
    """The block itself: run where it should be, this moves it there."""
    return block


# Per worker process: for the latest fits (by token), each thread's loss
# object and gradient buffer. Older fits' scratch memory is dropped.
_LOSSES = collections.OrderedDict()
_LOSSES_LOCK = threading.Lock()
_KEEP_FITS = 2


def _loss_for(spec):
    """The loss object (and a gradient buffer) of this fit and thread.

    Kept across evaluations, as the in-memory L-BFGS keeps its one loss
    object, so that the scratch memory is allocated once per fit.
    """
    with _LOSSES_LOCK:
        per_thread = _LOSSES.setdefault(spec["token"], {})
        _LOSSES.move_to_end(spec["token"])
        while len(_LOSSES) > _KEEP_FITS:
            _LOSSES.popitem(last=False)
        kept = per_thread.get(threading.get_ident())
        if kept is None:
            layout = ParamLayout(*spec["shape"], dtype=spec["dtype"])
            kept = per_thread[threading.get_ident()] = (
                TwoLayerLoss(layout, activation=spec["activation"]),
                np.empty(layout.size, dtype=layout.dtype),
            )
    return kept


def _group_terms(spec, theta, *blocks):
    """This group's share of the objective, and the worker it ran on.

    For the training rows: ``(loss, gradient)`` of the data term, each the
    sum of the blocks' shares of the weighted mean over all training rows.
    For the validation rows: ``(loss, accuracy)``, shares likewise.
    """
    loss, buffer = _loss_for(spec)
    part, weight_sum = spec["part"], spec["weight_sum"]
    value = np.zeros(2 if part == "val" else 1)
    grad = np.zeros(theta.size) if part == "train" else None
    for block in blocks:
        X, y, sample_weight = block[part]
        if not X.shape[0]:
            continue
        if part == "train":
            share, g = loss.data_loss_gradient(
                theta, X, y, None if spec["uniform"] else sample_weight,
                grad=buffer, weight_sum=weight_sum,
            )
            value[0] += share
            grad += g
        else:
            value += loss.evaluate(theta, X, y, sample_weight, weight_sum=weight_sum)
    return value, grad, distributed.get_worker().address


def _apply(model, method, X):
    return getattr(model, method)(X)


def _hits(model, X, y, sample_weight):
    """Weighted correct predictions of one block, and its total weight."""
    y = column_or_1d(y)
    correct = (model.predict(X) == y).astype(np.float64)
    if sample_weight is None:
        return np.array([correct.sum(), correct.size], dtype=np.float64)
    sample_weight = column_or_1d(sample_weight).astype(np.float64)
    return np.array([sample_weight @ correct, sample_weight.sum()])


# ----------------------------------------------------------- on the client
def _array_blocks(array, name, lengths=None):
    """Delayed row blocks of a Dask (or in-memory) array, cut at ``lengths``.

    ``lengths`` are the row counts of X's blocks, which an in-memory array or
    a Dask array of other chunks is cut to, where they are known.
    """
    if not _is_dask(array):
        if lengths is None or any(math.isnan(n) for n in lengths):
            raise TypeError(
                f"{name} is in memory but X is a Dask collection with unknown "
                "chunk sizes; pass it as a Dask array with X's row blocks."
            )
        array = da.from_array(np.asarray(array),
                              chunks=(lengths,) + (-1,) * (np.ndim(array) - 1))
    if not isinstance(array, da.Array):
        raise TypeError(
            f"{name} must be a Dask array like X (a Dask series goes with a "
            "Dask dataframe X)."
        )
    if array.ndim == 2 and array.numblocks[1] > 1:
        raise ValueError(
            f"{name} is chunked along its columns ({array.numblocks[1]} column "
            f"blocks): each row block must hold whole rows. Rechunk it with "
            f"{name}.rechunk({{1: -1}}) (or {name}.rechunk({{0: 'auto', 1: -1}}) "
            "for new row blocks too)."
        )
    if lengths is not None and array.chunks[0] != tuple(lengths):
        theirs, lengths = array.chunks[0], tuple(lengths)
        unknown = any(math.isnan(n) for n in theirs + lengths)
        if unknown and len(theirs) != len(lengths):
            raise ValueError(
                f"{name} has {len(theirs)} row blocks of unknown or other sizes "
                f"than X's {len(lengths)}: they cannot be lined up. Compute the "
                f"chunk sizes once ({name}.compute_chunk_sizes() and "
                "X.compute_chunk_sizes()), or take X and y from one dataframe."
            )
        if not unknown:
            if array.shape[0] != sum(lengths):
                raise ValueError(
                    f"{name} has {array.shape[0]} rows, X has {sum(lengths)}: "
                    "they are not aligned."
                )
            array = array.rechunk({0: lengths})
        # Otherwise as many blocks as X, of sizes known only once read: each
        # is checked against X's block when it is validated.
    # Not optimized: X's and y's blocks then keep the keys of the tasks they
    # share (one loader for both, say), and the source is read once.
    blocks = array.to_delayed(optimize_graph=False).reshape(-1).tolist()
    return blocks, array.chunks[0]


def _row_blocks(X, y=None, sample_weight=None, names=("X", "y", "sample_weight")):
    """Delayed row blocks of X, y and the weights, aligned; and their lengths.

    A Dask array X takes Dask arrays (or in-memory ones) cut like it. A Dask
    dataframe X takes Dask series: the three are put side by side in one
    dataframe, so that each partition holds the same rows of all three (Dask
    may otherwise read a narrow column in fewer, larger partitions).
    Lengths are NaN where Dask does not know them.
    """
    if isinstance(X, da.Array):
        X_blocks, lengths = _array_blocks(X, names[0])
        others = [None if a is None else _array_blocks(a, name, lengths)[0]
                  for a, name in zip((y, sample_weight), names[1:])]
        return X_blocks, *others, lengths
    if not hasattr(X, "to_delayed") or not hasattr(X, "columns"):
        raise TypeError(f"{names[0]} must be a Dask array or dataframe.")
    columns = list(X.columns)
    extra = {}
    for value, name, column in zip((y, sample_weight), names[1:],
                                   ("__sk_twolayer_y__", "__sk_twolayer_w__")):
        if value is None:
            continue
        if getattr(value, "ndim", None) == 2 and len(value.columns) == 1:
            value = value[value.columns[0]]
        if not (_is_dask(value) and getattr(value, "ndim", None) == 1
                and hasattr(value, "to_frame")):
            raise TypeError(
                f"{name} must be a Dask series when X is a Dask dataframe: take "
                f"it from the same dataframe, e.g. X = df[features], "
                f"{name} = df['{name}']."
            )
        if value.npartitions != X.npartitions or (
                X.known_divisions and value.known_divisions
                and tuple(value.divisions) != tuple(X.divisions)):
            raise ValueError(
                f"{name} has {value.npartitions} partitions, {names[0]} has "
                f"{X.npartitions}: they are not aligned (and lining them up by "
                "index would shuffle the data). Take them from the same "
                "dataframe, or repartition them alike."
            )
        extra[column] = value
    try:
        frame = X.assign(**extra) if extra else X
        parts = frame.to_delayed()
    except (ValueError, NotImplementedError) as error:
        raise ValueError(
            f"{', '.join(names[1:1 + len(extra)])} is not aligned with "
            f"{names[0]}: {error} Take them from the same dataframe, or give "
            "them known divisions."
        ) from None
    X_blocks = [part[columns] for part in parts] if extra else parts
    others = [[part[column] for part in parts] if column in extra else None
              for column in ("__sk_twolayer_y__", "__sk_twolayer_w__")]
    return X_blocks, *others, (math.nan,) * len(parts)


def _meta(X):
    """An empty in-memory stand-in of X: its columns, names and dtypes."""
    if isinstance(X, da.Array):
        return np.zeros((0,) + X.shape[1:], dtype=X.dtype)
    return X._meta


class _Group:
    """Blocks evaluated by one task, and the worker that holds them."""

    def __init__(self, worker, blocks):
        self.worker, self.blocks = worker, blocks


def _groups(client, futures, indices, placement):
    """Blocks ``indices`` grouped by the worker that holds them.

    A block held by several workers (a copy that a task fetched, until
    distributed's memory manager drops it) goes with the worker
    ``placement`` gave it, if that is one of them. A worker gets as many
    groups as it has threads, split by rows in block order; groups are
    ordered by their first block, so that the sum over groups has a fixed
    order.
    """
    who_has = client.who_has([futures[i] for i in indices])
    nthreads = client.nthreads()
    by_worker = collections.defaultdict(list)
    for i in indices:
        holders = sorted(who_has.get(futures[i].key) or [None])
        placed = placement[i]
        by_worker[placed if placed in holders else holders[0]].append(i)
    groups = []
    for worker, blocks in by_worker.items():
        n = max(1, min(len(blocks), nthreads.get(worker, 1)))
        for part in np.array_split(np.asarray(blocks), n):
            groups.append(_Group(worker, part.tolist()))
    return sorted(groups, key=lambda group: group.blocks[0])


def _placement(client, futures, n_rows):
    """A worker for each block, so that each thread gets its share of rows.

    A block stays on a worker that holds it while that worker is under its
    share (its threads' fraction of all rows); the blocks left over go,
    largest first, to the worker with the fewest rows per thread. Moving
    them costs one transfer per fit; an unbalanced placement would cost
    every evaluation the wait for the busiest worker.
    """
    nthreads = client.nthreads()
    if not nthreads:
        return [None] * len(futures)
    who_has = client.who_has(futures)
    share = float(np.sum(n_rows)) / sum(nthreads.values())
    load = dict.fromkeys(nthreads, 0)
    place = [None] * len(futures)
    left_over = []
    for i in np.argsort(-np.asarray(n_rows), kind="stable"):
        holders = [w for w in sorted(who_has.get(futures[i].key) or ()) if w in load]
        holder = min(holders, key=lambda w: load[w] / nthreads[w], default=None)
        if holder is not None and load[holder] + n_rows[i] <= share * nthreads[holder]:
            place[i] = holder
            load[holder] += n_rows[i]
        else:
            left_over.append((i, holders))
    for i, holders in left_over:
        place[i] = min(load, key=lambda w: ((load[w] + n_rows[i]) / nthreads[w],
                                            w not in holders, w))
        load[place[i]] += n_rows[i]
    return place


class _DaskRows:
    """The training rows of a fit, held as blocks on the workers.

    The interface of the in-memory rows that ``_fit`` reads (see
    ``_InMemoryRows`` in :mod:`sk_twolayer._classifier`); ``X``, ``y`` and
    ``sample_weight`` are the user's Dask collections, which the callbacks
    see, and the loss ignores: it knows its blocks.
    """

    ops = NUMPY

    def __init__(self, estimator, client, X, y, sample_weight, first_call):
        self.client = client
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.solver_weight = None
        self.token = uuid.uuid4().hex
        self._evaluations = 0
        meta = validate_data(estimator, _meta(X), dtype=[np.float64, np.float32],
                             reset=first_call, ensure_min_samples=0)
        self.dtype = (meta.dtype if first_call else estimator.coefs_[0].dtype)
        self.n_features = meta.shape[1]

        if y is None:
            raise ValueError(
                f"{type(estimator).__name__} requires y to be passed, but the "
                "target y is None."
            )
        X_blocks, y_blocks, sw_blocks, _ = _row_blocks(X, y, sample_weight)
        checked = [
            dask.delayed(_validate_block, pure=False)(
                i, xb, y_blocks[i], None if sw_blocks is None else sw_blocks[i],
                self.dtype)
            for i, xb in enumerate(X_blocks)
        ]
        # Computed (read from their source) once; the validated blocks stay
        # on the workers until their prepared form replaces them.
        self._checked = client.compute(checked)
        stats = self._wait(client.map(_stats, self._checked, pure=False))
        self._n_rows = np.array([s["n_rows"] for s in stats])
        labels = unique_labels(*[s["labels"] for s in stats if s["n_rows"]])
        _, labels = estimator._encode_labels(labels, first_call, False, None)
        mass = np.zeros(labels.size)
        for s in stats:
            np.add.at(mass, np.searchsorted(labels, s["labels"]), s["mass"])
        self.labels = labels
        self._per_class = estimator._class_factors(labels, mass, incremental=False)

    # --------------------------------------------------- the fit's interface
    @property
    def n_samples(self):
        return self._n_train

    def objective(self, loss):
        """The in-memory loss's penalty, with its data term on the workers."""
        return _DistributedLoss(self, loss.layout, loss.activation, loss.penalty)

    def hold_out(self, estimator, validation, rng, incremental):
        """Prepare the blocks on the workers, holding out validation rows.

        Early stopping holds out each row with probability
        ``validation_fraction``, drawn from a stream keyed by the fit's
        random generator and indexed by the row's position, so that the
        same rows are held out whatever the chunking and the workers. A
        validation set passed as ``X_val, y_val`` (Dask or in memory) is
        validated and kept on the workers as well.
        """
        plan = estimator._validation_plan(validation, int(self._n_rows.sum()),
                                          incremental)
        split = None
        if plan not in (None, "given"):
            split = (int(rng.randint(np.iinfo(np.int64).max, dtype=np.int64)),
                     estimator.validation_fraction)
        offsets = np.concatenate([[0], np.cumsum(self._n_rows)[:-1]])
        placement = _placement(self.client, self._checked, self._n_rows)
        blocks = [
            self.client.submit(
                _prepare_block, checked, int(offset), labels=self.labels,
                per_class=self._per_class, split=split, pure=False,
                workers=None if worker is None else [worker],
                allow_other_workers=worker is not None,
            )
            for checked, offset, worker in zip(self._checked, offsets, placement)
        ]
        del self._checked  # the prepared blocks replace them
        placement = self._settle(blocks, placement)
        if plan == "given":
            given = self._validation_blocks(validation)
            blocks += given
            placement += [None] * len(given)
        summaries = self._summaries(blocks, placement)
        self._blocks = blocks
        train = [i for i, s in enumerate(summaries) if s.get("train", {}).get("n")]
        val = [i for i, s in enumerate(summaries) if s.get("val", {}).get("n")]
        if not train:
            raise ValueError("Every row was held out for validation: lower "
                             "validation_fraction.")
        totals = {part: {key: [s[part][key] for s in summaries if part in s]
                         for key in ("n", "weight", "min", "max")}
                  for part in ("train", "val")}
        self._n_train = int(sum(totals["train"]["n"]))
        # Equal positive weights make the weighted mean the plain mean: the
        # workers then leave them out, as the in-memory fit does.
        low, high = min(totals["train"]["min"]), max(totals["train"]["max"])
        self._uniform = bool(low == high > 0)
        self._parts = {
            "train": (train, float(self._n_train if self._uniform
                                   else sum(totals["train"]["weight"]))),
        }
        self._placement = placement
        self._groups = {"train": _groups(self.client, blocks, train, self._placement)}
        if plan is None:
            return None
        _check_validation_weight(sum(totals["val"]["weight"]))
        self._parts["val"] = (val, float(sum(totals["val"]["weight"])))
        self._groups["val"] = _groups(self.client, blocks, val, self._placement)
        # X, y, sw: ignored by the distributed loss, which knows its blocks.
        return {"X": None, "y": None, "sw": None, "scores": [], "losses": []}

    def _settle(self, blocks, placement):
        """Where each prepared block is, after moving it to its place.

        The preparation only prefers the placed worker: a strict restriction
        would also hold the recomputation of a block lost with its worker
        to that worker, forever. So work stealing can prepare a small block
        on an idle worker instead; such blocks are moved back (a few rounds
        at most), and the placement is then where each block is. ``blocks``
        is updated in place.
        """
        for round_ in range(_MOVES + 1):
            self._wait(blocks, gather=False)
            who_has = self.client.who_has(blocks)
            alive = self.client.nthreads()
            astray = [i for i, worker in enumerate(placement)
                      if worker in alive and worker not in who_has.get(blocks[i].key, ())]
            if not astray or round_ == _MOVES:
                break
            for i in astray:
                blocks[i] = self.client.submit(
                    _moved, blocks[i], pure=False, workers=[placement[i]],
                    allow_other_workers=True)
        settled = []
        for worker, block in zip(placement, blocks):
            holders = who_has.get(block.key) or ()
            settled.append(worker if worker in holders else min(holders, default=None))
        return settled

    def _summaries(self, blocks, placement):
        """Each block's summary, computed where the block is.

        Held to that worker, so that no task fetches a copy of the block
        (which distributed could then keep in place of the original); a
        summary whose worker has left is asked for again, anywhere.
        ``placement`` is updated in place.
        """
        def summary(i):
            workers = None if placement[i] is None else [placement[i]]
            return self.client.submit(_summary, blocks[i], pure=False,
                                      workers=workers)

        futures = [summary(i) for i in range(len(blocks))]

        def replace_lost():
            alive = self.client.nthreads()
            for i, worker in enumerate(placement):
                if worker is not None and worker not in alive:
                    placement[i] = None
                    futures[i] = summary(i)

        return self._wait(futures, on_poll=replace_lost)

    def _validation_blocks(self, validation):
        """The user's validation set, checked and prepared on the workers."""
        X_val, y_val, sw_val = validation
        if not _is_dask(X_val):
            X_val = da.from_array(check_array(X_val, accept_sparse="csr",
                                              dtype=None, input_name="X_val"))
        X_blocks, y_blocks, sw_blocks, _ = _row_blocks(
            X_val, y_val, sw_val, names=("X_val", "y_val", "sample_weight_val"))
        checked = self.client.compute([
            dask.delayed(_validate_block, pure=False)(
                f"{i} of X_val", xb, y_blocks[i],
                None if sw_blocks is None else sw_blocks[i], self.dtype)
            for i, xb in enumerate(X_blocks)
        ])
        return self.client.map(_prepare_block, checked, [0] * len(checked),
                               labels=self.labels, per_class=None, split="val",
                               pure=False)

    # ----------------------------------------------------------- evaluation
    def terms(self, part, theta, layout, activation):
        """Sum of the groups' shares for ``part`` at ``theta``, on the workers."""
        spec = {"token": self.token, "part": part, "dtype": self.dtype,
                "shape": (layout.n_features, layout.n_hidden, layout.n_classes),
                "activation": activation, "uniform": self._uniform,
                "weight_sum": self._parts[part][1]}
        self._evaluations += 1
        for attempt in range(_RETRIES + 1):
            groups = self._groups[part]
            futures = [
                self.client.submit(
                    _group_terms, spec, theta, *[self._blocks[i] for i in group.blocks],
                    key=f"sk-twolayer-{part}-{self.token}-{self._evaluations}-"
                        f"{attempt}-{g}",
                    workers=None if group.worker is None else [group.worker],
                    allow_other_workers=group.worker is not None,
                )
                for g, group in enumerate(groups)
            ]
            try:
                results = self._wait(futures)
                break
            except distributed.scheduler.KilledWorker:
                # The task's workers died under it again and again: try the
                # evaluation anew, with the blocks grouped where they are.
                if attempt == _RETRIES:
                    raise
                self._groups[part] = _groups(self.client, self._blocks,
                                             self._parts[part][0], self._placement)
        value = sum(r[0] for r in results)
        grad = None if part == "val" else sum(r[1] for r in results)
        if any(r[2] != group.worker for r, group in zip(results, groups)):
            # A group ran away from its worker (which died, say): group the
            # blocks by where they are now, so that no block has to travel
            # to every evaluation.
            for name, (indices, _) in self._parts.items():
                self._groups[name] = _groups(self.client, self._blocks, indices,
                                             self._placement)
        return value, grad

    def _wait(self, futures, gather=True, on_poll=None):
        """The futures' results; an error, not a hang, without workers.

        Blocks lost with a worker are recomputed by the scheduler from their
        source while this waits. Blocks that cannot be (scattered data)
        cancel the futures: that is a clear error at once.

        It looks at the cluster every ``_POLL`` seconds while the tasks run,
        and gathers their results within ``_GATHER_TIMEOUT`` seconds or
        waits again: a result can be lost with its worker while it is being
        gathered, and a plain ``gather`` would then wait for a worker to
        recompute it, forever if none is left. With ``gather=False`` it only
        waits for them. ``on_poll``, if given, is called between rounds and
        may replace futures in the list.
        """
        since = None
        while True:
            try:
                with self.client.as_current():  # (wait uses the current client)
                    distributed.wait(futures, timeout=_POLL)
                if not gather:
                    return None
                return self.client.sync(
                    lambda: self.client.gather(futures, asynchronous=True),
                    callback_timeout=_GATHER_TIMEOUT,
                )
            except concurrent.futures.CancelledError as error:
                raise _lost_data_error() from error
            except (TimeoutError, asyncio.TimeoutError):
                pass
            if on_poll is not None:
                on_poll()
            if self.client.scheduler_info().get("workers"):
                since = None
            elif since is None:
                since = time.monotonic()
            elif time.monotonic() - since > NO_WORKERS_TIMEOUT:
                raise RuntimeError(
                    f"No Dask worker has been running for {NO_WORKERS_TIMEOUT} s, "
                    "and the fit cannot go on without one. Start workers (or a "
                    "new cluster) and fit again."
                )


def _lost_data_error():
    return RuntimeError(
        "Lost row blocks of the data with a worker, and they could not be "
        "recomputed: they were "
        "scattered to the cluster (client.scatter) or came from a source that "
        "cannot be read again. Build X and y from a source Dask can read again "
        "(dd.read_parquet, da.from_zarr, da.from_array, ...), and fit again."
    )


class _DistributedLoss:
    """``TwoLayerLoss``'s interface, with the data term summed over workers.

    The penalty is the in-memory loss's own, added once on the client.
    ``X``, ``y`` and ``sample_weight`` are accepted and ignored: the rows
    are the blocks on the workers.
    """

    ops = NUMPY

    def __init__(self, rows, layout, activation, penalty):
        self._rows = rows
        self.layout, self.activation, self.penalty = layout, activation, penalty

    def loss_gradient(self, theta, X=None, y=None, sample_weight=None, grad=None):
        value, total = self._rows.terms("train", theta, self.layout, self.activation)
        if grad is None:
            grad = np.empty_like(theta)
        grad[...] = total
        self.penalty.add_gradient(theta, grad)
        return float(value[0]) + self.penalty.value(theta), grad

    def evaluate(self, theta, X=None, y=None, sample_weight=None):
        value, _ = self._rows.terms("val", theta, self.layout, self.activation)
        return float(value[0]), float(value[1])


# ------------------------------------------------------------- the estimator
def _also_lazy(name, shape_and_dtype):
    """The in-memory estimator's method ``name``, also on Dask input.

    On in-memory input it is that method; on a Dask array or dataframe it
    returns a lazy Dask array with the row blocks of X, whose width and
    dtype ``shape_and_dtype(estimator)`` gives. Its docstring is the
    in-memory method's, with Dask input and output added.
    """
    in_memory = getattr(TwoLayerSoftmaxClassifier, name)

    def method(self, X):
        if not _is_dask(X):
            return in_memory(self, X)
        return self._lazy(X, name, *shape_and_dtype(self))

    method.__name__ = name
    method.__qualname__ = f"DaskTwoLayerSoftmaxClassifier.{name}"
    doc = in_memory.__doc__
    if doc:  # (stripped under python -OO)
        summary, rest = inspect.cleandoc(doc).split("\n\n", 1)
        doc = (
            f"{summary}\n\nOn a Dask array or dataframe the result is a lazy "
            "Dask array with\nthe row blocks of X, computed on the workers."
            f"\n\n{rest}\n"
        ).replace("X : {array-like, sparse matrix}",
                  "X : {array-like, sparse matrix, Dask array, Dask dataframe}"
                  ).replace(": ndarray of shape", ": ndarray or Dask array of shape")
    method.__doc__ = doc
    return method


def _section(obj, name):
    """The entries of section ``name`` of ``obj``'s numpydoc docstring.

    The Dask estimator's parameters and attributes are the in-memory
    estimator's: its docstring takes them from there rather than repeat them.
    (Empty where docstrings are stripped, ``python -OO``.)
    """
    if not obj.__doc__:
        return ""
    # Python 3.13 strips docstrings' indentation, earlier versions keep it.
    lines = inspect.cleandoc(obj.__doc__).splitlines()
    start = lines.index(name) + 2  # past the title and its underline
    end = start
    while end < len(lines) and not (
        lines[end] and not lines[end][0].isspace()
        and end + 1 < len(lines) and set(lines[end + 1].strip()) == {"-"}
    ):
        end += 1
    return textwrap.indent("\n".join(lines[start:end]).rstrip(), "    ")


class DaskTwoLayerSoftmaxClassifier(TwoLayerSoftmaxClassifier):
    __doc__ = r"""Two-layer softmax network fitted data-parallel on a Dask cluster.

    The parameters, the objective and the fitted attributes are those of
    :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`:

    .. math::

        \frac{\sum_i w_i\,(-\log p_{y_i}(x_i))}{\sum_i w_i}
        + \lambda\left(\|W_1\|^2 + \|W_2\|^2 + \|b_1\|^2 + \|b_2\|^2\right),

    with the sums over all rows of all blocks. On in-memory input (numpy,
    pandas, sparse) it fits exactly as that estimator does.

    On a Dask array chunked by rows, or a Dask dataframe (``X``), with Dask
    arrays or series for ``y`` and ``sample_weight``, ``solver="lbfgs"``
    runs data-parallel: the blocks are validated and persisted once on the
    workers; scipy's L-BFGS iterate stays here, and each evaluation of the
    loss and gradient runs on the workers that hold the blocks. With the
    same ``random_state`` the fit (without early stopping) is the in-memory
    fit up to rounding, whatever the chunking and the number of workers. A
    worker lost during
    the fit loses nothing: its blocks are recomputed from their source.
    ``"sgd"`` and ``"adam"`` do not run data-parallel: stream the blocks
    through :meth:`partial_fit` with :class:`dask_ml.wrappers.Incremental`.

    With ``early_stopping=True`` each row is held out with probability
    ``validation_fraction`` on the worker that holds it, the same rows for
    any chunking; the count is ``validation_fraction`` of the rows up to
    sampling noise, and the split differs from the in-memory (stratified)
    one.

    After the fit the weights are numpy arrays; the prediction methods take
    Dask input and return lazy Dask arrays with X's row blocks, and
    :meth:`to_local` returns the plain estimator (for ONNX, skops, pickle).

    Parameters
    ----------
{parameters}

    Attributes
    ----------
{attributes}
    client : distributed.Client or None
        The Dask client to fit with, settable (``clf.client = client``); None
        (the default) uses the current one, :func:`distributed.default_client`.
        It is not a parameter: it is neither pickled nor carried over by
        :func:`~sklearn.base.clone`, whose clones use the current client.

    See Also
    --------
    sk_twolayer.TwoLayerSoftmaxClassifier : The in-memory estimator.
    dask_ml.wrappers.Incremental : Streams blocks through ``partial_fit``.

    Examples
    --------
    >>> import dask.array as da
    >>> from distributed import Client, LocalCluster
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
    ...                        dashboard_address=None)
    >>> client = Client(cluster)
    >>> dX, dy = da.from_array(X, chunks=50), da.from_array(y, chunks=50)
    >>> clf = DaskTwoLayerSoftmaxClassifier(hidden_size=8, random_state=0).fit(dX, dy)
    >>> clf.predict(dX[:3]).compute()
    array([0, 0, 0])
    >>> float(clf.score(dX, dy)) > 0.95
    True
    >>> client.close(); cluster.close()
    """.replace("{parameters}", _section(TwoLayerSoftmaxClassifier, "Parameters")
                ).replace("{attributes}", _section(TwoLayerSoftmaxClassifier, "Attributes"))

    # ------------------------------------------------------ scikit-learn API
    @property
    def client(self):
        """The Dask client to fit with; None (the default) uses the current one."""
        return getattr(self, "_client", None)

    @client.setter
    def client(self, client):
        if client is not None and not isinstance(client, distributed.Client):
            raise TypeError(
                f"client must be a distributed.Client or None, got {client!r}."
            )
        self._client = client

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_client", None)  # a connection, not a part of the model
        return state

    def to_local(self):
        """The fitted model as a plain :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`.

        Its parameters and fitted attributes are copies of this model's; it
        exports to ONNX, persists with skops and pickles as any in-memory
        model.

        Returns
        -------
        model : TwoLayerSoftmaxClassifier
            A fitted in-memory model with this model's parameters and weights.
        """
        check_is_fitted(self)
        params = self.get_params(deep=False)
        local = TwoLayerSoftmaxClassifier(**params)
        for name, value in vars(self).items():
            if name not in params and name != "_client":
                setattr(local, name, copy.deepcopy(value))
        return local

    # ---------------------------------------------------------------- fitting
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None):
        """Fit the network, data-parallel on Dask input.

        On a Dask array chunked by rows, or a Dask dataframe, the row blocks
        are validated and persisted once on the workers of the client's
        cluster, and L-BFGS evaluates the loss and gradient there; on
        in-memory input the fit is that of
        :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`.

        Parameters
        ----------
        X : {array-like, sparse matrix, Dask array, Dask dataframe} of shape \
                (n_samples, n_features)
            Training data. A Dask array must be chunked by rows only.
        y : array-like, Dask array or Dask series of shape (n_samples,)
            Target labels: with a Dask array X, a Dask array (or an in-memory
            one); with a Dask dataframe X, a Dask series of the same
            dataframe.
        sample_weight : array-like, Dask array or Dask series of shape \
                (n_samples,), default=None
            Non-negative sample weights, given like ``y``.
        X_val : {array-like, sparse matrix, Dask array, Dask dataframe} of \
                shape (n_val, n_features), default=None
            Validation data, used instead of holding out
            ``validation_fraction`` of ``X``; with Dask input it is kept on
            the workers too.
        y_val : array-like, Dask array or Dask series of shape (n_val,), \
                default=None
            Validation labels; required with ``X_val``.
        sample_weight_val : array-like, Dask array or Dask series of shape \
                (n_val,), default=None
            Weights of the validation samples.

        Returns
        -------
        self : DaskTwoLayerSoftmaxClassifier
            The fitted estimator, with numpy weights.
        """
        return super().fit(X, y, sample_weight, X_val=X_val, y_val=y_val,
                           sample_weight_val=sample_weight_val)

    def _training_rows(self, X, y, sample_weight, incremental, classes, first_call):
        inputs = {"X": X, "y": y, "sample_weight": sample_weight}
        if not _is_dask(X):
            dask_inputs = [name for name, value in inputs.items() if _is_dask(value)]
            if dask_inputs:
                raise TypeError(
                    f"{', '.join(dask_inputs)} is a Dask collection but X is in "
                    "memory: pass X as a Dask array or dataframe too, or compute "
                    f"{dask_inputs[0]}."
                )
            return super()._training_rows(X, y, sample_weight, incremental,
                                          classes, first_call)
        if incremental:
            raise TypeError(
                "partial_fit takes the blocks of a Dask array one by one, in "
                "memory: wrap the model in dask_ml.wrappers.Incremental, whose "
                "partial_fit passes each block of X to this partial_fit."
            )
        if self.solver != "lbfgs":
            raise ValueError(
                f"solver={self.solver!r} does not run data-parallel: minibatch "
                "steps depend on each other, so one model cannot take them on "
                "many workers at once. Use solver='lbfgs', or stream the blocks "
                "through partial_fit with dask_ml.wrappers.Incremental("
                f"TwoLayerSoftmaxClassifier(solver={self.solver!r}), ...)."
            )
        return _DaskRows(self, self._current_client(), X, y, sample_weight,
                         first_call)

    def _current_client(self):
        if self.client is not None:
            return self.client
        try:
            return distributed.default_client()
        except ValueError:
            raise ValueError(
                "Fitting on Dask input needs a running Dask client, and none "
                "was found. Start one before fitting, e.g. "
                "`from distributed import Client; client = Client()` for a "
                "local cluster, or `Client('tcp://scheduler-host:8786')` for a "
                "running one; or set the estimator's client attribute."
            ) from None

    # ------------------------------------------------------------- prediction
    def _lazy(self, X, method, columns, dtype):
        """``method`` of the local model over the row blocks of X, lazily.

        ``columns`` is the width of its output (None for one value per row).
        """
        check_is_fitted(self)
        validate_data(self, _meta(X), reset=False, ensure_min_samples=0,
                      dtype=None)
        model = dask.delayed(self.to_local(), pure=True)
        blocks, _, _, lengths = _row_blocks(X)
        shape = () if columns is None else (columns,)
        return da.concatenate([
            da.from_delayed(dask.delayed(_apply, pure=True)(model, method, block),
                            shape=(n,) + shape, dtype=dtype)
            for block, n in zip(blocks, lengths)
        ])

    predict = _also_lazy("predict", lambda est: (None, est.classes_.dtype))
    predict_proba = _also_lazy(
        "predict_proba", lambda est: (est.classes_.size, est.coefs_[0].dtype))
    predict_log_proba = _also_lazy(
        "predict_log_proba", lambda est: (est.classes_.size, est.coefs_[0].dtype))
    decision_function = _also_lazy(
        "decision_function",
        lambda est: (None if est.classes_.size == 2 else est.classes_.size,
                     est.coefs_[0].dtype))

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on ``X`` and ``y``, weighted by ``sample_weight``.

        Dask input is scored block by block on the workers; only two numbers
        per block come back.

        Parameters
        ----------
        X : {array-like, sparse matrix, Dask array, Dask dataframe} of shape \
                (n_samples, n_features)
            Test samples.
        y : array-like, Dask array or Dask series of shape (n_samples,)
            True labels, with the row blocks (or partitions) of X.
        sample_weight : array-like, Dask array or Dask series of shape \
                (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            The weighted fraction of correct predictions.
        """
        if not _is_dask(X):
            return super().score(X, y, sample_weight)
        check_is_fitted(self)
        validate_data(self, _meta(X), reset=False, ensure_min_samples=0, dtype=None)
        model = dask.delayed(self.to_local(), pure=True)
        X_blocks, y_blocks, sw_blocks, _ = _row_blocks(X, y, sample_weight)
        parts = [
            dask.delayed(_hits, pure=True)(
                model, xb, y_blocks[i], None if sw_blocks is None else sw_blocks[i])
            for i, xb in enumerate(X_blocks)
        ]
        hits, total = np.sum(dask.compute(*parts), axis=0)
        return float(hits / total)
