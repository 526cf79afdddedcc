"""What every section of the benchmark shares.

- **the results file**: where it is, reading it, writing it;
- **the run stamp**: when, where and with what a section was measured
  (date, command, commit, machine, versions, configuration);
- **timing**: contenders timed alternately, and the ratio of two of them;
- **data makers**: the problems the sections time, and the reference
  workloads more than one section compares with (the GEMM bound).

Sections import this module and nothing else of ``benchmarks/``; it imports
no section. It imports no ``sk_twolayer`` at the top either: section (i)
times the package of another commit, put first on the path after this
module is loaded.
"""

import contextlib
import gc
import hashlib
import importlib.util
import inspect
import json
import os
import platform
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("sk_twolayer") is None:  # a checkout, not installed
    sys.path.insert(0, str(HERE.parent))
RESULTS = HERE / "results.json"
DTYPES = {"float64": np.float64, "float32": np.float32}

TARGETS = {
    "loss_and_gradient_roofline_float64": 0.85,
    "loss_and_gradient_roofline_float32": 0.80,
    "sgd_epoch_roofline_float64": 0.80,
    "sgd_epoch_roofline_float32": 0.80,
    "speedup_vs_mlp_sgd": 1.3,
    "speedup_vs_mlp_lbfgs": 1.3,
    "speedup_vs_torch": 1.0,
    "memory_ratio_vs_mlp": 0.25,
    "dask_overhead_vs_round_trip": 2.0,
    # issue 21 (was 1.25 in issue 17): for blocks made on the workers and
    # for blocks sent from an in-memory array alike
    "dask_one_worker_vs_memory": 1.10,
    "dask_two_workers_vs_one": 1.6,
    # issue 36: an L-BFGS iteration on two workers against one in-memory
    # thread (the in-memory time over the two workers')
    "dask_two_workers_vs_memory": 1.8,
    "dask_speedup_vs_spark": 3.0,
    # issue 29: our minibatch fit's time over a jitted JAX loop's, and the
    # step's time outside its two large GEMMs over that of 8c204ab
    "time_vs_jax": 1.0,
    "outside_gemm_vs_before": 0.5,
    # issue 27: the scheduler's work per evaluation (section j)
    "dask_cost_scheduler_mib_16": 2.0,
    # (issue 36: 5 ms at 2 workers, was 10 in issue 27)
    "dask_cost_scheduler_cpu_ms_2": 5.0,
    "dask_cost_scheduler_cpu_ms_per_worker": 1.0,
    "dask_cost_star_vs_tree_2": 1.0,
}


# -------------------------------------------------------------- statistics
# A speed ratio is the ratio of the two contenders' median times over at
# least MIN_REPEATS repeats, timed after a warm-up, in which the contenders
# alternate (A B B A A B ...). Its spread is the interquartile range of the
# per-repeat ratios, each taken between the two contenders' runs of the same
# repeat (next to each other in time), widened where needed to take in the
# ratio of the medians. A goal is met only where the whole spread clears it,
# missed only where the whole spread misses it, and "within noise" otherwise.
MIN_REPEATS = 5
SPREAD_WORDS = "spread: interquartile range of the per-repeat ratios"


def time_call(f, sync=None):
    """Seconds of one call of ``f``; ``sync`` (an accelerator's synchronize)
    runs before the clock starts and before it stops."""
    if sync is not None:
        sync()
    t = time.perf_counter()
    f()
    if sync is not None:
        sync()
    return time.perf_counter() - t


