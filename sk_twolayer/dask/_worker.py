"""What runs on the workers: checking, preparing and evaluating row blocks.

Each function here takes and returns plain values (row blocks, summaries,
partial sums); the client submits them as tasks, one per block or per node
of the reduction tree (:mod:`._graph`), or, for the evaluations, calls them
through the workers' own RPC, which :func:`serve` answers (:mod:`._calls`).
The loss is the in-memory :class:`~sk_twolayer._loss.TwoLayerLoss`, one
per fit and worker thread, kept with its scratch buffers across
evaluations.
"""

import asyncio
import concurrent.futures
import pickle
import threading
import weakref
from typing import NamedTuple

import distributed
import numpy as np
from distributed.protocol.serialize import to_serialize
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
    """What the client learns of a checked block: enough to plan the fit,
    or, for a block of bad data, the error that says what is wrong with it."""

    n_rows: int
    labels: np.ndarray  # the distinct labels of the block, sorted
    mass: np.ndarray  # the summed sample weight of each of them
    nbytes: int  # the memory its rows take on a worker
    error: Exception | None = None  # bad data: the checks' ValueError


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
    evaluation: int = 0  # which evaluation of the fit (said in errors and logs)


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
    and contributes nothing. ``index`` names the block in errors. Bad data
    is not raised but returned (:class:`BlockStats` ``error``): the task
    succeeds, so that Dask tries again only what failed otherwise (a
    source that timed out, say), never the checks of bad data.
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
    except (ValueError, TypeError) as error:  # (the checks' errors of bad data)
        bad = type(error)(f"In row block {index} of {names[0]}: {error}")
        return Checked(None, BlockStats(0, np.empty(0), np.empty(0), 0, bad))
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
# Per worker: for each running fit (by token), each thread's loss object and
# the keys of the fit's blocks seen on the worker. A fit drops its own when
# it ends (forget). Should it not reach the workers then (its client closed,
# say), each worker drops a fit's scratch once it holds none of the fit's
# blocks any more (a look every second, while it has scratch). However many
# fits run at once (a threaded search, several users), each keeps its own.
_SCRATCH = weakref.WeakKeyDictionary()
_MADE = weakref.WeakKeyDictionary()  # worker -> the loss objects made there
_LOCK = threading.Lock()
_PRUNE_MS = 1000


class _Scratch:
    """One fit's scratch on one worker."""

    def __init__(self):
        self.losses = {}  # thread ident -> (TwoLayerLoss, gradient buffer)
        self.keys = set()  # keys of the fit's blocks seen on this worker


def loss_for(spec, worker, keys=()):
    """The loss object of this fit and thread on ``worker``, and a gradient
    buffer, kept across evaluations, as the in-memory L-BFGS keeps its one
    loss object: the scratch memory is allocated once per fit. ``keys``
    (of the blocks being evaluated) tie it to the fit's blocks."""
    with _LOCK:
        fits = _SCRATCH.setdefault(worker, {})
        scratch = fits.get(spec.token)
        if scratch is None:
            scratch = fits[spec.token] = _Scratch()
            if len(fits) == 1:
                worker.loop.add_callback(_watch_scratch, worker)
        scratch.keys.update(keys)
        kept = scratch.losses.get(threading.get_ident())
        if kept is None:
            layout = ParamLayout(*spec.shape, dtype=spec.dtype)
            kept = scratch.losses[threading.get_ident()] = (
                TwoLayerLoss(layout, activation=spec.activation),
                np.empty(layout.size, dtype=layout.dtype))
            _MADE.setdefault(worker, weakref.WeakSet()).add(kept[0])
    return kept


def _watch_scratch(worker):
    """On the worker's event loop: look every second for scratch whose fit
    left no block on the worker, and drop it; stop once none is left."""
    from tornado.ioloop import PeriodicCallback

    name = "sk-twolayer-scratch"
    if name in worker.periodic_callbacks:
        return

    def prune():
        with _LOCK:
            fits = _SCRATCH.get(worker, {})
            for token, scratch in list(fits.items()):
                if not any(key in worker.state.tasks for key in scratch.keys):
                    del fits[token]
            if not fits:
                worker.periodic_callbacks.pop(name).stop()

    callback = worker.periodic_callbacks[name] = PeriodicCallback(prune, _PRUNE_MS)
    callback.start()


def scratch_of(worker):
    """The fits with scratch on ``worker``, and the loss objects made there
    that are still alive, wherever they are held."""
    with _LOCK:
        return len(_SCRATCH.get(worker, {})), len(_MADE.get(worker, ()))


def forget(token, dask_worker=None):
    """Drop the scratch memory of fit ``token`` (run on every worker when
    the fit ends, whatever its outcome)."""
    with _LOCK:
        _SCRATCH.get(dask_worker, {}).pop(token, None)


def block_terms(spec, theta, blocks, worker, keys=()):
    """The blocks' share of the objective at ``theta``, as a :class:`Partial`.

    Training rows give ``sum_i w_i l_i / W`` and its gradient, with ``W``
    the weight of all the training rows: the shares of all blocks add up to
    the in-memory data term. Validation rows give the shares of the
    validation loss and accuracy. Run on one thread of ``worker``, with its
    loss object; ``keys`` are the blocks' keys.
    """
    loss, buffer = loss_for(spec, worker, keys)
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
    with _LOCK:
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
    keys = worker.state.tasks[worker.get_current_task()].dependencies
    keys = [dependency.key for dependency in keys]
    parts = [[blocks[i] for i in group] for group in groups]
    if len(parts) == 1:
        partials = [block_terms(spec, theta, parts[0], worker, keys)]
    else:
        partials = list(_pool(worker).map(
            lambda part: block_terms(spec, theta, part, worker, keys), parts))
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


