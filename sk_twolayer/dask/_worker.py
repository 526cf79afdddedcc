"""What runs on the workers: checking, preparing and evaluating row blocks.

Each function here takes and returns plain values (row blocks, summaries,
partial sums); the client submits them as tasks, one per block or per node
of the reduction tree (:mod:`._objective`). The loss is the in-memory
:class:`~sk_twolayer._loss.TwoLayerLoss`, one per fit and worker thread,
kept with its scratch buffers across evaluations.
"""

import collections
import concurrent.futures
import threading
import weakref
from typing import NamedTuple

import distributed
import numpy as np
import scipy.sparse as sp
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_array, column_or_1d

from .._classifier import _ALLOW_ZERO_WEIGHTS, _label_indices
from .._loss import TwoLayerLoss
from .._params import ParamLayout


# ------------------------------------------------------------------ the types
class Rows(NamedTuple):
    """Rows of a block: X (N, D), labels or class indices y (N,), weights (N,)."""

    X: object
    y: np.ndarray
    sample_weight: np.ndarray


class BlockStats(NamedTuple):
    """What the client learns of a checked block: enough to plan the fit."""

    n_rows: int
    labels: np.ndarray  # the distinct labels of the block, sorted
    mass: np.ndarray  # the summed sample weight of each of them
    nbytes: int  # the memory its rows take on a worker


class Checked(NamedTuple):
    """A block as the user gave it, checked as the in-memory fit checks data."""

    rows: Rows
    stats: BlockStats


class Summary(NamedTuple):
    """The rows of one part (training or validation) of a prepared block."""

    n: int
    weight: float  # their summed (class-weighted) sample weight
    low: float  # their smallest weight (inf without rows)
    high: float  # their largest weight (-inf without rows)
    nbytes: int  # the memory they take


class Prepared(NamedTuple):
    """A block ready for evaluations: class indices, final weights, aligned X.

    ``train`` and ``val`` are its training and validation rows (either may
    be None), ``summary`` maps ``"train"`` and ``"val"`` to a
    :class:`Summary` of each.
    """

    train: Rows | None
    val: Rows | None
    summary: dict


class LossSpec(NamedTuple):
    """What a worker needs to evaluate one part of the data at some theta."""

    token: str  # the fit: a worker keeps one loss per fit and thread
    part: str  # "train" (loss and gradient) or "val" (loss and accuracy)
    shape: tuple  # (D, H, C)
    dtype: np.dtype
    activation: str
    uniform: bool  # equal positive weights: evaluate without them
    weight_sum: float  # of all the part's rows: each block adds its share


class Partial(NamedTuple):
    """A sum of blocks' shares of the objective; ``planned``: whether every
    one of them ran on the worker the plan gave it."""

    value: np.ndarray  # (1,) loss, or (2,) loss and accuracy
    grad: np.ndarray | None  # float64 (P,), training only
    planned: bool


# ------------------------------------------------------------ memory layout
def aligned(X):
    """X in C order with every array aligned for its dtype; copied only if not.

    An array that a worker received over the network (``da.from_array`` of
    an in-memory array, ``client.scatter``, a block moved between workers)
    is deserialized wherever its bytes fell in the message, often not even
    8-byte aligned, and numpy and BLAS then run 1.3 to 1.6 times slower on
    it. Arrays computed on the worker are aligned already.
    """
    if sp.issparse(X):
        parts = [np.require(a, requirements=("C", "A"))
                 for a in (X.data, X.indices, X.indptr)]
        if all(p is a for p, a in zip(parts, (X.data, X.indices, X.indptr))):
            return X
        return sp.csr_matrix(tuple(parts), shape=X.shape)
    return np.require(X, requirements=("C", "A"))


def _rows_nbytes(rows):
    X = rows.X
    nbytes = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
              if sp.issparse(X) else X.nbytes)
    return int(nbytes + rows.y.nbytes + rows.sample_weight.nbytes)


