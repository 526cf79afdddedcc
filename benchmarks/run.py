"""Side-by-side performance benchmark of sk-twolayer.

Measures, in one process and on the same data:

(a) roofline: time of the loss and gradient divided into the time of the
    matrix products alone (the same GEMMs, same shapes, same flops, measured
    in the same run), for float64 and float32, dense input, CSR input at 1%
    density (against a sparse-aware bound: the same sparse-dense products
    plus the dense ones), and one SGD epoch at batch 200 (also against a
    floor: those GEMMs plus the batch gather and one update pass);
(b) fit time against ``MLPClassifier(hidden_layer_sizes=(H,))`` with the same
    solver, batch size and number of epochs/iterations, and each one's final
    training loss;
(c) peak extra memory of an L-BFGS fit above the memory of the data, against
    MLPClassifier, each in its own process;
(d) PyTorch CPU on the same network and batch size, when torch is installed;
(e) prediction latency against ``MLPClassifier(hidden_layer_sizes=(H,))``
    fitted on the same data (digits): ``predict`` and ``predict_proba`` on one
    row and on a batch of generated rows, and onnxruntime inference of both
    exported models (skipped when skl2onnx or onnxruntime is missing);
(f) with ``--only device --device cuda``: training on an accelerator through
    scikit-learn's Array API dispatch, against numpy and a plain PyTorch loop
    (see ``benchmarks/bench_device.py``; not part of the default run);
(g) data-parallel L-BFGS on a Dask ``LocalCluster``: the per-evaluation
    overhead against a bare task round trip, one worker against the
    in-memory fit, two workers against one, Spark MLlib's MLP where pyspark
    is installed, and the scaling curve where there are more cores (see
    ``benchmarks/bench_dask.py``; needs the ``dask`` extra);
(h) with ``--only dask_scale``: data-parallel L-BFGS at cluster scale, the
    time per iteration of a wide model on 1 to 24 workers for each fan-in
    of the reduction tree (not part of the default run);
(i) the minibatch solvers (SGD with Nesterov momentum, Adam) against a
    jitted JAX loop (``jax.jit`` and ``lax.scan``), each in its own process,
    with each side's time outside the step's two large GEMMs, and with
    ``--jax-before REF`` our solvers as they were at git commit ``REF`` (see
    ``benchmarks/bench_jax.py``; skipped when jax is not installed).
(j) with ``--only dask_cost``: what one evaluation of the data-parallel fit
    costs the cluster, the scheduler in its own process, on 1 to 64 worker
    processes: scheduler and client CPU, tasks, messages, bytes through
    the scheduler and the busiest worker, wall time, and the cost model
    fitted to them (see ``benchmarks/bench_dask_cost.py``; not part of the
    default run).

Every ratio is the median over repeats in which the two contenders run
alternately (A, B, B, A, ...), because shared machines are noisy.

Usage::

    python benchmarks/run.py                  # default sizes, minutes
    python benchmarks/run.py --quick          # tiny sizes, seconds; no file
    python benchmarks/run.py --repeats 9 --json /tmp/results.json
    python benchmarks/run.py --only predict   # prediction latency alone
    python benchmarks/run.py --only device --device cuda  # on a GPU
    python benchmarks/run.py --only dask      # section (g) alone
    python benchmarks/run.py --only jax --jax-before 8c204ab  # section (i)
    python benchmarks/run.py --only dask_scale  # section (h) alone
    python benchmarks/run.py --only dask_cost   # section (j) alone

Each run writes the sections it measured into ``benchmarks/results.json``
(``--json``: another file), with the date, command, commit, machine,
versions, configuration and run time of the run, and keeps the other
sections; ``python benchmarks/report.py`` then writes the pages' figures
from it. benchmarks/README.md lists how long each section's last run took.

The dependencies are in the ``benchmarks`` extra:
``pip install ".[benchmarks]"`` (torch is optional; its CPU build installs
with ``pip install torch==2.13.0``; section (e)'s ONNX part needs the
``onnx`` extra).
"""

import os
import sys

# Section (f) trains under scikit-learn's array_api_dispatch, which needs
# scipy's array API support switched on before scipy is first imported.
if "device" in " ".join(sys.argv[1:]):
    os.environ.setdefault("SCIPY_ARRAY_API", "1")

import argparse  # noqa: E402
import contextlib
import gc
import inspect
import json
import platform
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

try:  # run from a checkout without installing
    import sk_twolayer  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier

from sk_twolayer import TwoLayerSoftmaxClassifier, loss_and_gradient
from sk_twolayer._loss import TwoLayerLoss
from sk_twolayer._params import ParamLayout
from sk_twolayer import _solvers


def _device_module():
    """benchmarks/bench_device.py, section (f), imported only when asked for."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_device

    return bench_device


def bench_device(cfg):
    return _device_module().bench_device(cfg, _alternate, _ratio)


def _dask_module():
    """benchmarks/bench_dask.py, section (g)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_dask

    return bench_dask


def _exactness_module():
    """benchmarks/exactness.py, which writes the section ``exactness``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import exactness

    return exactness


def bench_dask(cfg):
    return _dask_module().bench_dask(cfg, _alternate, _ratio)


def bench_dask_scale(cfg):
    return _dask_module().bench_dask_scale(cfg)


def _jax_module():
    """benchmarks/bench_jax.py, section (i)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_jax

    return bench_jax


def bench_jax(cfg):
    return _jax_module().bench_jax(cfg, _ratio)


