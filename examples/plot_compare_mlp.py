"""
Side by side with MLPClassifier
===============================

scikit-learn's :class:`~sklearn.neural_network.MLPClassifier` with one
hidden layer is the same model as
:class:`~sk_twolayer.TwoLayerSoftmaxClassifier`. This example fits both on
the classification data sets that ship with scikit-learn and compares their
cross-validated accuracy and fit time.

To compare like with like we give both the same objective:

* the same architecture, 100 ReLU units, and the same solver (L-BFGS) with
  the same iteration budget and tolerance;
* the same penalty. MLPClassifier penalizes only the weights, with
  :math:`\\frac{\\alpha}{2 n}\\,\\|W\\|^2` where :math:`n` is the number of
  training samples; ours with ``penalize_bias=False`` uses
  :math:`\\lambda \\|W\\|^2`. So ``alpha = 2 * n * reg`` gives the same
  objective.

The two still differ in their initial weights, so they do not follow the
same path.
"""

# %%
# The benchmark
# -------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier

datasets = {
    "iris": load_iris,
    "wine": load_wine,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
}
reg, hidden, max_iter, tol = 1e-3, 100, 200, 1e-4
cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)

results = {}
for name, load in datasets.items():
    X, y = load(return_X_y=True)
    n_train = X.shape[0] * (cv.n_splits - 1) // cv.n_splits
    models = {
        "TwoLayerSoftmaxClassifier": TwoLayerSoftmaxClassifier(
            hidden_size=hidden, reg=reg, penalize_bias=False,
            max_iter=max_iter, tol=tol, random_state=0,
        ),
        "MLPClassifier": MLPClassifier(
            hidden_layer_sizes=(hidden,), alpha=2 * n_train * reg,
            solver="lbfgs", max_iter=max_iter, tol=tol, random_state=0,
        ),
    }
    for model_name, est in models.items():
        with warnings.catch_warnings():
            # Both get the same budget; the iteration counts below show
            # whether they used all of it.
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipe = make_pipeline(StandardScaler(), est)
            cvres = cross_validate(pipe, X, y, cv=cv, return_estimator=True)
        results[name, model_name] = cvres
        n_iter = np.mean([p[-1].n_iter_ for p in cvres["estimator"]])
        acc, fit = cvres["test_score"], cvres["fit_time"]
        print(f"{name:>13} {model_name:>25}: accuracy {acc.mean():.3f} "
              f"+/- {acc.std():.3f}, fit {fit.mean() * 1000:4.0f} ms, "
              f"{n_iter:5.1f} iterations")

# %%
# Accuracy and fit time
# ---------------------
# Bars show the mean over the five folds, error bars the standard deviation.
names = list(datasets)
model_names = ["TwoLayerSoftmaxClassifier", "MLPClassifier"]
x = np.arange(len(names))
width = 0.38
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for k, model_name in enumerate(model_names):
    acc = [results[n, model_name]["test_score"] for n in names]
    fit = [results[n, model_name]["fit_time"] for n in names]
    offset = (k - 0.5) * width
    ax1.bar(x + offset, [a.mean() for a in acc], width,
            yerr=[a.std() for a in acc], label=model_name, capsize=3)
    ax2.bar(x + offset, [f.mean() for f in fit], width,
            yerr=[f.std() for f in fit], label=model_name, capsize=3)
ax1.set_ylim(0.8, 1.0)
ax1.set_ylabel("5-fold CV accuracy")
ax2.set_ylabel("fit time per fold (s)")
for ax in (ax1, ax2):
    ax.set_xticks(x, labels=names)
ax2.legend(loc="upper left")
ax1.set_title("Accuracy (same objective)")
ax2.set_title("Fit time, L-BFGS")
fig.tight_layout()
plt.show()

# %%
# What to take away
# -----------------
# With the same objective the two reach essentially the same accuracy: the
# model is the same, only the implementation differs. The fit times depend
# on how many iterations each needed, on the cost of one loss-and-gradient
# evaluation and on the machine that built this page (with a single BLAS
# thread, as the documentation build sets it); the
# :doc:`benchmark page </benchmarks>` measures the cost per iteration under
# controlled conditions.
