"""Section (b): fit time against ``MLPClassifier(hidden_layer_sizes=(H,))``.

The same solver, batch size and number of epochs or iterations (sgd:
``--epochs`` epochs at batch ``--batch``, Nesterov momentum 0.9, learning
rate 0.01; lbfgs: ``--lbfgs-iter`` iterations), the same penalty
(``reg = alpha / (2 N)``, biases unpenalized) and ``tol=0`` so that neither
stops early; each one's final training log loss and the dtype of its
fitted weights.
"""

import numpy as np
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier

from common import (DTYPES, TARGETS, alternate, goal, measured_lines, problem,
                    quietly, ratio)
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
                          cfg.fit_repeats, warmup=0)
            row = {"solver": solver, "dtype": dname,
                   "ours_s": float(np.median(t["ours"])),
                   "mlp_s": float(np.median(t["mlp"])),
                   "speedup": ratio(t["mlp"], t["ours"])}
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


def goals(rows):
    met = {}
    for row in rows:
        key = f"speedup_vs_mlp_{row['solver']}"
        met[f"{key}_{row['dtype']}"] = goal(row["speedup"], TARGETS[key])
    return met


def text(rows, run):
    lines = ["(b) fit vs MLPClassifier (speedup = MLP time / our time)",
             *measured_lines(run),
             f"| {'solver':6} | {'dtype':7} | {'ours s':>7} | {'MLP s':>7} "
             f"| {'speedup':>7} | {'ours logloss':>12} "
             f"| {'MLP logloss':>11} | {'ours/MLP coef dtype':19} |",
             "|" + "|".join("-" * w for w in (8, 9, 9, 9, 9, 14, 13, 21)) + "|"]
    for r in rows:
        dt = f"{r['ours_coef_dtype']}/{r['mlp_coef_dtype']}"
        lines.append(f"| {r['solver']:6} | {r['dtype']:7} | {r['ours_s']:7.2f} | "
                     f"{r['mlp_s']:7.2f} | {r['speedup']:7.2f} | "
                     f"{r['ours_train_log_loss']:12.4f} | "
                     f"{r['mlp_train_log_loss']:11.4f} | {dt:19} |")
    return lines