# ------------------------------------------------------------ preparing data
def check_block(index, X, y, sample_weight, dtype, names=("X", "y", "sample_weight")):
    """One row block checked as the in-memory fit checks its data.

    A block without rows is fine (a filtered partition, say): it is kept,
    and contributes nothing. ``index`` names the block in errors.
    """
    try:
        X = check_array(X, accept_sparse="csr", dtype=dtype, order="C",
                        ensure_min_samples=0, input_name=names[0])
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=None,
                                     ensure_min_samples=0, input_name=names[1]),
                         warn=True)
        if y.shape[0] != X.shape[0]:
            raise ValueError(
                f"{names[1]} has {y.shape[0]} rows where {names[0]} has "
                f"{X.shape[0]}: {names[1]} is not aligned with {names[0]}. Chunk "
                f"{names[1]} like {names[0]} ({names[1]}.rechunk({names[0]}.chunks[0])), "
                "or take them from the same dataframe."
            )
        if X.shape[0]:
            check_classification_targets(y)
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=dtype, ensure_non_negative=True,
                copy=True, **_ALLOW_ZERO_WEIGHTS,
            )
        else:  # (scikit-learn's checks reduce over the rows: none to reduce)
            if sample_weight is not None and np.shape(sample_weight)[0]:
                raise ValueError(
                    f"{names[2]} has {np.shape(sample_weight)[0]} rows where "
                    f"{names[0]} has none: it is not aligned with {names[0]}."
                )
            sample_weight = np.empty(0, dtype=dtype)
    except ValueError as error:
        raise ValueError(f"In row block {index} of {names[0]}: {error}") from None
    labels, inverse = np.unique(y, return_inverse=True)
    rows = Rows(X, y, sample_weight)
    return Checked(rows, BlockStats(
        n_rows=X.shape[0], labels=labels,
        mass=np.bincount(inverse.reshape(-1), weights=sample_weight,
                         minlength=labels.size),
        nbytes=_rows_nbytes(rows),
    ))


def stats_of(checked):
    return checked.stats


def held_out(key, offset, n, fraction):
    """Whether rows ``offset .. offset + n`` of the data are held out.

    Row ``i`` is held out when the ``i``-th number of one Philox stream
    keyed by ``key`` is below ``fraction``: the same rows whatever the
    chunking and the number of workers.
    """
    bits = np.random.Philox(key=key)
    step, skip = divmod(int(offset), 4)  # four numbers per step of the counter
    bits.advance(step)
    return np.random.Generator(bits).random(skip + n)[skip:] < fraction


def _summary(rows):
    if rows is None:
        return Summary(0, 0.0, np.inf, -np.inf, 0)
    w = rows.sample_weight.astype(np.float64)
    return Summary(int(rows.X.shape[0]), float(w.sum()),
                   float(w.min(initial=np.inf)), float(w.max(initial=-np.inf)),
                   _rows_nbytes(rows))


def prepare_block(checked, offset, labels, per_class, split):
    """Class indices, final weights, aligned rows; training and validation.

    ``split`` is None (all rows train), ``"val"`` (a block of the user's
    validation set) or ``(key, fraction)`` for :func:`held_out`, with
    ``offset`` the position of the block's first row in the data. It runs
    on the worker the block is placed on, so X is aligned where it stays.
    """
    X, y, sample_weight = checked.rows
    X = aligned(X)
    y = _label_indices(y, labels) if y.size else np.zeros(0, dtype=np.intp)
    if per_class is not None:
        sample_weight = sample_weight * per_class[y].astype(sample_weight.dtype)
    rows = Rows(X, y, sample_weight)
    if split is None:
        train, val = rows, None
    elif split == "val":
        train, val = None, rows
    else:
        held = held_out(split[0], offset, X.shape[0], split[1])
        train, val = (Rows(X[mask], y[mask], sample_weight[mask])
                      for mask in (~held, held))
    return Prepared(train, val, {"train": _summary(train), "val": _summary(val)})


def summary_of(prepared):
    return prepared.summary


def moved(prepared):
    """The block, aligned where it is now: run on a worker that does not
    hold it, this moves it there (it arrives over the network)."""
    def in_line(rows):
        return None if rows is None else rows._replace(X=aligned(rows.X))

    return prepared._replace(train=in_line(prepared.train), val=in_line(prepared.val))


# ---------------------------------------------------------------- evaluating
# Per worker process: for the running fits (by token), each thread's loss
# object. A fit drops its own when it ends (forget); should it not reach the
# workers then (its client lost), only the latest fits' are kept.
_LOSSES = collections.OrderedDict()
_LOSSES_LOCK = threading.Lock()
_KEEP_FITS = 2


def loss_for(spec):
    """The loss object of this fit and thread, and a gradient buffer, kept
    across evaluations, as the in-memory L-BFGS keeps its one loss object:
    the scratch memory is allocated once per fit."""
    with _LOSSES_LOCK:
        per_thread = _LOSSES.setdefault(spec.token, {})
        _LOSSES.move_to_end(spec.token)
        while len(_LOSSES) > _KEEP_FITS:
            _LOSSES.popitem(last=False)
        kept = per_thread.get(threading.get_ident())
        if kept is None:
            layout = ParamLayout(*spec.shape, dtype=spec.dtype)
            kept = per_thread[threading.get_ident()] = (
                TwoLayerLoss(layout, activation=spec.activation),
                np.empty(layout.size, dtype=layout.dtype))
    return kept