def _dask_cost_module():
    """benchmarks/bench_dask_cost.py, section (j)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_dask_cost

    return bench_dask_cost


def bench_dask_cost(cfg):
    return _dask_cost_module().bench_dask_cost(cfg)

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
    "dask_speedup_vs_spark": 3.0,
    # issue 29: our minibatch fit's time over a jitted JAX loop's, and the
    # step's time outside its two large GEMMs over that of 8c204ab
    "time_vs_jax": 1.0,
    "outside_gemm_vs_before": 0.5,
    # issue 27: the scheduler's work per evaluation (section j)
    "dask_cost_scheduler_mib_16": 2.0,
    "dask_cost_scheduler_cpu_ms_2": 10.0,
    "dask_cost_scheduler_cpu_ms_per_worker": 1.0,
    "dask_cost_star_vs_tree_2": 1.0,
}


# ------------------------------------------------------------------- helpers
def _time(f, sync=None):
    if sync is not None:
        sync()
    t = time.perf_counter()
    f()
    if sync is not None:
        sync()
    return time.perf_counter() - t


def _alternate(funcs, repeats, warmup=1, sync=None):
    """Time each of ``funcs`` (a dict) ``repeats`` times, alternating order.

    Returns a dict of arrays of seconds, one entry per repeat, so that ratios
    can be taken pairwise within the same repeat. ``sync`` (an accelerator's
    synchronize) runs before each clock starts and before it stops.
    """
    names = list(funcs)
    for _ in range(warmup):
        for name in names:
            funcs[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            times[name].append(_time(funcs[name], sync))
    return {name: np.array(t) for name, t in times.items()}


def _ratio(num, den):
    """Median over repeats of the pairwise ratio num / den."""
    return float(np.median(np.asarray(num) / np.asarray(den)))


def _problem(n, d, c, dtype, seed=0, density=None):
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


def _params(d, h, c, dtype):
    layout = ParamLayout(d, h, c, dtype)
    return layout, layout.init(np.random.RandomState(0))


# ---------------------------------------------------------------- (a) roofline
def _gemm_bound(X, layout, theta, y):
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
    return lambda: _five_gemms(X, W1, W2, A, S, dH, gW1, gW2)


def _five_gemms(X, W1, W2, A, S, dH, gW1, gW2):
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


def _flops(n, d, h, c, nnz=None):
    first = 2 * nnz * h if nnz is not None else 2 * n * d * h
    return 2 * first + 3 * (2 * n * h * c)


def bench_roofline(cfg):
    rows = []
    n, d, h, c, reps = cfg.n, cfg.d, cfg.hidden, cfg.classes, cfg.repeats
    for dname, dtype in DTYPES.items():
        for kind in ("dense", "csr"):
            density = None if kind == "dense" else cfg.density
            X, y = _problem(n, d, c, dtype, density=density)
            layout, theta = _params(d, h, c, dtype)
            W1, W2, b1, b2 = layout.unpack(theta)
            bound = _gemm_bound(X, layout, theta, y)
            loss = TwoLayerLoss(layout, reg=1e-4)
            grad = np.empty_like(theta)
            funcs = {
                "gemm": bound,
                "loss_and_gradient": lambda: loss_and_gradient(
                    W1, b1, W2, b2, X, y, 1e-4),
                "TwoLayerLoss.loss_gradient": lambda: loss.loss_gradient(
                    theta, X, y, grad=grad),
            }
            t = _alternate(funcs, reps)
            nnz = X.nnz if sp.issparse(X) else None
            gflop = _flops(n, d, h, c, nnz) / 1e9
            for path in ("loss_and_gradient", "TwoLayerLoss.loss_gradient"):
                rows.append({
                    "dtype": dname, "input": kind, "path": path,
                    "n": n, "batch": n,
                    "bound_s": float(np.median(t["gemm"])),
                    "ours_s": float(np.median(t[path])),
                    "bound_gflops": gflop / float(np.median(t["gemm"])),
                    "roofline_ratio": _ratio(t["gemm"], t[path]),
                })
            del X
        rows.extend(_sgd_epoch_roofline(cfg, dname, dtype))
    return rows


def _batch_bounds(X, y, layout, theta, b):
    """The GEMM bound of each minibatch of an epoch, in order."""
    return [_gemm_bound(X[s:s + b], layout, theta, y[s:s + b])
            for s in range(0, X.shape[0], b)]


def _sgd_epoch_roofline(cfg, dname, dtype):
    """One SGD epoch (shuffled minibatches) against the GEMMs of its batches.

    A second reference, the *floor*, is an epoch of training steps with
    everything but the memory traffic of SGD taken out: per batch, the
    batch's rows copied out of X (np.take), the five GEMMs on those rows
    and on the live parameters, and one pass that reads the parameters,
    velocity and gradient and writes the parameters and velocity (our
    update, with a zero learning rate so that the numbers stay put). No
    softmax, activation or bias arithmetic. Any momentum SGD over shuffled
    rows, built on the BLAS that numpy and scipy expose, moves at least this
    memory, so ``floor_ratio`` (GEMM time / floor time) is about the most an
    SGD epoch can reach on this machine, and ``ours_vs_floor`` is what our
    elementwise arithmetic and Python cost on top.
    """
    n, d, h, c, b = cfg.n, cfg.d, cfg.hidden, cfg.classes, cfg.batch
    X, y = _problem(n, d, c, dtype)
    layout, theta0 = _params(d, h, c, dtype)
    bounds = _batch_bounds(X, y, layout, theta0, b)
    loss = TwoLayerLoss(layout, reg=1e-4)
    order = np.random.RandomState(0).permutation(n)
    gather = _solvers.BatchGatherer(X)
    update = _solvers.SGD(0.0, momentum=0.9, nesterov=True)
    update.start(theta0)
    A = np.empty((min(b, n), h), dtype=dtype)
    S = np.empty((min(b, n), c), dtype=dtype)
    dH = np.empty_like(A)

    def epoch():
        _solvers.stochastic(
            loss.data_loss_gradient, theta0.copy(), X, y, penalty=loss.penalty,
            optimizer=_solvers.SGD(0.01, momentum=0.9, nesterov=True),
            batch_size=b, max_iter=1, rng=np.random.RandomState(0),
            stopper=_solvers.Stopper(1e-4, 10), warn_on_max_iter=False,
        )

    def bound():
        for f in bounds:
            f()

    def floor():
        for start in range(0, n, b):
            Xb = gather(order[start:start + b])
            m = Xb.shape[0]
            W1, W2, _, _ = layout.unpack(update.theta)
            gW1, gW2, _, _ = layout.unpack(update.grad)
            _five_gemms(Xb, W1, W2, A[:m], S[:m], dH[:m], gW1, gW2)
            update.step(loss.penalty)

    t = _alternate({"gemm": bound, "floor": floor, "epoch": epoch}, cfg.repeats)
    common = {"dtype": dname, "input": "dense", "n": n, "batch": b,
              "bound_s": float(np.median(t["gemm"])),
              "bound_gflops": _flops(n, d, h, c) / 1e9 / float(np.median(t["gemm"]))}
    return [
        dict(common, path="sgd_epoch", ours_s=float(np.median(t["epoch"])),
             roofline_ratio=_ratio(t["gemm"], t["epoch"]),
             floor_s=float(np.median(t["floor"])),
             floor_ratio=_ratio(t["gemm"], t["floor"]),
             ours_vs_floor=_ratio(t["floor"], t["epoch"])),
        dict(common, path="sgd_floor GEMM+gather+upd",
             ours_s=float(np.median(t["floor"])),
             roofline_ratio=_ratio(t["gemm"], t["floor"])),
    ]


# ------------------------------------------------------------- (b) vs MLP
def _estimators(solver, cfg, n):
    """Ours and MLPClassifier with the same work: solver, batch, iterations."""
    h = cfg.hidden
    if solver == "sgd":
        common = dict(solver="sgd", batch_size=cfg.batch, max_iter=cfg.epochs,
                      learning_rate_init=0.01, momentum=0.9,
                      nesterovs_momentum=True, shuffle=True, tol=0.0,
                      n_iter_no_change=cfg.epochs + 1, random_state=0)
    else:
        common = dict(solver="lbfgs", max_iter=cfg.lbfgs_iter, tol=0.0,
                      random_state=0)
    # MLPClassifier's penalty is alpha / (2 n) ||W||^2 on the weights only;
    # ours is reg ||theta||^2, so reg = alpha / (2 n) without bias penalty.
    alpha = 1e-4
    ours = TwoLayerSoftmaxClassifier(hidden_size=h, reg=alpha / (2 * n),
                                     penalize_bias=False, **common)
    mlp = MLPClassifier(hidden_layer_sizes=(h,), alpha=alpha, **common)
    return ours, mlp


def bench_vs_mlp(cfg):
    rows = []
    for solver in ("sgd", "lbfgs"):
        for dname, dtype in DTYPES.items():
            X, y = _problem(cfg.n, cfg.d, cfg.classes, dtype)
            fitted = {}

            def fit(which):
                def run():
                    ours, mlp = _estimators(solver, cfg, cfg.n)
                    est = ours if which == "ours" else mlp
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        est.fit(X, y)
                    fitted[which] = est
                return run

            t = _alternate({"ours": fit("ours"), "mlp": fit("mlp")},
                           cfg.fit_repeats, warmup=0)
            row = {"solver": solver, "dtype": dname,
                   "ours_s": float(np.median(t["ours"])),
                   "mlp_s": float(np.median(t["mlp"])),
                   "speedup": _ratio(t["mlp"], t["ours"])}
            for which, est in fitted.items():
                proba = est.predict_proba(X)
                row[f"{which}_train_log_loss"] = float(log_loss(y, proba))
                row[f"{which}_final_objective"] = float(est.loss_curve_[-1]
                                                        if solver == "sgd"
                                                        else est.loss_)
                row[f"{which}_coef_dtype"] = str(est.coefs_[0].dtype)
                row[f"{which}_proba_dtype"] = str(proba.dtype)
                row[f"{which}_n_iter"] = int(est.n_iter_)
            rows.append(row)
    return rows


# ------------------------------------------------------------- (c) memory
def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_child(which, n, d, h, c, dtype, iters):
    """Run in a fresh process: peak RSS of one L-BFGS fit above the data's."""
    X, y = _problem(n, d, c, DTYPES[dtype])
    common = dict(solver="lbfgs", max_iter=iters, tol=0.0, random_state=0)
    if which == "ours":
        est = TwoLayerSoftmaxClassifier(hidden_size=h, **common)
    else:
        est = MLPClassifier(hidden_layer_sizes=(h,), **common)
    gc.collect()
    baseline = _rss_kib("VmRSS")
    try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "VmHWM after clear_refs"
    except OSError:  # pragma: no cover
        method = "VmHWM since start (upper bound)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = _time(lambda: est.fit(X, y))
    peak = _rss_kib("VmHWM")
    return {"which": which, "baseline_mib": baseline / 1024,
            "data_mib": (X.nbytes + y.nbytes) / 2**20,
            "peak_extra_mib": (peak - baseline) / 1024, "fit_s": t,
            "method": method}


