"""Section (d): PyTorch CPU on the same network, data and batch size.

``nn.Sequential(Linear, ReLU, Linear)``, cross-entropy, the same initial
weights, ``torch.optim.SGD(nesterov=True)``, where torch is installed: the
full-batch loss and gradient, and ``--epochs`` SGD epochs at batch
``--batch``; the SGD rows also give both as a fraction of the GEMM time of
the same epochs, timed in the same alternation.
"""

import os

import numpy as np

from common import (DTYPES, SPREAD_WORDS, TARGETS, alternate, batch_bounds,
                    compared, goal, measured_lines, parameters, problem, ratio,
                    seconds, spread_text, torch_sgd_loop)
from sk_twolayer import _solvers
from sk_twolayer._loss import TwoLayerLoss

KEY, NAME, LETTER = "torch", "torch", "(d)"


def add_options(parser):
    pass


QUICK = {}


def measure(cfg):
    try:
        import torch
    except ImportError:
        return {"available": False}
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rows = []
    n, d, h, c, b = cfg.n, cfg.d, cfg.hidden, cfg.classes, cfg.batch
    for dname, dtype in DTYPES.items():
        X, y = problem(n, d, c, dtype)
        tdtype = torch.float64 if dtype == np.float64 else torch.float32
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
        layout, theta0 = parameters(d, h, c, dtype)
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
            torch_sgd_loop(net(), Xt, yt, b, cfg.epochs,
                           torch.Generator().manual_seed(0))

        def ours_sgd():
            _solvers.stochastic(
                loss.data_loss_gradient, theta0.copy(), X, y,
                optimizer=_solvers.SGD(0.01, momentum=0.9, nesterov=True),
                batch_size=b, max_iter=cfg.epochs,
                rng=np.random.RandomState(0),
                stopper=_solvers.Stopper(0.0, cfg.epochs + 1),
                warn_on_max_iter=False)

        t = alternate({"torch_full": torch_full, "ours_full": ours_full},
                      cfg.repeats)
        rows.append({"dtype": dname, "work": "full-batch loss+gradient",
                     "ours_s": float(np.median(t["ours_full"])),
                     "torch_s": float(np.median(t["torch_full"])),
                     **compared("speedup", t["torch_full"], t["ours_full"]),
                     "repeats": cfg.repeats, "times_s": seconds(t)})
        bounds = batch_bounds(X, y, layout, theta0, b)

        def gemm_sgd():  # the GEMMs of the same epochs, alone
            for _ in range(cfg.epochs):
                for f in bounds:
                    f()

        t = alternate({"torch_sgd": torch_sgd, "ours_sgd": ours_sgd,
                       "gemm": gemm_sgd}, cfg.fit_repeats, warmup=1)
        rows.append({"dtype": dname,
                     "work": f"SGD {cfg.epochs} epochs, batch {b}",
                     "ours_s": float(np.median(t["ours_sgd"])),
                     "torch_s": float(np.median(t["torch_sgd"])),
                     **compared("speedup", t["torch_sgd"], t["ours_sgd"]),
                     "ours_roofline": ratio(t["gemm"], t["ours_sgd"]),
                     "torch_roofline": ratio(t["gemm"], t["torch_sgd"]),
                     "repeats": cfg.fit_repeats, "times_s": seconds(t)})
    return {"available": True, "version": torch.__version__,
            "threads": torch.get_num_threads(), "rows": rows}


def goals(t):
    if not t.get("available"):
        return {}
    return {f"speedup_vs_torch {row['work']} {row['dtype']}":
            goal(row["speedup"], TARGETS["speedup_vs_torch"],
                 spread=row.get("speedup_spread"), repeats=row.get("repeats"))
            for row in t["rows"]}


def text(t, run):
    if not t.get("available"):
        return ["(d) PyTorch: not installed (pip install torch==2.13.0)"]
    lines = [f"(d) PyTorch {t['version']} CPU, {t['threads']} threads "
             "(speedup = torch time / our time, ratio of medians)",
             "    (roofline: GEMM-only time of the same epochs / time; "
             f"{SPREAD_WORDS})",
             *measured_lines(run),
             f"| {'dtype':7} | {'work':26} | {'ours s':>7} | {'torch s':>7} "
             f"| {'speedup':>7} | {'spread':11} | {'ours roofline':>13} "
             f"| {'torch roofline':>14} |",
             "|" + "|".join("-" * w for w in (9, 28, 9, 9, 9, 13, 15, 16)) + "|"]
    for r in t["rows"]:
        ours_r = f"{r['ours_roofline']:13.2f}" if "ours_roofline" in r else " " * 13
        torch_r = (f"{r['torch_roofline']:14.2f}" if "torch_roofline" in r
                   else " " * 14)
        lines.append(f"| {r['dtype']:7} | {r['work']:26} | {r['ours_s']:7.3f} | "
                     f"{r['torch_s']:7.3f} | {r['speedup']:7.2f} | "
                     f"{spread_text(r.get('speedup_spread')):11} | {ours_r} "
                     f"| {torch_r} |")
    return lines
