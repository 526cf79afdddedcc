"""
Quick start: handwritten digits
===============================

This example trains :class:`~sk_twolayer.TwoLayerSoftmaxClassifier` on the
8x8 digit images that ship with scikit-learn, checks its accuracy on images
it never saw, and looks at what it gets wrong.

The network has one hidden layer of 100 ReLU units and a softmax output over
the ten digits. Like any scikit-learn classifier it goes in a
:class:`~sklearn.pipeline.Pipeline`; standardizing the pixels first lets the
optimizer work with features of comparable scale.
"""

# %%
# Load the data and hold out a test set
# -------------------------------------
# Each sample is a flattened 8x8 image, so D = 64 features, and there are
# C = 10 classes. We keep a quarter of the images aside, stratified so every
# digit appears in both parts in the same proportion.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier

digits = load_digits()
X, y = digits.data, digits.target
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
print(f"{X_train.shape[0]} training images, {X_test.shape[0]} test images, "
      f"{X.shape[1]} pixels each")

# %%
# Fit the pipeline
# ----------------
# The default solver is L-BFGS on the full training set: no learning rate to
# pick, and with ``random_state`` fixed the result is the same on every run.
model = make_pipeline(
    StandardScaler(),
    TwoLayerSoftmaxClassifier(hidden_size=100, reg=1e-4, random_state=0),
)
model.fit(X_train, y_train)
clf = model[-1]
print(f"L-BFGS ran {clf.n_iter_} iterations; final objective {clf.loss_:.4f}")
print(f"test accuracy: {model.score(X_test, y_test):.3f}")

# %%
# The objective went down at every iteration
# ------------------------------------------
# ``loss_curve_`` holds the training objective (mean log loss plus the L2
# penalty) after each iteration, whatever the solver.
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(np.arange(1, len(clf.loss_curve_) + 1), clf.loss_curve_)
ax.set_xlabel("L-BFGS iteration")
ax.set_ylabel("training objective (log scale)")
ax.set_title("Training objective of the digits model")
fig.tight_layout()

# %%
# Which digits get confused?
# --------------------------
# The confusion matrix counts, for each true digit (rows), how often each
# digit was predicted (columns). Everything off the diagonal is a mistake.
fig, ax = plt.subplots(figsize=(5.5, 5))
ConfusionMatrixDisplay.from_estimator(model, X_test, y_test, ax=ax,
                                      colorbar=False)
ax.set_title("Test-set confusion matrix")
fig.tight_layout()

# %%
# Look at the mistakes
# --------------------
# ``predict_proba`` gives the softmax output. For the misclassified test
# images we show the image, the prediction and how confident the network was.
proba = model.predict_proba(X_test)
pred = clf.classes_[proba.argmax(axis=1)]
wrong = np.flatnonzero(pred != y_test)
print(f"{wrong.size} of {y_test.size} test images are misclassified")

n_show = min(8, wrong.size)
n_cols = max(n_show, 1)
fig, axes = plt.subplots(1, n_cols, figsize=(1.6 * n_cols, 2.2))
for ax, i in zip(np.atleast_1d(axes), wrong[:n_show]):
    ax.imshow(X_test[i].reshape(8, 8), cmap="gray_r")
    ax.set_title(f"true {y_test[i]}\npred {pred[i]} ({proba[i].max():.0%})",
                 fontsize=9)
for ax in np.atleast_1d(axes):
    ax.set_axis_off()
fig.tight_layout()
plt.show()