# ------------------------------------------------------ evaluations, called
# The name of the workers' handler of an evaluation (a call to the worker's
# own RPC server, which answers the scheduler and other workers too).
OP = "sk_twolayer_evaluate"


class BlockMissing(LookupError):
    """A block that the call names is not (or no longer) on this worker."""


class Failure(NamedTuple):
    """What a call answers where its evaluation failed: the ``error``, the
    ``worker`` it happened on, and whether that worker could not be
    reached (``lost``: by its parent in the tree) rather than failed."""

    error: BaseException
    worker: str
    lost: bool


class Node(NamedTuple):
    """One worker's share of an evaluation, called on it: the keys of its
    blocks in groups (one thread's work each), whether its groups run one
    after the other (its rows do not fit in memory at once), and the nodes
    below it in the tree, whose totals it adds to its own, in order."""

    address: str
    groups: tuple  # of tuples of block keys
    one_by_one: bool
    children: tuple  # of Node


def serve(dask_worker):
    """Answer the fits' calls on this worker (run on a worker with
    ``Client.run`` when a fit first calls it): :func:`evaluate` as its
    handler :data:`OP`. (A handler is a function in the worker's table of
    them; it holds nothing, and stays for the next fit.)"""
    if not isinstance(dask_worker.handlers.get(OP), _Handler):
        dask_worker.handlers[OP] = _Handler(dask_worker)


class _Handler:
    """The handler :data:`OP` of one worker: ``evaluate(worker, ...)``."""

    def __init__(self, worker):
        self.worker = weakref.ref(worker)
        self.__name__ = OP

    async def __call__(self, spec=None, theta=None, node=None):
        return await evaluate(self.worker(), spec, theta, node)


async def evaluate(worker, spec, theta, node):
    """Node ``node``'s total of an evaluation at ``theta``: its own blocks,
    on its threads, then its children's totals, which it calls for at once
    (worker to worker, as the client called it), added in order.

    Its blocks are read from the worker's memory (where Dask keeps, spills
    and restores them) on the worker's event loop, and evaluated on the
    worker's pool of threads. A block that is not there is a
    :class:`BlockMissing`: the client then looks where the blocks are now.
    An error is answered as a :class:`Failure` (a child's, as the child
    answered it; a child that cannot be reached, as lost), not raised:
    what the caller's connection raises is then always the connection's.
    """
    children = [asyncio.ensure_future(call(worker.rpc, spec, theta, child))
                for child in node.children]
    try:
        own = await _own_terms(worker, spec, theta, node)
        totals = [own]
        for child, future in zip(node.children, children):
            try:
                total = await future
            except (OSError, asyncio.TimeoutError, TimeoutError) as error:
                return _sent(Failure(error, child.address, True))
            if isinstance(total, Failure):
                return _sent(total)
            totals.append(total)
        return _sent(add_children(spec, *totals) if len(totals) > 1 else own)
    except Exception as error:
        return _sent(Failure(error, worker.address, False))
    finally:
        for future in children:  # (a failed node stops waiting for the rest)
            future.cancel()


async def _call(rpc, spec, theta, node):
    """One call of :func:`evaluate` on the worker of ``rpc``."""
    return await getattr(rpc, OP)(spec=to_serialize(spec), theta=to_serialize(theta),
                                  node=to_serialize(node))


def _sent(answer):
    """A :class:`Partial` or a :class:`Failure` as a call's answer (arrays
    as frames of their own, the failure pickled)."""
    if isinstance(answer, Failure):
        try:
            pickle.dumps(answer.error)
        except Exception:  # (said in words where it does not travel)
            answer = answer._replace(error=RuntimeError(
                f"{type(answer.error).__name__}: {answer.error}"))
        return {"failure": to_serialize(answer)}
    return {"value": to_serialize(answer.value),
            "grad": None if answer.grad is None else to_serialize(answer.grad),
            "planned": answer.planned}


def _received(answer):
    if "failure" in answer:
        return answer["failure"]
    return Partial(answer["value"], answer["grad"], answer["planned"])


def call(rpc, spec, theta, node):
    """The coroutine of one call of :func:`evaluate` through ``rpc`` (the
    client's, or a worker's, connection pool to the node's worker); its
    answer is a :class:`Partial`."""
    async def called():
        return _received(await _call(rpc(node.address), spec, theta, node))

    return called()


async def _own_terms(worker, spec, theta, node):
    """The node's own blocks' share, as a :class:`Partial`: their groups at
    once on the worker's threads (one by one where its rows do not fit in
    memory at once), added in group order. The blocks are read from the
    worker's memory here, on its event loop."""
    loop = asyncio.get_running_loop()
    pool = _pool(worker)

    def blocks_of(group):
        try:
            return [worker.data[key] for key in group]
        except KeyError as error:
            raise BlockMissing(f"block {error} is not on worker {worker.address}") \
                from None

    keys = [key for group in node.groups for key in group]
    if node.one_by_one:  # a group's blocks in memory at a time
        partials = []
        for group in node.groups:
            blocks = blocks_of(group)
            partials.append(await loop.run_in_executor(
                pool, block_terms, spec, theta, blocks, worker, keys))
            del blocks
    else:
        partials = await asyncio.gather(*[
            loop.run_in_executor(pool, block_terms, spec, theta, blocks_of(group),
                                 worker, keys)
            for group in node.groups])
    return add(*partials)


def add_children(spec, own, *children):
    """A node's total: its own partial sum, then its children's, in order."""
    return add(own, *children)


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