def bench_memory(cfg):
    results = {}
    for which in ("ours", "mlp"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child",
               which, "--memory-n", str(cfg.memory_n), "--memory-d",
               str(cfg.memory_d), "--hidden", str(cfg.hidden), "--classes",
               str(cfg.classes), "--memory-iter", str(cfg.memory_iter)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env=os.environ.copy())
        results[which] = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "n": cfg.memory_n, "d": cfg.memory_d, "hidden": cfg.hidden,
        "dtype": "float64", "lbfgs_iter": cfg.memory_iter,
        "ours_peak_extra_mib": results["ours"]["peak_extra_mib"],
        "mlp_peak_extra_mib": results["mlp"]["peak_extra_mib"],
        "ratio": (results["ours"]["peak_extra_mib"]
                  / max(results["mlp"]["peak_extra_mib"], 1e-9)),
        "data_mib": results["ours"]["data_mib"],
        "method": results["ours"]["method"],
        "detail": results,
    }


# ---------------------------------------------------------------- (d) torch
def bench_torch(cfg):
    try:
        import torch
    except ImportError:
        return {"available": False}
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rows = []
    n, d, h, c, b = cfg.n, cfg.d, cfg.hidden, cfg.classes, cfg.batch
    for dname, dtype in DTYPES.items():
        X, y = _problem(n, d, c, dtype)
        tdtype = torch.float64 if dtype == np.float64 else torch.float32
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
        layout, theta0 = _params(d, h, c, dtype)
        W1, W2, b1, b2 = layout.unpack(theta0)

        def net():
            torch.manual_seed(0)
            m = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(),
                                    torch.nn.Linear(h, c)).to(tdtype)
            with torch.no_grad():  # same starting point as ours
                m[0].weight.copy_(torch.from_numpy(W1.T.copy()))
                m[0].bias.copy_(torch.from_numpy(b1))
                m[2].weight.copy_(torch.from_numpy(W2.T.copy()))
                m[2].bias.copy_(torch.from_numpy(b2))
            return m

        crit = torch.nn.CrossEntropyLoss()
        model_full = net()

        def torch_full():
            model_full.zero_grad(set_to_none=False)
            crit(model_full(Xt), yt).backward()

        loss = TwoLayerLoss(layout, reg=0.0, penalize_bias=False)
        grad = np.empty_like(theta0)

        def ours_full():
            loss.loss_gradient(theta0, X, y, grad=grad)

        def torch_sgd():
            _device_module().torch_sgd_loop(
                net(), Xt, yt, b, cfg.epochs, torch.Generator().manual_seed(0))

        def ours_sgd():
            _solvers.stochastic(
                loss.data_loss_gradient, theta0.copy(), X, y,
                optimizer=_solvers.SGD(0.01, momentum=0.9, nesterov=True),
                batch_size=b, max_iter=cfg.epochs,
                rng=np.random.RandomState(0),
                stopper=_solvers.Stopper(0.0, cfg.epochs + 1),
                warn_on_max_iter=False)

        t = _alternate({"torch_full": torch_full, "ours_full": ours_full},
                       cfg.repeats)
        rows.append({"dtype": dname, "work": "full-batch loss+gradient",
                     "ours_s": float(np.median(t["ours_full"])),
                     "torch_s": float(np.median(t["torch_full"])),
                     "speedup": _ratio(t["torch_full"], t["ours_full"])})
        bounds = _batch_bounds(X, y, layout, theta0, b)

        def gemm_sgd():  # the GEMMs of the same epochs, alone
            for _ in range(cfg.epochs):
                for f in bounds:
                    f()

        t = _alternate({"torch_sgd": torch_sgd, "ours_sgd": ours_sgd,
                        "gemm": gemm_sgd}, cfg.fit_repeats, warmup=0)
        rows.append({"dtype": dname,
                     "work": f"SGD {cfg.epochs} epochs, batch {b}",
                     "ours_s": float(np.median(t["ours_sgd"])),
                     "torch_s": float(np.median(t["torch_sgd"])),
                     "speedup": _ratio(t["torch_sgd"], t["ours_sgd"]),
                     "ours_roofline": _ratio(t["gemm"], t["ours_sgd"]),
                     "torch_roofline": _ratio(t["gemm"], t["torch_sgd"])})
    return {"available": True, "version": torch.__version__,
            "threads": torch.get_num_threads(), "rows": rows}


