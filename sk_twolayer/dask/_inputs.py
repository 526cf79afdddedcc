"""The user's collections as row blocks: X, y and the weights lined up.

A Dask array X is cut into its row blocks, with y and the weights cut
alike; a Dask dataframe X goes partition by partition, with y and the
weights as columns beside it; in-memory arrays (a validation set, say)
are cut into blocks of whole rows. Nothing is computed here: the blocks
are delayed objects, which the fit computes (once) on the workers.
"""

import math
from typing import NamedTuple

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
from dask.utils import parse_bytes
from sklearn.utils import check_consistent_length


def is_dask(obj):
    return dask.is_dask_collection(obj)


class RowBlocks(NamedTuple):
    """Delayed row blocks of X, y and the weights (None where not given),
    and the blocks' lengths (NaN where Dask does not know them)."""

    X: list
    y: list | None
    sample_weight: list | None
    lengths: tuple


def array_blocks(array, name, lengths=None):
    """Delayed row blocks of a Dask (or in-memory) array, cut at ``lengths``.

    ``lengths`` are the row counts of X's blocks, which an in-memory array or
    a Dask array of other chunks is cut to, where they are known.
    """
    if not is_dask(array):
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


def row_blocks(X, y=None, sample_weight=None, names=("X", "y", "sample_weight")):
    """Delayed row blocks of X, y and the weights, aligned; and their lengths.

    A Dask array X takes Dask arrays (or in-memory ones) cut like it. A Dask
    dataframe X takes Dask series: the three are put side by side in one
    dataframe, so that each partition holds the same rows of all three (Dask
    may otherwise read a narrow column in fewer, larger partitions).
    Lengths are NaN where Dask does not know them.
    """
    if isinstance(X, da.Array):
        X_blocks, lengths = array_blocks(X, names[0])
        others = [None if a is None else array_blocks(a, name, lengths)[0]
                  for a, name in zip((y, sample_weight), names[1:])]
        return RowBlocks(X_blocks, *others, tuple(lengths))
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
        if not (is_dask(value) and getattr(value, "ndim", None) == 1
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
    return RowBlocks(X_blocks, *others, (math.nan,) * len(parts))


def memory_blocks(X, y=None, sample_weight=None, names=("X", "y", "sample_weight")):
    """Delayed row blocks of in-memory X (a numpy array or a CSR matrix, of
    any width), y and the weights, each block of whole rows and at most
    Dask's ``array.chunk-size``; their data travel in the graph, as
    ``da.from_array``'s do, so that a lost block is made again."""
    for name, value in zip(names[1:], (y, sample_weight)):
        if is_dask(value):
            raise TypeError(
                f"{name} is a Dask collection but {names[0]} is in memory: pass "
                f"{names[0]} as a Dask array or dataframe too, or compute {name}."
            )
    check_consistent_length(X, *[a for a in (y, sample_weight) if a is not None])
    n = X.shape[0]
    row_bytes = ((X.data.nbytes + X.indices.nbytes) / max(n, 1) if sp.issparse(X)
                 else X.shape[1] * X.dtype.itemsize)
    rows = max(1, int(parse_bytes(dask.config.get("array.chunk-size"))
                      // max(row_bytes, 1)))
    starts = range(0, max(n, 1), rows)  # (one empty block for no rows)

    def cut(a):
        if a is None:
            return None
        a = a if sp.issparse(a) else np.asarray(a)
        return [dask.delayed(a[i:i + rows], pure=False, traverse=False)
                for i in starts]

    return RowBlocks(cut(X), cut(y), cut(sample_weight),
                     tuple(min(rows, n - i) for i in starts))


def is_sparse(X):
    """Whether the blocks of Dask array X are sparse matrices."""
    return sp.issparse(getattr(X, "_meta", None))


def meta(X):
    """An empty in-memory stand-in of X: its columns, names and dtypes."""
    if isinstance(X, da.Array):
        return np.zeros((0,) + X.shape[1:], dtype=X.dtype)
    return X._meta