def alternate(funcs, repeats, warmup=1, sync=None):
    """Time each of ``funcs`` (a dict) ``repeats`` times, alternating order.

    Each function first runs ``warmup`` times untimed. Returns a dict of
    arrays of seconds, one entry per repeat, so that ratios can be taken
    pairwise within the same repeat. ``sync`` (an accelerator's synchronize)
    runs before each clock starts and before it stops. As in ``timeit``,
    Python's garbage collector does not run inside a timed call, but
    between the calls (and on the warm-up's garbage before the repeats).
    """
    names = list(funcs)
    for _ in range(warmup):
        for name in names:
            funcs[name]()
    gc.collect(1)  # (the young generations: what the warm-up left)
    times = {name: [] for name in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            enabled = gc.isenabled()
            gc.disable()
            try:
                times[name].append(time_call(funcs[name], sync))
            finally:
                if enabled:
                    gc.enable()
    return {name: np.array(t) for name, t in times.items()}


def ratio(num, den):
    """The ratio of the medians of two contenders' repeats, num / den."""
    return float(np.median(num) / np.median(den))


def iqr(values):
    """The interquartile range of ``values``: [25th, 75th percentile]."""
    return [float(np.percentile(values, 25)), float(np.percentile(values, 75))]


def ratio_spread(num, den):
    """The interquartile range of the per-repeat ratios num_i / den_i."""
    return iqr(np.asarray(num, dtype=float) / np.asarray(den, dtype=float))


def compared(name, num, den):
    """``{name: ratio of medians, name_spread: its spread}`` of num / den."""
    value, (lo, hi) = ratio(num, den), ratio_spread(num, den)
    return {name: value, f"{name}_spread": [min(lo, value), max(hi, value)]}


def spread_text(spread, digits=2):
    """A spread as the tables print it: "0.98-1.04", or "not recorded"."""
    if spread is None:
        return "not recorded"
    return f"{spread[0]:.{digits}f}-{spread[1]:.{digits}f}"


def seconds(times):
    """Each contender's seconds per repeat, as the results file keeps them."""
    return {name: [float(v) for v in t] for name, t in times.items()}


def verdict(value, spread, target, lower_is_better=False, repeats=None):
    """Whether a goal is met, from the spread of its measurement.

    ``spread`` None: no spread was recorded (a section measured before
    spreads were). A measurement that is not a timing (memory, counts) is
    given with its value as its spread, ``[value, value]``.
    """
    if value is None:
        return "not measured"
    if spread is None:
        return "spread not recorded"
    if repeats is not None and repeats < MIN_REPEATS:
        return f"too few repeats ({repeats} < {MIN_REPEATS})"
    lo, hi = spread
    if lower_is_better:
        return "met" if hi <= target else "missed" if lo > target else "within noise"
    return "met" if lo >= target else "missed" if hi < target else "within noise"


def goal(value, target, lower_is_better=False, spread=None, repeats=None,
         exact=False, note=None):
    """One goal: its value, spread, target and verdict.

    ``exact``: the value is not a timing (peak memory, a count), so its
    verdict is taken from the value itself. ``note``: why the comparison
    cannot give a verdict (it then gives none).
    """
    if exact and value is not None:
        spread = [value, value]
    entry = {"value": value, "target": target, "spread": spread,
             "repeats": repeats, "exact": exact}
    if lower_is_better:
        entry["lower_is_better"] = True
    entry["verdict"] = note or verdict(value, spread, target, lower_is_better,
                                       None if exact else repeats)
    entry["met"] = {"met": True, "missed": False}.get(entry["verdict"])
    return entry


def quietly(fit):
    """``fit()`` with scikit-learn's ConvergenceWarning silenced (the
    benchmarks stop fits at a fixed number of iterations on purpose)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit()


# ------------------------------------------------------------ data makers
def problem(n, d, c, dtype, seed=0, density=None):
    """Data of n samples whose labels a two-layer network can learn."""
    rng = np.random.default_rng(seed)
    if density is None:
        X = rng.standard_normal((n, d), dtype=np.float32).astype(dtype, copy=False)
    elif hasattr(sp, "random_array") and "rng" in inspect.signature(
            sp.random_array).parameters:
        X = sp.random_array((n, d), density=density, format="csr", dtype=dtype,
                            rng=rng, data_sampler=rng.standard_normal)
    else:  # scipy < 1.15 (random_array's rng=), e.g. the oldest supported 1.11
        X = sp.csr_array(sp.random(n, d, density=density, format="csr",
                                   dtype=dtype, random_state=rng,
                                   data_rvs=rng.standard_normal))
    W = rng.standard_normal((d, c))
    y = np.asarray(np.argmax(X @ W + rng.standard_normal((n, c)), axis=1))
    return X, y


def parameters(d, h, c, dtype):
    """The parameter layout of a (d, h, c) network and its initial theta."""
    from sk_twolayer._params import ParamLayout

    layout = ParamLayout(d, h, c, dtype)
    return layout, layout.init(np.random.RandomState(0))


TEACHER_SEED = 12345


def make_block(seed, rows, d, c):
    """Rows of the Dask sections' data set: X and its labels from a teacher."""
    teacher = np.random.default_rng(TEACHER_SEED).standard_normal((d, c))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, d))
    y = np.argmax(X @ teacher + rng.standard_normal((rows, c)), axis=1)
    return X, y