# ----------------------------------------------------------- (e) prediction
def _per_call(func, calls):
    """A function that makes ``calls`` calls of ``func``: one timing repeat."""
    def run():
        for _ in range(calls):
            func()
    return run


def _predict_models(cfg):
    """Ours and MLPClassifier with H hidden units, a few iterations on digits.

    Prediction does not depend on how well the weights were trained, only on
    the shapes: D=64 features, H=``--hidden`` units, C=10 classes.
    """
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    common = dict(solver="lbfgs", max_iter=5, random_state=0)
    ours = TwoLayerSoftmaxClassifier(hidden_size=cfg.hidden, **common)
    mlp = MLPClassifier(hidden_layer_sizes=(cfg.hidden,), **common)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        mlp.fit(X, y)
    return X, ours, mlp


def _onnx_sessions(ours, mlp, d):
    """onnxruntime sessions of both models' float32 graphs, or a reason."""
    try:
        import onnxruntime
        import skl2onnx
        from skl2onnx.common.data_types import FloatTensorType

        from sk_twolayer.onnx import to_onnx
    except ImportError as exc:
        return None, f"not installed ({exc.name})"
    types = [("X", FloatTensorType([None, d]))]
    graphs = {
        "ours": to_onnx(ours, initial_types=types, options={"zipmap": False}),
        "mlp": skl2onnx.to_onnx(mlp, initial_types=types,
                                options={"zipmap": False}),
    }
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = max(1, os.cpu_count() or 1)
    # Idle threads of onnxruntime spin-wait by default, which would take
    # the cores from whatever runs next in the alternation.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {
        name: onnxruntime.InferenceSession(
            g.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        for name, g in graphs.items()
    }
    info = {"onnxruntime": onnxruntime.__version__,
            "skl2onnx": skl2onnx.__version__,
            "intra_op_threads": opts.intra_op_num_threads}
    return sessions, info


