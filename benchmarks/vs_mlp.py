"""Section (b): fit time against ``MLPClassifier(hidden_layer_sizes=(H,))``.

The same data and dtype (MLPClassifier keeps float32 data float32), the
same solver, batch size and number of epochs or iterations (sgd:
``--epochs`` epochs at batch ``--batch``, Nesterov momentum 0.9, learning
rate 0.01; lbfgs: ``--lbfgs-iter`` iterations), the same penalty
(``reg = alpha / (2 N)``, biases unpenalized) and the same stopping rule
(``tol=0``: neither stops early; both iteration counts are recorded); each
one's final training log loss, side by side, and the dtype of its fitted
weights. One warm-up fit of each, then ``--fit-repeats`` alternating
repeats.

What cannot be like for like is said so: MLPClassifier's L-BFGS packs its
weights into scipy's float64 vector and computes in float64 even on
float32 data (its fitted weights come back float64), so its float32 lbfgs
row compares our float32 fit with its float64 one.
"""

import numpy as np
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier

from common import (DTYPES, SPREAD_WORDS, TARGETS, alternate, compared, goal,
                    measured_lines, problem, quietly, seconds, spread_text)
from sk_twolayer import TwoLayerSoftmaxClassifier

KEY, NAME, LETTER = "vs_mlp", "mlp", "(b)"


def add_options(parser):
    pass


QUICK = {}


def estimators(solver, cfg, n):
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


def measure(cfg):
    rows = []
    for solver in ("sgd", "lbfgs"):
        for dname, dtype in DTYPES.items():
            X, y = problem(cfg.n, cfg.d, cfg.classes, dtype)
            fitted = {}

            def fit(which):
                def run():
                    ours, mlp = estimators(solver, cfg, cfg.n)
                    est = ours if which == "ours" else mlp
                    quietly(lambda: est.fit(X, y))
                    fitted[which] = est
                return run

            t = alternate({"ours": fit("ours"), "mlp": fit("mlp")},
                          cfg.fit_repeats, warmup=1)
            row = {"solver": solver, "dtype": dname,
                   "ours_s": float(np.median(t["ours"])),
                   "mlp_s": float(np.median(t["mlp"])),
                   **compared("speedup", t["mlp"], t["ours"]),
                   "repeats": cfg.fit_repeats, "times_s": seconds(t)}
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


def unlike(row):
    """Why a row cannot compare like with like, or None."""
    if row["mlp_coef_dtype"] != row["dtype"]:
        return (f"MLPClassifier computes in {row['mlp_coef_dtype']} on "
                f"{row['dtype']} data")
    return None


def goals(rows):
    met = {}
    for row in rows:
        key = f"speedup_vs_mlp_{row['solver']}"
        met[f"{key}_{row['dtype']}"] = goal(
            row["speedup"], TARGETS[key], spread=row.get("speedup_spread"),
            repeats=row.get("repeats"),
            note=unlike(row) and f"not like for like: {unlike(row)}")
    return met


def text(rows, run):
    lines = ["(b) fit vs MLPClassifier (speedup = MLP time / our time, ratio of "
             f"medians; {SPREAD_WORDS}; final training log loss side by side)",
             *measured_lines(run),
             f"| {'solver':6} | {'dtype':7} | {'ours s':>7} | {'MLP s':>7} "
             f"| {'speedup':>7} | {'spread':11} | {'iterations':10} "
             f"| {'log loss ours / MLP':19} | {'ours/MLP coef dtype':19} |",
             "|" + "|".join("-" * w for w in (8, 9, 9, 9, 9, 13, 12, 21, 21)) + "|"]
    for r in rows:
        dt = f"{r['ours_coef_dtype']}/{r['mlp_coef_dtype']}"
        iters = (f"{r['ours_n_iter']} / {r['mlp_n_iter']}" if "ours_n_iter" in r
                 else "")
        losses = f"{r['ours_train_log_loss']:.3g} / {r['mlp_train_log_loss']:.3g}"
        lines.append(f"| {r['solver']:6} | {r['dtype']:7} | {r['ours_s']:7.2f} | "
                     f"{r['mlp_s']:7.2f} | {r['speedup']:7.2f} | "
                     f"{spread_text(r.get('speedup_spread')):11} | {iters:10} | "
                     f"{losses:19} | {dt:19} |")
    lines += [f"    {r['solver']} {r['dtype']}: not like for like, {unlike(r)}"
              for r in rows if unlike(r)]
    return lines
