"""
Early stopping and validation curves
====================================

A network trained for long enough on a small data set starts fitting the
noise: the training loss keeps falling while the loss on held-out data
levels off and then creeps back up. Early stopping watches a validation set
during training, stops once its accuracy stops improving and keeps the best
weights seen.

:class:`~sk_twolayer.TwoLayerSoftmaxClassifier` records, for every solver,

* ``loss_curve_``: the training objective after each iteration or epoch;
* ``validation_loss_curve_``: the mean log loss on the validation data (no
  penalty term);
* ``validation_scores_`` and ``best_validation_score_``: the validation
  accuracy.
"""

# %%
# A setting that overfits
# -----------------------
# Few training samples, a wide hidden layer and almost no penalty. We pass
# our own validation set with ``X_val`` and ``y_val`` and set
# ``n_iter_no_change`` to the full budget, so that training runs all the way
# and we see the whole validation curve.
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier

X, y = load_digits(return_X_y=True)
X_train, X_rest, y_train, y_rest = train_test_split(
    X, y, train_size=300, stratify=y, random_state=0
)
X_val, X_test, y_val, y_test = train_test_split(
    X_rest, y_rest, train_size=500, stratify=y_rest, random_state=0
)
scaler = StandardScaler().fit(X_train)
X_train, X_val, X_test = (scaler.transform(a)
                          for a in (X_train, X_val, X_test))

n_epochs = 150
full = TwoLayerSoftmaxClassifier(
    hidden_size=256, reg=1e-6, solver="adam", max_iter=n_epochs,
    n_iter_no_change=n_epochs, batch_size=50, random_state=0,
)
with warnings.catch_warnings():
    # Running out the whole budget is what we asked for here.
    warnings.simplefilter("ignore", ConvergenceWarning)
    full.fit(X_train, y_train, X_val=X_val, y_val=y_val)

epochs = np.arange(1, len(full.loss_curve_) + 1)
best_epoch = int(np.argmax(full.validation_scores_)) + 1
print(f"trained {full.n_iter_} epochs; best validation accuracy "
      f"{full.best_validation_score_:.3f} at epoch {best_epoch}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.semilogy(epochs, full.loss_curve_, label="training objective")
ax1.semilogy(epochs, full.validation_loss_curve_, label="validation log loss")
ax1.axvline(np.argmin(full.validation_loss_curve_) + 1, color="grey",
            ls=":", label="lowest validation loss")
ax1.set_xlabel("epoch")
ax1.set_ylabel("loss (log scale)")
ax1.legend()
ax1.set_title("Training keeps improving, validation stalls")
ax2.plot(epochs, full.validation_scores_, color="C2")
ax2.axvline(best_epoch, color="grey", ls=":", label="best accuracy")
ax2.set_xlabel("epoch")
ax2.set_ylabel("validation accuracy")
ax2.legend()
ax2.set_title("Validation accuracy")
fig.tight_layout()

# %%
# The validation loss bottoms out and then slowly rises, while the training
# objective keeps falling by orders of magnitude: from there on the network
# is memorizing the 300 training images. The validation accuracy stops
# improving much earlier, after a few dozen epochs; everything after that is
# spent computing for (almost) nothing.
#
# Letting the estimator stop by itself
# ------------------------------------
# With ``early_stopping=True`` the estimator holds out ``validation_fraction``
# of the training data (stratified), and stops once the validation accuracy
# has not improved by ``tol`` for ``n_iter_no_change`` epochs. The weights of
# the best epoch are restored. This works for every solver, L-BFGS included.
stopped = TwoLayerSoftmaxClassifier(
    hidden_size=256, reg=1e-6, solver="adam", max_iter=n_epochs,
    batch_size=50, early_stopping=True, validation_fraction=0.2,
    n_iter_no_change=10, random_state=0,
).fit(X_train, y_train)
print(f"early stopping ended training after {stopped.n_iter_} of {n_epochs} "
      f"epochs (best validation accuracy "
      f"{stopped.best_validation_score_:.3f})")

fig, ax = plt.subplots(figsize=(6, 3.5))
e = np.arange(1, len(stopped.loss_curve_) + 1)
ax.semilogy(e, stopped.loss_curve_, label="training objective")
ax.semilogy(e, stopped.validation_loss_curve_, label="validation log loss")
ax.set_xlabel("epoch")
ax.set_ylabel("loss (log scale)")
ax.set_title("early_stopping=True, validation_fraction=0.2")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# Did it pay off?
# ---------------
# The test set was used by neither model. Early stopping trained on 20% fewer
# samples and for far fewer epochs, and still generalizes about as well as the
# run that went to the end (whose returned weights are also those of its best
# validation epoch, since a validation set was given).
for name, model in [("full run, best epoch", full),
                    ("early stopping", stopped)]:
    print(f"{name:>22}: test accuracy {model.score(X_test, y_test):.3f}")
