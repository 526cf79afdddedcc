"""
Tuning ``reg`` and ``hidden_size`` with GridSearchCV
====================================================

The two hyperparameters that matter most for
:class:`~sk_twolayer.TwoLayerSoftmaxClassifier` are the number of hidden
units ``hidden_size`` (H) and the strength of the L2 penalty ``reg``
(:math:`\\lambda`). Both trade fitting the training data against
generalizing, so they are best searched together. Here we search over both with
:class:`~sklearn.model_selection.GridSearchCV` and draw the cross-validated
accuracy as a heatmap.
"""

# %%
# The pipeline and the grid
# -------------------------
# Parameters of a pipeline step are addressed as ``<step name>__<param>``;
# :func:`~sklearn.pipeline.make_pipeline` names each step after its class in
# lower case. ``reg`` spans several orders of magnitude, so its grid is
# logarithmic.
import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier

X, y = load_digits(return_X_y=True)

model = make_pipeline(
    StandardScaler(),
    TwoLayerSoftmaxClassifier(max_iter=100, random_state=0),
)
param_grid = {
    "twolayersoftmaxclassifier__hidden_size": [4, 16, 64, 128],
    "twolayersoftmaxclassifier__reg": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
}
cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
search = GridSearchCV(model, param_grid, cv=cv, n_jobs=2)
# A 100-iteration budget is enough to rank the candidates; the strongly
# penalized ones would warn that L-BFGS has not fully converged.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    search.fit(X, y)

best = search.best_params_
print("best parameters:", {k.split("__")[1]: v for k, v in best.items()})
print(f"best mean CV accuracy: {search.best_score_:.3f}")

# %%
# The heatmap
# -----------
# ``cv_results_`` lists the candidates in the order of
# :class:`~sklearn.model_selection.ParameterGrid`, which varies the
# alphabetically last key fastest. Reshaping the mean test scores therefore
# gives one row per ``hidden_size`` and one column per ``reg``.
hidden_sizes = param_grid["twolayersoftmaxclassifier__hidden_size"]
regs = param_grid["twolayersoftmaxclassifier__reg"]
scores = search.cv_results_["mean_test_score"]
scores = scores.reshape(len(hidden_sizes), len(regs))

fig, ax = plt.subplots(figsize=(8, 4.5))
im = ax.imshow(scores, cmap="viridis", vmin=max(0.5, scores.min()), vmax=1)
ax.set_xticks(range(len(regs)), labels=[f"{r:g}" for r in regs])
ax.set_yticks(range(len(hidden_sizes)), labels=hidden_sizes)
ax.set_xlabel("reg")
ax.set_ylabel("hidden_size")
for i in range(len(hidden_sizes)):
    for j in range(len(regs)):
        ax.text(j, i, f"{scores[i, j]:.3f}", ha="center", va="center",
                color="w" if scores[i, j] < scores.max() - 0.05 else "k")
fig.colorbar(im, ax=ax, label="mean CV accuracy")
ax.set_title("3-fold CV accuracy on digits")
fig.tight_layout()
plt.show()

# %%
# What the map says
# -----------------
# * Reading down a column: a handful of hidden units is too few for ten
#   digits; beyond a few dozen, more units change little on this data set.
# * Reading along a row: a small penalty costs nothing and a moderate one can
#   help a little, but too much of it shrinks the weights until the network
#   can no longer tell the digits apart, and accuracy falls to chance
#   (0.1 for ten classes).
# * The map is flat near its best: many settings are within a fraction of a
#   percent, so prefer the cheaper (smaller) network among them.
#
# Because ``reg`` here is not divided by the number of samples, the value
# found on this data set is a reasonable starting point on a larger sample of
# the same kind of data.
#
# The search refits the best candidate on all the data, so ``search`` itself
# can now be used to predict:
print(search.predict(X[:10]), y[:10])
