"""Where the row blocks go, and the tree that an evaluation follows.

Both are plain functions of plain data (worker addresses, thread counts,
row counts): the client asks the scheduler where blocks are, and these
decide what to do about it.
"""

import collections
from typing import NamedTuple

import numpy as np


def balance(nthreads, holders, n_rows):
    """A worker for each block, so that each worker thread gets its share of rows.

    ``nthreads`` maps each worker to its threads, ``holders[i]`` lists the
    workers that hold block ``i`` and ``n_rows[i]`` is its length. A block
    stays on a worker that holds it while that worker is under its share
    (its threads' fraction of all rows); the blocks left over go, largest
    first, to the worker with the fewest rows per thread. Moving them costs
    one transfer per fit; an unbalanced placement would cost every
    evaluation the wait for the busiest worker. None for every block where
    there is no worker.
    """
    if not nthreads:
        return [None] * len(holders)
    share = float(np.sum(n_rows)) / sum(nthreads.values())
    load = dict.fromkeys(nthreads, 0)
    place = [None] * len(holders)
    left_over = []
    for i in np.argsort(-np.asarray(n_rows), kind="stable"):
        alive = [w for w in sorted(holders[i]) if w in load]
        holder = min(alive, key=lambda w: load[w] / nthreads[w], default=None)
        if holder is not None and load[holder] + n_rows[i] <= share * nthreads[holder]:
            place[i] = holder
            load[holder] += n_rows[i]
        else:
            left_over.append((i, alive))
    for i, alive in left_over:
        place[i] = min(load, key=lambda w: ((load[w] + n_rows[i]) / nthreads[w],
                                            w not in alive, w))
        load[place[i]] += n_rows[i]
    return place


def where(placed, holders):
    """The worker a block is evaluated on: the one it was placed on where
    that one holds it, else the first of its holders, else None (no worker
    holds it now: it is being recomputed, and goes wherever it is)."""
    holders = sorted(holders)
    if placed in holders:
        return placed
    return holders[0] if holders else None


def restriction(worker):
    """Task options that prefer ``worker`` but let the task run anywhere
    where it has gone (so that a lost worker never leaves a task waiting);
    none for ``None``."""
    if worker is None:
        return {}
    return {"workers": [worker], "allow_other_workers": True}


class Plan(NamedTuple):
    """The tasks of one evaluation: which worker evaluates which blocks, in
    which tasks, and the tree that connects the workers.

    Workers are in a fixed order (by address; None, for blocks with no
    known holder, last), so that for a given placement the sums are added
    in the same order, bit for bit. Worker ``k``'s parent in the tree is
    worker ``(k - 1) // fan_in``: the parameters flow from the root (worker
    0) down the tree, and the partial sums flow up it, so that no worker
    sends or receives more than ``fan_in + 1`` of them.
    """

    workers: tuple  # addresses, root first
    tasks: tuple  # per worker, its tasks: each a tuple of block indices
    fan_in: int

    def parent(self, k):
        return None if k == 0 else (k - 1) // self.fan_in

    def children(self, k):
        first = self.fan_in * k + 1
        return range(first, min(first + self.fan_in, len(self.workers)))


def tasks(blocks, nbytes, threads, task_bytes):
    """One worker's blocks (ascending) cut into runs, one task each.

    As few tasks as keep each under ``task_bytes`` of rows (a block larger
    than that is a task of its own), and no fewer than the worker's
    ``threads``, with about as many bytes each: a task has all its blocks
    in memory at once, and each task costs the scheduler and the worker
    about a millisecond.
    """
    blocks = np.asarray(blocks)
    sizes = np.asarray([nbytes[i] for i in blocks], dtype=float)
    ends = np.cumsum(sizes)
    n = int(max(threads, np.ceil(ends[-1] / task_bytes)))
    while n < len(blocks):
        # Cut where the running total crosses each n-th of the whole (a
        # large block may take several cuts, and leave fewer runs).
        cuts = np.unique(np.searchsorted(ends, ends[-1] * np.arange(1, n) / n,
                                         side="right"))
        runs = [run for run in np.split(np.arange(len(blocks)), cuts) if run.size]
        if (len(runs) >= min(threads, len(blocks))
                and max(sizes[run].sum() for run in runs) <= task_bytes):
            return tuple(tuple(int(i) for i in blocks[run]) for run in runs)
        n += 1
    return tuple((int(i),) for i in blocks)


def plan(locations, indices, fan_in, nthreads, nbytes, task_bytes):
    """The :class:`Plan` for blocks ``indices``, block ``i`` being
    evaluated on worker ``locations[i]``; ``nthreads`` maps workers to
    their threads, ``nbytes[i]`` is the size of block ``i``'s rows and
    ``task_bytes(worker)`` the most that one task of that worker takes."""
    by_worker = collections.defaultdict(list)
    for i in sorted(indices):
        by_worker[locations[i]].append(i)
    order = sorted(by_worker, key=lambda w: (w is None, w or ""))
    return Plan(
        tuple(order),
        tuple(tasks(by_worker[w], nbytes, nthreads.get(w, 1), task_bytes(w))
              for w in order),
        fan_in,
    )
