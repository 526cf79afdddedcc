"""
Decision boundaries: hidden size and regularization
===================================================

How flexible is a two-layer network, and how does the L2 penalty rein it in?
On a two-dimensional toy problem we can simply draw the answer.

We fit :class:`~sk_twolayer.TwoLayerSoftmaxClassifier` on the two
interleaved half-moons of :func:`~sklearn.datasets.make_moons`, with noise,
for a grid of hidden sizes H and penalty strengths ``reg``, and shade each
model's predicted probability of the orange class.

* With very few hidden units the boundary is a handful of straight pieces
  (each ReLU unit contributes one fold) and the model **underfits**.
* With many units and almost no penalty the boundary bends around individual
  noisy points: training accuracy goes up, test accuracy goes down, the
  model **overfits**.
* A large penalty pulls every weight toward zero, the scores shrink, the
  boundary straightens and the probabilities flatten toward 1/2.
"""

# %%
# Data
# ----
import matplotlib.pyplot as plt
from sklearn.datasets import make_moons
from sklearn.inspection import DecisionBoundaryDisplay
from sklearn.model_selection import train_test_split

from sk_twolayer import TwoLayerSoftmaxClassifier

X, y = make_moons(n_samples=300, noise=0.3, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.5, random_state=0
)

# %%
# A grid of models
# ----------------
# The features are already on a unit scale, so no scaler is needed here.
# ``max_iter`` is generous so that every model is fitted to convergence: the
# differences below come from the model, not from stopping early.
hidden_sizes = [2, 8, 128]
regs = [1e-6, 1e-3, 1e-1]

fig, axes = plt.subplots(len(regs), len(hidden_sizes),
                         figsize=(10, 9.5), sharex=True, sharey=True)
for row, reg in enumerate(regs):
    for col, hidden_size in enumerate(hidden_sizes):
        clf = TwoLayerSoftmaxClassifier(
            hidden_size=hidden_size, reg=reg, max_iter=2000,
            random_state=0,
        ).fit(X_train, y_train)
        ax = axes[row, col]
        DecisionBoundaryDisplay.from_estimator(
            clf, X, response_method="predict_proba", ax=ax,
            cmap="PuOr_r", vmin=0, vmax=1, grid_resolution=150, alpha=0.8,
        )
        ax.scatter(X_train[:, 0], X_train[:, 1], c=y_train,
                   cmap="PuOr_r", edgecolor="k", s=18, vmin=-0.3, vmax=1.3)
        ax.set_title(
            f"H={hidden_size}, reg={reg:g}\n"
            f"train {clf.score(X_train, y_train):.2f} / "
            f"test {clf.score(X_test, y_test):.2f}",
            fontsize=10,
        )
        ax.set_xlabel("")
        ax.set_ylabel("")
fig.suptitle("Probability of the orange class; "
             "dots are the training points")
fig.tight_layout()
plt.show()

# %%
# Reading the grid
# ----------------
# Compare the titles: the training accuracy rises with H and falls with
# ``reg``, while the test accuracy peaks in between. Which cell wins depends
# on the data, which is why ``reg`` and ``hidden_size`` are tuned by
# cross-validation (see the grid-search example) rather than chosen by eye.