DASK_MISSING = {"available": False,
                "reason": "the dask extra is not installed (pip install \".[dask]\")"}


def dask_data(n_blocks, rows, d, c):
    """A Dask array of ``n_blocks`` blocks of ``make_block``'s rows, each made
    on a worker."""
    import dask
    import dask.array as da

    parts = [dask.delayed(make_block, pure=True)(seed, rows, d, c)
             for seed in range(n_blocks)]
    X = da.concatenate([da.from_delayed(p[0], shape=(rows, d), dtype=float)
                        for p in parts])
    y = da.concatenate([da.from_delayed(p[1], shape=(rows,), dtype=np.int64)
                        for p in parts])
    return X, y


# ------------------------------------------------- the GEMM bound of a pass
# --------------------------------------- the compute of each evaluation
def install_compute_clock(dask_worker):
    """On a worker: from now on, record how long its own share of each
    training evaluation takes, where evaluations are calls to the worker
    (``sk_twolayer.dask._worker._own_terms``); the records start empty."""
    from sk_twolayer.dask import _worker

    records = dask_worker._sk_twolayer_compute = []
    if not hasattr(_worker, "_own_terms"):  # (a package from before calls)
        return
    original = getattr(_worker._own_terms, "__wrapped__", _worker._own_terms)

    async def clocked(worker, spec, theta, node):
        start = time.perf_counter()
        try:
            return await original(worker, spec, theta, node)
        finally:
            if spec.part == "train":
                records.append((spec.evaluation, time.perf_counter() - start))

    clocked.__wrapped__ = original
    _worker._own_terms = clocked


def read_compute_clock(dask_worker):
    return list(getattr(dask_worker, "_sk_twolayer_compute", []))


def evaluation_compute(client, fit):
    """Run ``fit()``; for each of its training evaluations, each worker's
    compute seconds: ``{evaluation: {worker: seconds}}``. Calls to the
    workers are clocked on the workers; evaluations through the scheduler
    (task graphs) are read from its task stream."""
    from distributed import get_task_stream

    client.run(install_compute_clock)
    with get_task_stream(client) as stream:
        fit()
    busy = {}
    for worker, records in client.run(read_compute_clock).items():
        for evaluation, spent in records:
            per_worker = busy.setdefault(evaluation, {})
            per_worker[worker] = per_worker.get(worker, 0.0) + spent
    for task in stream.data:
        key = str(task["key"])
        if not key.startswith("sk-twolayer-train-"):
            continue
        # sk-twolayer-train-<token>-<evaluation>-<attempt>-...
        per_worker = busy.setdefault(int(key.split("-")[4]), {})
        per_worker[task["worker"]] = per_worker.get(task["worker"], 0.0) + sum(
            s["stop"] - s["start"] for s in task["startstops"]
            if s["action"] == "compute")
    return busy