def bench_predict(cfg):
    X, ours, mlp = _predict_models(cfg)
    d, calls, reps = X.shape[1], cfg.predict_calls, cfg.repeats
    row = X[:1].copy()
    batch = np.random.default_rng(0).standard_normal((cfg.predict_rows, d))
    rows = []

    def add(work, t, a="ours", b="mlp", per=1):
        rows.append({"work": work, "ours_s": float(np.median(t[a])) / per,
                     "mlp_s": float(np.median(t[b])) / per,
                     "speedup": _ratio(t[b], t[a])})

    # Both estimators must agree on what they are timed on.
    assert ours.predict_proba(row).shape == mlp.predict_proba(row).shape
    for method in ("predict", "predict_proba"):
        t = _alternate({
            "ours": _per_call(lambda: getattr(ours, method)(row), calls),
            "mlp": _per_call(lambda: getattr(mlp, method)(row), calls),
        }, reps)
        add(f"{method}, 1 row", t, per=calls)
    t = _alternate({"ours": lambda: ours.predict_proba(batch),
                    "mlp": lambda: mlp.predict_proba(batch)}, reps)
    add(f"predict_proba, {cfg.predict_rows} rows", t)

    sessions, info = _onnx_sessions(ours, mlp, d)
    onnx = {"available": sessions is not None}
    if sessions is None:
        onnx["reason"] = info
    else:
        onnx.update(info)
        row32, batch32 = row.astype(np.float32), batch.astype(np.float32)
        # The exported graph must compute what the estimator computes.
        proba = sessions["ours"].run(None, {"X": batch32[:100]})[1]
        onnx["ours_max_proba_diff"] = float(np.max(np.abs(
            proba - ours.predict_proba(batch32[:100]))))

        def run(name, data):
            sess = sessions[name]
            return lambda: sess.run(None, {"X": data})

        t = _alternate({
            "ours": _per_call(run("ours", row32), calls),
            "mlp": _per_call(run("mlp", row32), calls),
            "ours_python": _per_call(lambda: ours.predict_proba(row), calls),
        }, reps)
        add("onnxruntime, 1 row", t, per=calls)
        rows[-1]["ours_python_s"] = float(np.median(t["ours_python"])) / calls
        rows[-1]["onnx_vs_python"] = _ratio(t["ours_python"], t["ours"])
        t = _alternate({"ours": run("ours", batch32), "mlp": run("mlp", batch32),
                        "ours_python": lambda: ours.predict_proba(batch32)}, reps)
        add(f"onnxruntime, {cfg.predict_rows} rows", t)
        rows[-1]["ours_python_s"] = float(np.median(t["ours_python"]))
        rows[-1]["onnx_vs_python"] = _ratio(t["ours_python"], t["ours"])
    return {"data": "digits (standardized)", "d": d, "hidden": cfg.hidden,
            "classes": len(ours.classes_), "dtype": "float64 (ONNX: float32)",
            "calls_per_repeat": calls, "batch_rows": cfg.predict_rows,
            "rows": rows, "onnx": onnx}


# ------------------------------------------------------------------ machine
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


# ------------------------------------------------------------- results file
RESULTS = Path(__file__).resolve().parent / "results.json"

# Packages whose versions make a run what it is, where installed.
VERSIONED = ("sk-twolayer", "numpy", "scipy", "scikit-learn", "threadpoolctl",
             "pandas", "dask", "distributed", "pyarrow", "torch", "pyspark",
             "onnxruntime", "skl2onnx", "skorch", "numba", "jax", "jaxlib")


def versions():
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def git_commit():
    """The checkout's commit, with "+changes" where files differ from it."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                              capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain",
                                "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def run_stamp(cfg, command):
    """What a section's figures were measured with: when, where, what."""
    return {"date": time.strftime("%Y-%m-%d"), "command": command,
            "commit": git_commit(), "machine": machine_info(),
            "versions": versions(),
            "config": {k: v for k, v in vars(cfg).items()
                       if k not in ("memory_child", "json", "only")}}


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
    """Goals and the table over every section of the file, then the file."""
    results["targets"] = targets(results)
    results["table"] = format_table(results)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        keys = ["about", "runs", "targets"] + sorted(
            k for k in results if k not in ("about", "runs", "targets", "table"))
        results.setdefault("about", ABOUT)
        ordered = {k: results[k] for k in keys + ["table"] if k in results}
        Path(path).write_text(json.dumps(ordered, indent=2) + "\n")


ABOUT = ("Written by benchmarks/run.py: one entry per section (its key), each "
         "from its own run, described under 'runs' (date, command, commit, "
         "machine, versions, config); a run with --only replaces only its own "
         "sections. 'targets' are the goals, met or missed, over the sections "
         "here. The figures of README.md, benchmarks/README.md and docs/ are "
         "generated from this file by benchmarks/report.py.")


