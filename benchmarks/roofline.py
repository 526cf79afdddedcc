"""Section (a): the loss and gradient against the matrix-product bound.

The time of the five GEMMs of one forward/backward pass alone (the same
shapes, flops and data, measured in the same run) divided by the time of
our loss and gradient, for float64 and float32, dense input and CSR input
at ``--density`` (against a sparse-aware bound: the same sparse-dense
products plus the dense ones); and one shuffled SGD epoch at batch
``--batch`` against the GEMMs of its batches and against a *floor* (those
GEMMs plus the batch gather and one update pass).
"""

import numpy as np
import scipy.sparse as sp

from common import (DTYPES, SPREAD_WORDS, TARGETS, alternate, batch_bounds, compared,
                    five_gemms, flops, gemm_bound, goal, measured_lines, parameters,
                    problem, seconds, spread_text)
from sk_twolayer import _solvers, loss_and_gradient
from sk_twolayer._loss import TwoLayerLoss

KEY, NAME, LETTER = "roofline", "roofline", "(a)"


def add_options(parser):
    parser.add_argument("--density", type=float, default=0.01)


QUICK = {"density": 0.2}


def measure(cfg):
    rows = []
    n, d, h, c, reps = cfg.n, cfg.d, cfg.hidden, cfg.classes, cfg.repeats
    for dname, dtype in DTYPES.items():
        for kind in ("dense", "csr"):
            density = None if kind == "dense" else cfg.density
            X, y = problem(n, d, c, dtype, density=density)
            layout, theta = parameters(d, h, c, dtype)
            W1, W2, b1, b2 = layout.unpack(theta)
            bound = gemm_bound(X, layout, theta, y)
            loss = TwoLayerLoss(layout, reg=1e-4)
            grad = np.empty_like(theta)
            funcs = {
                "gemm": bound,
                "loss_and_gradient": lambda: loss_and_gradient(
                    W1, b1, W2, b2, X, y, 1e-4),
                "TwoLayerLoss.loss_gradient": lambda: loss.loss_gradient(
                    theta, X, y, grad=grad),
            }
            t = alternate(funcs, reps)
            nnz = X.nnz if sp.issparse(X) else None
            gflop = flops(n, d, h, c, nnz) / 1e9
            for path in ("loss_and_gradient", "TwoLayerLoss.loss_gradient"):
                rows.append({
                    "dtype": dname, "input": kind, "path": path,
                    "n": n, "batch": n,
                    "bound_s": float(np.median(t["gemm"])),
                    "ours_s": float(np.median(t[path])),
                    "bound_gflops": gflop / float(np.median(t["gemm"])),
                    **compared("roofline_ratio", t["gemm"], t[path]),
                    "repeats": reps,
                    "times_s": seconds({"gemm": t["gemm"], "ours": t[path]}),
                })
            del X
        rows.extend(_sgd_epoch(cfg, dname, dtype))
    return rows


def _sgd_epoch(cfg, dname, dtype):
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
    X, y = problem(n, d, c, dtype)
    layout, theta0 = parameters(d, h, c, dtype)
    bounds = batch_bounds(X, y, layout, theta0, b)
    loss = TwoLayerLoss(layout, reg=1e-4)
    order = np.random.RandomState(0).permutation(n)
    gather = _solvers.BatchGatherer(X)
    update = _solvers.SGD(0.0, momentum=0.9, nesterov=True)
    update.start(theta0)
    # (The products below write the weights' gradients, not the biases':
    # those start at zero, or whatever the new buffer held, NaN perhaps,
    # would reach the weights through the update, even at a zero rate.)
    update.grad[...] = 0
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
            five_gemms(Xb, W1, W2, A[:m], S[:m], dH[:m], gW1, gW2)
            update.step(loss.penalty)

    t = alternate({"gemm": bound, "floor": floor, "epoch": epoch}, cfg.repeats)
    common = {"dtype": dname, "input": "dense", "n": n, "batch": b,
              "bound_s": float(np.median(t["gemm"])),
              "bound_gflops": flops(n, d, h, c) / 1e9 / float(np.median(t["gemm"])),
              "repeats": cfg.repeats}
    return [
        dict(common, path="sgd_epoch", ours_s=float(np.median(t["epoch"])),
             **compared("roofline_ratio", t["gemm"], t["epoch"]),
             floor_s=float(np.median(t["floor"])),
             **compared("floor_ratio", t["gemm"], t["floor"]),
             **compared("ours_vs_floor", t["floor"], t["epoch"]),
             times_s=seconds(t)),
        dict(common, path="sgd_floor GEMM+gather+upd",
             ours_s=float(np.median(t["floor"])),
             **compared("roofline_ratio", t["gemm"], t["floor"])),
    ]


def goals(rows):
    roof = {(r["dtype"], r["input"], r["path"]): r for r in rows}
    met = {}
    for dname in DTYPES:
        for what, path in (("loss_and_gradient", "loss_and_gradient"),
                           ("sgd_epoch", "sgd_epoch")):
            key = f"{what}_roofline_{dname}"
            r = roof.get((dname, "dense", path), {})
            met[key] = goal(r.get("roofline_ratio"), TARGETS[key],
                            spread=r.get("roofline_ratio_spread"),
                            repeats=r.get("repeats"))
    return met


def text(rows, run):
    lines = ["(a) roofline: GEMM-only time / our time (1.0 = at the bound), ratio "
             f"of medians; {SPREAD_WORDS}",
             *measured_lines(run),
             f"| {'dtype':7} | {'input':5} | {'path':26} | {'bound ms':>9} "
             f"| {'ours ms':>9} | {'GFLOP/s':>7} | {'ratio':>5} | {'spread':11} |",
             "|" + "|".join("-" * w for w in (9, 7, 28, 11, 11, 9, 7, 13)) + "|"]
    for r in rows:
        lines.append(f"| {r['dtype']:7} | {r['input']:5} | {r['path']:26} | "
                     f"{r['bound_s'] * 1e3:9.1f} | {r['ours_s'] * 1e3:9.1f} | "
                     f"{r['bound_gflops']:7.1f} | {r['roofline_ratio']:5.2f} | "
                     f"{spread_text(r.get('roofline_ratio_spread')):11} |")
    return lines