def gemm_bound(X, layout, theta, y):
    """The five matrix products of one forward/backward pass, alone.

    Buffers are filled with the real forward/backward values first, so that
    the bound runs on the same numbers (no denormals, no NaN) as the loss.
    """
    W1, W2, _, _ = layout.unpack(theta)
    n, (H, C) = X.shape[0], W2.shape
    dtype = layout.dtype
    A = np.asarray(X @ W1)
    np.maximum(A, 0, out=A)
    S = A @ W2
    S -= S.max(axis=1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=1, keepdims=True)
    S[np.arange(n), y] -= 1
    S /= n
    dH = S @ W2.T
    gW1 = np.empty_like(W1)
    gW2 = np.empty((H, C), dtype=dtype)
    return lambda: five_gemms(X, W1, W2, A, S, dH, gW1, gW2)


def five_gemms(X, W1, W2, A, S, dH, gW1, gW2):
    """The products of a forward/backward pass, into the given buffers."""
    if sp.issparse(X):
        A[...] = X @ W1  # sparse-dense product, the same scipy kernel
    else:
        np.matmul(X, W1, out=A)
    np.matmul(A, W2, out=S)
    np.matmul(A.T, S, out=gW2)
    np.matmul(S, W2.T, out=dH)
    if sp.issparse(X):
        gW1[...] = X.T @ dH
    else:
        np.matmul(X.T, dH, out=gW1)


def batch_bounds(X, y, layout, theta, b):
    """The GEMM bound of each minibatch of an epoch, in order."""
    return [gemm_bound(X[s:s + b], layout, theta, y[s:s + b])
            for s in range(0, X.shape[0], b)]


def flops(n, d, h, c, nnz=None):
    """Floating-point operations of the five products of one pass."""
    first = 2 * nnz * h if nnz is not None else 2 * n * d * h
    return 2 * first + 3 * (2 * n * h * c)