# -------------------------------------------------------------------- report
def targets(results):
    roof = {(r["dtype"], r["input"], r["path"]): r["roofline_ratio"]
            for r in results.get("roofline", [])}
    met = {}
    for dname in DTYPES if roof else ():
        v = roof.get((dname, "dense", "loss_and_gradient"))
        key = f"loss_and_gradient_roofline_{dname}"
        met[key] = {"value": v, "target": TARGETS[key]}
        key = f"sgd_epoch_roofline_{dname}"
        met[key] = {"value": roof.get((dname, "dense", "sgd_epoch")),
                    "target": TARGETS[key]}
    for row in results.get("vs_mlp", []):
        key = f"speedup_vs_mlp_{row['solver']}"
        met[f"{key}_{row['dtype']}"] = {"value": row["speedup"],
                                        "target": TARGETS[key]}
    if results.get("torch", {}).get("available"):
        for row in results["torch"]["rows"]:
            met[f"speedup_vs_torch {row['work']} {row['dtype']}"] = {
                "value": row["speedup"], "target": TARGETS["speedup_vs_torch"]}
    dev = results.get("device") or {}
    if dev.get("available"):
        for row in dev["rows"]:
            for field, target in (("fraction_of_gemm_rate", 0.5),
                                  ("speedup_vs_numpy", 20.0),
                                  ("speedup_vs_torch", 1.0)):
                if field in row:
                    met[f"device {row['work']} {field}"] = {
                        "value": row[field], "target": target}
    if results.get("memory"):
        met["memory_ratio_vs_mlp"] = {"value": results["memory"]["ratio"],
                                      "target": TARGETS["memory_ratio_vs_mlp"],
                                      "lower_is_better": True}
    dask = results.get("dask") or {}
    if dask.get("available"):
        for workers, row in dask["overhead"].items():
            met[f"dask_overhead_vs_round_trip {workers} worker(s)"] = {
                "value": row["overhead_vs_round_trip"],
                "target": TARGETS["dask_overhead_vs_round_trip"],
                "lower_is_better": True}
        met["dask_one_worker_vs_memory"] = {
            "value": dask["one_worker"]["time_ratio"],
            "target": TARGETS["dask_one_worker_vs_memory"], "lower_is_better": True}
        met["dask_one_worker_vs_memory from_array"] = {
            "value": dask["one_worker"]["from_array_time_ratio"],
            "target": TARGETS["dask_one_worker_vs_memory"], "lower_is_better": True}
        if "two_workers" in dask:
            met["dask_two_workers_vs_one"] = {
                "value": dask["two_workers"]["speedup"],
                "target": TARGETS["dask_two_workers_vs_one"]}
        if dask["spark"].get("available"):
            met["dask_speedup_vs_spark"] = {"value": dask["spark"]["speedup"],
                                            "target": TARGETS["dask_speedup_vs_spark"]}
    jax = results.get("jax") or {}
    for row in jax.get("rows", []):
        met[f"time_vs_jax {row['solver']} {row['dtype']}"] = {
            "value": row["time_ratio"], "target": TARGETS["time_vs_jax"],
            "lower_is_better": True}
        if "outside_vs_before" in row:
            met[f"outside_gemm_vs_before {row['solver']} {row['dtype']}"] = {
                "value": row["outside_vs_before"],
                "target": TARGETS["outside_gemm_vs_before"],
                "lower_is_better": True}
    cost = results.get("dask_cost") or {}
    if cost.get("available"):
        rows = {row["workers"]: row for row in cost["table"]}
        if 16 in rows:
            met["dask_cost_scheduler_mib 16 workers"] = {
                "value": rows[16]["scheduler_mib"],
                "target": TARGETS["dask_cost_scheduler_mib_16"], "lower_is_better": True}
        if 2 in rows:
            met["dask_cost_scheduler_cpu_ms 2 workers"] = {
                "value": rows[2]["scheduler_cpu_ms"],
                "target": TARGETS["dask_cost_scheduler_cpu_ms_2"],
                "lower_is_better": True}
            if "tree_wall_ms" in rows[2]:
                # (the default's time over the faster topology's: 1.0 where
                # the default is the faster)
                met["dask_cost_star_vs_tree 2 workers"] = {
                    "value": rows[2]["wall_ms"] / min(rows[2]["star_wall_ms"],
                                                      rows[2]["tree_wall_ms"]),
                    "target": TARGETS["dask_cost_star_vs_tree_2"],
                    "lower_is_better": True}
        # (the slope of a straight line through every K measured)
        ks = sorted(rows)
        met["dask_cost_scheduler_cpu_ms per added worker"] = {
            "value": float(np.polyfit(ks, [rows[k]["scheduler_cpu_ms"] for k in ks],
                                      1)[0]) if len(ks) > 1 else None,
            "target": TARGETS["dask_cost_scheduler_cpu_ms_per_worker"],
            "lower_is_better": True}
    for v in met.values():
        if v["value"] is None:
            v["met"] = None
        elif v.get("lower_is_better"):
            v["met"] = v["value"] <= v["target"]
        else:
            v["met"] = v["value"] >= v["target"]
    return met


def _measured(results, key):
    """The line that says when and how a section's figures were measured."""
    run = results.get("runs", {}).get(key)
    if not run:
        return []
    v, cfg = run["versions"], run["config"]
    commit = run["commit"] or "a commit not recorded"
    lines = [f"    measured {run['date']} at {commit}, Python {v['python']}, "
             f"numpy {v.get('numpy')}, scikit-learn {v.get('scikit-learn')}: "
             f"{run['command']}"]
    if "batch" in cfg:  # run.py's sizes (exactness.py has its own)
        lines.append(f"    N={cfg['n']} D={cfg['d']} H={cfg['hidden']} "
                     f"C={cfg['classes']} batch={cfg['batch']} "
                     f"repeats={cfg['repeats']} (fits: {cfg['fit_repeats']})")
    return lines