def forget(token):
    """Drop the scratch memory of fit ``token`` (run on every worker when
    the fit ends, whatever its outcome)."""
    with _LOSSES_LOCK:
        _LOSSES.pop(token, None)


def block_terms(spec, theta, blocks):
    """The blocks' share of the objective at ``theta``, as a :class:`Partial`.

    Training rows give ``sum_i w_i l_i / W`` and its gradient, with ``W``
    the weight of all the training rows: the shares of all blocks add up to
    the in-memory data term. Validation rows give the shares of the
    validation loss and accuracy. Run on one thread, with its loss object.
    """
    loss, buffer = loss_for(spec)
    value = np.zeros(1 if spec.part == "train" else 2)
    grad = np.zeros(loss.layout.size) if spec.part == "train" else None
    for block in blocks:
        X, y, sample_weight = getattr(block, spec.part)
        X = aligned(X)  # (a copy only where the task ran away from its block)
        if spec.part == "train":
            share, g = loss.data_loss_gradient(
                theta, X, y, None if spec.uniform else sample_weight,
                grad=buffer, weight_sum=spec.weight_sum)
            value[0] += share
            grad += g
        else:
            value += loss.evaluate(theta, X, y, sample_weight,
                                   weight_sum=spec.weight_sum)
    return Partial(value, grad, True)


# Per worker: a pool of threads for the groups of its evaluation tasks, kept
# for as long as the worker (numpy and BLAS release the GIL).
_POOLS = weakref.WeakKeyDictionary()


def _pool(worker):
    """The worker's pool: as many threads as the worker has."""
    with _LOSSES_LOCK:
        pool = _POOLS.get(worker)
        if pool is None:
            pool = _POOLS[worker] = concurrent.futures.ThreadPoolExecutor(
                worker.state.nthreads, thread_name_prefix="sk-twolayer-evaluate")
    return pool


def worker_terms(spec, theta, planned, groups, *blocks):
    """One task's share of an evaluation: ``blocks``, in ``groups`` (tuples
    of positions in ``blocks``) evaluated at once on as many of the worker's
    threads, and added up in group order (a fixed order of the additions).

    One task a worker, whatever its threads: the scheduler's work for an
    evaluation grows with the workers, not with their threads. ``planned``
    is the worker the plan put this task on (``Partial.planned`` says
    whether it ran there).
    """
    worker = distributed.get_worker()
    parts = [[blocks[i] for i in group] for group in groups]
    if len(parts) == 1:
        partials = [block_terms(spec, theta, parts[0])]
    else:
        partials = list(_pool(worker).map(
            lambda part: block_terms(spec, theta, part), parts))
    return add(*partials)._replace(planned=worker.address == planned)


def add(*partials):
    """The sum of partial sums, in the order given (a fixed order of the
    floating-point additions for a fixed plan)."""
    value = partials[0].value.copy()
    grad = None if partials[0].grad is None else partials[0].grad.copy()
    for p in partials[1:]:
        value += p.value
        if grad is not None:
            grad += p.grad
    return Partial(value, grad, all(p.planned for p in partials))


def relay(theta):
    """The parameters, passed on: run on a worker, this leaves a copy there
    for the tasks of that worker and of its children in the tree."""
    return theta


# ---------------------------------------------------------------- predicting
def _in_line(X):
    """Arrays aligned (:func:`aligned`); dataframes as they are."""
    return aligned(X) if isinstance(X, np.ndarray) or sp.issparse(X) else X


def apply(model, method, X, empty):
    """``model.method(X)``; ``empty`` is the result for a block without rows."""
    if X.shape[0] == 0:
        return empty
    return getattr(model, method)(_in_line(X))


def hits(model, X, y, sample_weight):
    """Weighted correct predictions of one block, and its total weight."""
    y = column_or_1d(y)
    if y.shape[0] == 0:
        return np.zeros(2)
    correct = (model.predict(_in_line(X)) == y).astype(np.float64)
    if sample_weight is None:
        return np.array([correct.sum(), correct.size], dtype=np.float64)
    sample_weight = column_or_1d(sample_weight).astype(np.float64)
    return np.array([sample_weight @ correct, sample_weight.sum()])