def torch_sgd_loop(model, Xt, yt, batch, epochs=1, generator=None):
    """The plain PyTorch loop sections (d) and (f) compare with: SGD,
    momentum 0.9, Nesterov."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    crit = torch.nn.CrossEntropyLoss()
    n = Xt.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator, device=Xt.device)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            opt.zero_grad(set_to_none=True)
            crit(model(Xt[idx]), yt[idx]).backward()
            opt.step()


# ---------------------------------------------------------------- the stamp
# Packages whose versions make a run what it is, where installed.
VERSIONED = ("sk-twolayer", "numpy", "scipy", "scikit-learn", "threadpoolctl",
             "pandas", "dask", "distributed", "pyarrow", "torch", "pyspark",
             "onnxruntime", "skl2onnx", "skorch", "numba", "jax", "jaxlib")


def machine_info():
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "numpy": np.__version__}
    import scipy
    import sklearn
    info["scipy"], info["scikit-learn"] = scipy.__version__, sklearn.__version__
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        keep = ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache",
                "L3 cache", "Hypervisor vendor")
        info["lscpu"] = {k.strip(): v.strip() for k, v in
                         (line.split(":", 1) for line in out.splitlines()
                          if ":" in line) if k.strip() in keep}
        flags = out.split("Flags:", 1)[-1].split()
        info["lscpu"]["simd"] = " ".join(f for f in ("avx2", "fma", "avx512f")
                                         if f in flags)
    except OSError:  # pragma: no cover
        info["lscpu"] = {}
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version",
                                                 "architecture", "num_threads",
                                                 "filepath")}
                        for p in threadpool_info() if p["user_api"] == "blas"]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    info["env"] = {k: os.environ[k] for k in
                   ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                    "OMP_NUM_THREADS") if k in os.environ}
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:  # pragma: no cover
        pass
    return info


def versions():
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def _git(*args):
    return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True,
                          check=True).stdout


# What a run writes (the results file, the pages' figures) does not change
# what it measures.
NOT_CODE = (":(exclude)benchmarks/results.json", ":(exclude)*.md", ":(exclude)docs/")


def git_commit():
    """The checkout's commit, with "+changes" where its code differs from
    it, and a digest of those changes (None where there are none)."""
    try:
        head = _git("rev-parse", "--short", "HEAD").strip()
        diff = _git("diff", "HEAD", "--", ":/", *NOT_CODE)
    except (OSError, subprocess.CalledProcessError):
        return None, None
    if not diff:
        return head, None
    return head + "+changes", hashlib.sha1(diff.encode()).hexdigest()[:12]


def older_than_code(commit):
    """Whether ``sk_twolayer/`` changed since ``commit`` (its part before
    "+changes"): True or False, or None where that cannot be told (no
    commit recorded, no git, a commit this checkout lacks)."""
    if not commit:
        return None
    try:
        subprocess.run(["git", "diff", "--quiet", commit.split("+")[0], "HEAD",
                        "--", "sk_twolayer/"], cwd=HERE.parent, capture_output=True,
                       check=True)
    except subprocess.CalledProcessError as failed:
        return True if failed.returncode == 1 else None
    except OSError:
        return None
    return False


MACHINE_FIELDS = ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache",
                  "L3 cache", "Hypervisor vendor", "simd")


def machine_id(run):
    """What makes a run's machine that machine (not its load): its CPU model,
    cores, caches and vector units."""
    cpu = run.get("machine", {}).get("lscpu", {})
    return "; ".join(f"{k}: {cpu[k]}" for k in MACHINE_FIELDS if k in cpu) or "unknown"


def run_stamp(cfg, command):
    """What a run's figures are measured with: when, where, what. Every
    section of one run shares it (its ``id``)."""
    commit, changes = git_commit()
    return {"id": uuid.uuid4().hex[:12], "date": time.strftime("%Y-%m-%d"),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
            "commit": commit, "changes": changes, "machine": machine_info(),
            "versions": versions(),
            "config": {k: v for k, v in vars(cfg).items()
                       if k not in ("json", "only")}}


def measured_lines(run):
    """The lines that say when and how a section's figures were measured."""
    if not run:
        return []
    v, cfg = run["versions"], run["config"]
    commit = run["commit"] or "a commit not recorded"
    lines = [f"    measured {run['date']} at {commit}, Python {v['python']}, "
             f"numpy {v.get('numpy')}, scikit-learn {v.get('scikit-learn')}: "
             f"{run['command']}"]
    if "batch" in cfg:  # run.py's sizes (exactness.py had its own)
        lines.append(f"    N={cfg['n']} D={cfg['d']} H={cfg['hidden']} "
                     f"C={cfg['classes']} batch={cfg['batch']} "
                     f"repeats={cfg['repeats']} (fits: {cfg['fit_repeats']})")
    return lines


# --------------------------------------------------------- the results file
ABOUT = ("Written by benchmarks/run.py: one entry per section (its key), each "
         "from the run described under 'runs' (its id, date, command, commit, "
         "machine, versions, config, and the seconds of the section and of the "
         "whole run; the sections of one run share its id); a run with --only "
         "replaces only its own sections. Timed comparisons keep each "
         "contender's seconds per repeat. 'targets' are the goals over the "
         "sections here, each with its spread and verdict. The figures of "
         "README.md, benchmarks/README.md and docs/ are generated from this "
         "file by benchmarks/report.py.")


def read_results(path):
    """The results file's sections and their runs ({} for a new file)."""
    if not path or not Path(path).exists():
        return {"runs": {}}
    results = json.loads(Path(path).read_text())
    if "runs" not in results:
        raise SystemExit(f"{path} has no 'runs': it is not a results file that "
                         "run.py writes; give another --json")
    return results


def write_results(results, path):
    """The results file, its keys in a fixed order ('table' last)."""
    path = Path(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    keys = ["about", "runs", "targets"] + sorted(
        k for k in results if k not in ("about", "runs", "targets", "table"))
    results.setdefault("about", ABOUT)
    ordered = {k: results[k] for k in keys + ["table"] if k in results}
    # (whole or not at all: a run stopped while it writes leaves the old file)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(ordered, indent=2) + "\n")
    part.replace(path)