def format_table(results):
    lines = []
    # Each section's table only where the file has the section.
    if results.get("roofline"):
        lines.append("")
        lines.append("(a) roofline: GEMM-only time / our time (1.0 = at the bound)")
        lines.extend(_measured(results, "roofline"))
        lines.append(f"| {'dtype':7} | {'input':5} | {'path':26} | {'bound ms':>9} "
                     f"| {'ours ms':>9} | {'GFLOP/s':>7} | {'ratio':>5} |")
        lines.append("|" + "|".join("-" * w for w in (9, 7, 28, 11, 11, 9, 7))
                     + "|")
    for r in results.get("roofline", []):
        lines.append(f"| {r['dtype']:7} | {r['input']:5} | {r['path']:26} | "
                     f"{r['bound_s'] * 1e3:9.1f} | {r['ours_s'] * 1e3:9.1f} | "
                     f"{r['bound_gflops']:7.1f} | {r['roofline_ratio']:5.2f} |")
    if results.get("vs_mlp"):
        lines.append("")
        lines.append("(b) fit vs MLPClassifier (speedup = MLP time / our time)")
        lines.extend(_measured(results, "vs_mlp"))
        lines.append(f"| {'solver':6} | {'dtype':7} | {'ours s':>7} | {'MLP s':>7} "
                     f"| {'speedup':>7} | {'ours logloss':>12} "
                     f"| {'MLP logloss':>11} | {'ours/MLP coef dtype':19} |")
        lines.append("|" + "|".join("-" * w for w in (8, 9, 9, 9, 9, 14, 13, 21))
                     + "|")
    for r in results.get("vs_mlp", []):
        dt = f"{r['ours_coef_dtype']}/{r['mlp_coef_dtype']}"
        lines.append(f"| {r['solver']:6} | {r['dtype']:7} | {r['ours_s']:7.2f} | "
                     f"{r['mlp_s']:7.2f} | {r['speedup']:7.2f} | "
                     f"{r['ours_train_log_loss']:12.4f} | "
                     f"{r['mlp_train_log_loss']:11.4f} | {dt:19} |")
    m = results.get("memory")
    if m:
        lines.append("")
        lines.append(f"(c) peak extra memory of an lbfgs fit, N={m['n']} D={m['d']}"
                     f" H={m['hidden']} {m['dtype']} ({m['lbfgs_iter']} iterations;"
                     f" data {m['data_mib']:.0f} MiB; {m['method']})")
        lines.extend(_measured(results, "memory")[:1])
        lines.append(f"    ours {m['ours_peak_extra_mib']:.1f} MiB, MLPClassifier "
                     f"{m['mlp_peak_extra_mib']:.1f} MiB, ratio {m['ratio']:.3f}")
    t = results.get("torch", {"skipped": True})
    torch_ran = not t.get("skipped", False)
    if torch_ran:
        lines.append("")
    if t.get("available"):
        lines.append(f"(d) PyTorch {t['version']} CPU, {t['threads']} threads "
                     "(speedup = torch time / our time)")
        lines.append("    (roofline: GEMM-only time of the same epochs / time)")
        lines.extend(_measured(results, "torch"))
        lines.append(f"| {'dtype':7} | {'work':26} | {'ours s':>7} | {'torch s':>7} "
                     f"| {'speedup':>7} | {'ours roofline':>13} "
                     f"| {'torch roofline':>14} |")
        lines.append("|" + "|".join("-" * w for w in (9, 28, 9, 9, 9, 15, 16)) + "|")
        for r in t["rows"]:
            ours_r = f"{r['ours_roofline']:13.2f}" if "ours_roofline" in r else " " * 13
            torch_r = (f"{r['torch_roofline']:14.2f}" if "torch_roofline" in r
                       else " " * 14)
            lines.append(f"| {r['dtype']:7} | {r['work']:26} | {r['ours_s']:7.3f} | "
                         f"{r['torch_s']:7.3f} | {r['speedup']:7.2f} | {ours_r} "
                         f"| {torch_r} |")
    elif torch_ran:
        lines.append("(d) PyTorch: not installed (pip install torch==2.13.0)")
    p = results.get("predict")
    if p:
        lines.append("")
        lines.append(f"(e) prediction, {p['data']} D={p['d']} H={p['hidden']} "
                     f"C={p['classes']}, {p['dtype']}; speedup = MLP time / ours")
        lines.extend(_measured(results, "predict")[:1])
        lines.append(f"| {'work':32} | {'ours ms':>9} | {'MLP ms':>9} "
                     f"| {'speedup':>7} | {'ours python ms':>14} "
                     f"| {'python/onnx':>11} |")
        lines.append("|" + "|".join("-" * w for w in (34, 11, 11, 9, 16, 13))
                     + "|")
        for r in p["rows"]:
            if "ours_python_s" in r:
                py = (f"{r['ours_python_s'] * 1e3:14.3f} | "
                      f"{r['onnx_vs_python']:11.1f}")
            else:
                py = " " * 14 + " | " + " " * 11
            lines.append(f"| {r['work']:32} | {r['ours_s'] * 1e3:9.3f} | "
                         f"{r['mlp_s'] * 1e3:9.3f} | {r['speedup']:7.2f} | {py} |")
        o = p["onnx"]
        if o["available"]:
            lines.append(f"    onnxruntime {o['onnxruntime']}, skl2onnx "
                         f"{o['skl2onnx']}, {o['intra_op_threads']} threads; "
                         "onnx rows: both exported graphs, float32, zipmap off;")
            lines.append("    'ours python': our predict_proba on the same input, "
                         "python/onnx: its time / our graph's")
        else:
            lines.append(f"    onnx: {o['reason']} (pip install \".[onnx]\")")
    if "device" in results:
        lines.append("")
        lines.extend(_device_module().format_device(results["device"]))
        lines.extend(_measured(results, "device")[:1])
    if "dask_scale" in results:
        lines.append("")
        lines.extend(_dask_module().format_dask_scale(results["dask_scale"]))
        lines.extend(_measured(results, "dask_scale")[:1])
    if "dask" in results:
        lines.append("")
        lines.extend(_dask_module().format_dask(results["dask"]))
        lines.extend(_measured(results, "dask")[:1])
    if results.get("jax"):
        lines.append("")
        lines.extend(_jax_module().format_jax(results["jax"]))
        lines.extend(_measured(results, "jax"))
    if "dask_cost" in results:
        lines.append("")
        lines.extend(_dask_cost_module().format_dask_cost(results["dask_cost"]))
        lines.extend(_measured(results, "dask_cost")[:1])
    if results.get("exactness"):
        lines.append("")
        lines.extend(_exactness_module().format_exactness(results["exactness"]))
        lines.extend(_measured(results, "exactness")[:1])
    if results.get("targets"):
        lines.append("")
        lines.append("targets:")
    for k, v in results.get("targets", {}).items():
        val = "n/a" if v["value"] is None else f"{v['value']:.3f}"
        op = "<=" if v.get("lower_is_better") else ">="
        lines.append(f"  {'MET ' if v['met'] else 'MISS' if v['met'] is False else '----'}"
                     f" {k}: {val} ({op} {v['target']})")
    return "\n".join(lines).lstrip("\n")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, for a smoke test")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lbfgs-iter", type=int, default=30)
    p.add_argument("--density", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=7,
                   help="alternating repeats for the roofline/torch timings")
    p.add_argument("--fit-repeats", type=int, default=3,
                   help="alternating repeats for the fits")
    p.add_argument("--memory-n", type=int, default=200000)
    p.add_argument("--memory-d", type=int, default=100)
    p.add_argument("--memory-iter", type=int, default=10)
    p.add_argument("--predict-rows", type=int, default=100000,
                   help="rows of the batch prediction timings (section e)")
    p.add_argument("--predict-calls", type=int, default=200,
                   help="single-row calls per repeat (section e)")
    p.add_argument("--device", default="cuda",
                   help="PyTorch device of section (f), e.g. cuda or cpu")
    p.add_argument("--device-n", type=int, default=1_000_000,
                   help="rows of section (f) (float32)")
    p.add_argument("--dask-n", type=int, default=200_000,
                   help="rows of section (g)")
    p.add_argument("--dask-d", type=int, default=100,
                   help="features of section (g)")
    p.add_argument("--dask-hidden", type=int, default=64,
                   help="hidden units of section (g)")
    p.add_argument("--dask-blocks", type=int, default=10,
                   help="row blocks of the Dask array of section (g)")
    p.add_argument("--scale-workers", default="1,2,4,8,16,24",
                   help="numbers of workers of section (h)")
    p.add_argument("--scale-fan-ins", default="2,4,8,64",
                   help="fan-ins of the reduction tree in section (h)")
    p.add_argument("--jax-before", metavar="REF",
                   help="section (i) also times our solvers at this git commit")
    p.add_argument("--jax-rounds", type=int, default=2,
                   help="rounds of new processes in section (i)")
    p.add_argument("--cost-workers", default="1,2,4,8,16,32,64",
                   help="numbers of workers of section (j)")
    p.add_argument("--cost-rows", type=int, default=20,
                   help="rows per worker of section (j)")
    p.add_argument("--cost-compare", type=int, default=8,
                   help="in section (j), up to this many workers, measure the "
                        "star and the tree side by side")
    p.add_argument("--only", default="roofline,mlp,memory,torch,predict,dask,jax",
                   help="comma-separated sections to run (add 'device' for f, "
                        "'dask_scale' for h, 'dask_cost' for j)")
    p.add_argument("--json", default=None,
                   help="the results file that this run's sections go into "
                        f"(default {RESULTS}; none with --quick)")
    p.add_argument("--memory-child", choices=("ours", "mlp"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.d, args.hidden, args.classes = 400, 20, 16, 3
        args.batch, args.epochs, args.lbfgs_iter = 50, 2, 3
        args.repeats, args.fit_repeats = 2, 1
        args.memory_n, args.memory_d, args.memory_iter = 2000, 10, 2
        args.density = 0.2
        args.predict_rows, args.predict_calls = 2000, 20
        args.device_n = 2000
        args.dask_n, args.dask_d, args.dask_hidden, args.dask_blocks = 2000, 10, 8, 4
        args.scale_workers, args.scale_fan_ins = "1,2", "2"
        args.jax_rounds = 1
        args.cost_workers, args.cost_compare = "1,2", 2
    if args.json is None and not args.quick:
        args.json = str(RESULTS)
    return args


def main(argv=None):
    cfg = parse_args(argv)
    if cfg.memory_child:
        print(json.dumps(_memory_child(cfg.memory_child, cfg.memory_n,
                                       cfg.memory_d, cfg.hidden, cfg.classes,
                                       "float64", cfg.memory_iter)))
        return 0
    only = set(cfg.only.split(","))
    command = " ".join(["python benchmarks/run.py",
                        *(sys.argv[1:] if argv is None else argv)])
    # The results file holds every section, each from its own run: this run
    # replaces the sections it measures and keeps the others.
    results = read_results(cfg.json)
    sections = [("roofline", "roofline", bench_roofline),
                ("mlp", "vs_mlp", bench_vs_mlp),
                ("memory", "memory", bench_memory),
                ("torch", "torch", bench_torch),
                ("predict", "predict", bench_predict),
                ("device", "device", bench_device),
                ("dask", "dask", bench_dask),
                ("dask_scale", "dask_scale", bench_dask_scale),
                ("jax", "jax", bench_jax),
                ("dask_cost", "dask_cost", bench_dask_cost)]
    for name, key, func in sections:
        if name in only:
            run = run_stamp(cfg, command)
            t0 = time.perf_counter()
            results[key] = func(cfg)
            run["seconds"] = round(time.perf_counter() - t0, 1)
            with contextlib.suppress(OSError):
                run["machine"]["loadavg_at_end"] = os.getloadavg()
            results["runs"][key] = run
            print(f"[{name} done in {run['seconds']:.0f} s]", file=sys.stderr)
    write_results(results, cfg.json)
    print(results["table"])
    if cfg.json:
        print(f"\nwrote {cfg.json}; `python benchmarks/report.py` regenerates "
              "the pages' figures from it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
