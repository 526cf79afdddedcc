"""Where the row blocks go, whether they fit, and the tree of an evaluation.

Plain functions of plain data (worker addresses, their
:class:`~._faults.WorkerInfo`, row counts and sizes): the client asks the
scheduler where blocks are and what the workers have, and these decide
what to do about it. :func:`settle` is the one step that acts on the
cluster: it moves blocks to the place :func:`balance` gave them.
"""

import collections
from typing import NamedTuple

import numpy as np

from . import _worker


# ------------------------------------------------------------------- memory
def check_room(nbytes, workers, pause_fraction, name="X"):
    """A ``MemoryError`` where the largest block cannot fit in any worker.

    ``nbytes[i]`` is what block ``i``'s rows take (0 where unknown),
    ``workers`` maps addresses to :class:`~._faults.WorkerInfo`. A worker
    holds a block twice while it prepares it (checked and prepared, where X
    is copied to be aligned or split), and Dask pauses a worker whose process
    passes ``pause_fraction`` of its memory limit; spilling to disk cannot
    cut a block. So the largest block, twice, must fit in what some worker
    has left beside what its process holds besides data. Workers without a
    memory limit take any block.
    """
    if not len(nbytes) or not any(nbytes) or not workers:
        return
    limits = [info.memory_limit for info in workers.values()]
    if not all(limits):
        return
    room = max(info.memory_limit * pause_fraction - info.unmanaged
               for info in workers.values())
    largest = int(np.argmax(nbytes))
    need = 2 * nbytes[largest]
    if need > room:
        mib = 2.0 ** 20
        raise MemoryError(
            f"Row block {largest} of {name} takes {nbytes[largest] / mib:.0f} "
            f"MiB, and a worker holds a block twice while it prepares it "
            f"({need / mib:.0f} MiB), but the {len(workers)} workers have at "
            f"most {room / mib:.0f} MiB for data (memory limits of "
            f"{min(limits) / mib:.0f} to {max(limits) / mib:.0f} MiB, less "
            "what each worker process takes). Cut X into smaller blocks "
            "(X.rechunk({0: rows}), or df.repartition(partition_size=...)), "
            "use workers with more memory, or pass float32 data."
        )


def task_budget(info, task_bytes):
    """The most rows (bytes) one evaluation task of a worker takes.

    ``task-size`` (``task_bytes``), and no more than an eighth of the
    worker's memory limit per thread (well below the 60% at which Dask
    starts to spill): a task has all its blocks in memory at once.
    """
    if info is None or not info.memory_limit:
        return task_bytes
    return min(task_bytes, info.memory_limit / (8 * info.nthreads))


# ---------------------------------------------------------------- placement


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

    Workers are in a fixed order (running ones first, each group by address;
    None, for blocks with no known holder, last), so that for a given
    placement the sums are added in the same order, bit for bit. Worker
    ``k``'s parent in the tree is worker ``(k - 1) // fan_in``: the
    parameters flow from the root (worker 0) down the tree, and the partial
    sums flow up it, so that no worker sends or receives more than
    ``fan_in + 1`` of them.

    ``tasks[k]`` are worker ``k``'s evaluation tasks; a task is a tuple of
    groups, evaluated at once on the worker's threads; a group, a tuple of
    block indices, evaluated one after the other on one thread.
    """

    workers: tuple  # addresses, root first
    tasks: tuple  # per worker, its tasks: each a tuple of groups of block indices
    fan_in: int
    running: int  # the first ``running`` workers run tasks (the others: paused)

    def parent(self, k):
        return None if k == 0 else (k - 1) // self.fan_in

    def children(self, k):
        first = self.fan_in * k + 1
        return range(first, min(first + self.fan_in, len(self.workers)))


def groups(blocks, nbytes, threads, task_bytes):
    """One worker's blocks (ascending) cut into runs, one thread's work each.

    As few runs as keep each under ``task_bytes`` of rows (a block larger
    than that is a run of its own), and no fewer than the worker's
    ``threads``, with about as many bytes each.
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


def tasks(blocks, nbytes, threads, task_bytes):
    """One worker's evaluation tasks: its :func:`groups`, in one task where
    all its rows fit in the task budget of its threads, else one task each.

    A task has all its blocks in memory at once. One task a worker (its
    groups run at once on the worker's threads) keeps the scheduler's work
    per evaluation independent of the threads; where the rows do not fit
    (``threads * task_bytes``), each group is a task of its own, which
    Dask runs ``threads`` at a time and between which it can spill blocks.
    """
    runs = groups(blocks, nbytes, threads, task_bytes)
    if sum(nbytes[i] for i in blocks) <= threads * task_bytes:
        return (runs,)
    return tuple((run,) for run in runs)


def plan(locations, indices, fan_in, workers, nbytes, task_bytes):
    """The :class:`Plan` for blocks ``indices``, block ``i`` being
    evaluated on worker ``locations[i]``; ``workers`` maps addresses to
    :class:`~._faults.WorkerInfo`, ``nbytes[i]`` is the size of block
    ``i``'s rows and ``task_bytes`` the setting ``task-size``.

    Running workers come first (a paused one runs no task: it cannot be the
    root that the parameters are sent to), each group by address.
    """
    by_worker = collections.defaultdict(list)
    for i in sorted(indices):
        by_worker[locations[i]].append(i)

    def order(w):
        info = workers.get(w)
        return (w is None, info is None or not info.running, w or "")

    ordered = sorted(by_worker, key=order)
    return Plan(
        tuple(ordered),
        tuple(tasks(by_worker[w], nbytes,
                    workers[w].nthreads if w in workers else 1,
                    task_budget(workers.get(w), task_bytes))
              for w in ordered),
        fan_in,
        sum(not order(w)[1] for w in ordered),
    )


# ----------------------------------------------------------------- settling
def settle(client, watch, blocks, placed, rounds):
    """Move the blocks that were prepared away from their place there.

    A preparation only prefers its placed worker (held to it, the
    recomputation of a block lost with that worker would wait for it
    forever), so Dask's work stealing can run it on an idle worker
    instead, which undoes the balance (seen with distributed 2025.1).
    Such blocks are moved, in up to ``rounds`` rounds (a move can be
    stolen too); ``blocks`` (futures) is updated in place.
    """
    for round_ in range(rounds + 1):
        watch.wait(blocks)
        who_has = client.who_has(blocks)
        alive = watch.workers()
        astray = [i for i, worker in enumerate(placed)
                  if worker in alive and worker not in who_has.get(blocks[i].key, ())]
        if not astray or round_ == rounds:
            return
        for i in astray:
            blocks[i] = client.submit(_worker.moved, blocks[i], pure=False,
                                      **restriction(placed[i]))
