"""
Comparing the solvers: L-BFGS, SGD and Adam
===========================================

:class:`~sk_twolayer.TwoLayerSoftmaxClassifier` offers three solvers, and
all three minimize the same objective, the one computed by
:func:`~sk_twolayer.loss_and_gradient`. That makes their loss curves directly
comparable. We train each on the digits data and plot the training objective
against iterations (epochs for the stochastic solvers) and against wall-clock
time.

An L-BFGS *iteration* and an SGD or Adam *epoch* cost about the same: each
touches every sample once or a little more (one full-batch gradient for
L-BFGS, plus the occasional extra one in its line search; one pass of
minibatch gradients for the others). But an epoch makes many small steps
while an L-BFGS iteration makes one well-chosen step, so the curves differ in
shape.
"""

# %%
# Data and models
# ---------------
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier

X, y = load_digits(return_X_y=True)
X = StandardScaler().fit_transform(X)
classes = np.unique(y)
n_epochs = 60
common = dict(hidden_size=100, reg=1e-4, random_state=0)

# %%
# Timing every epoch of SGD and Adam
# ----------------------------------
# :meth:`~sk_twolayer.TwoLayerSoftmaxClassifier.partial_fit` runs exactly one
# epoch, so calling it in a loop lets us time each epoch. The learning rates
# are the solvers' ``"auto"`` defaults (0.02 for SGD with momentum, 0.002 for
# Adam).
curves = {}
for solver in ["sgd", "adam"]:
    clf = TwoLayerSoftmaxClassifier(solver=solver, **common)
    elapsed, start = [], time.perf_counter()
    for epoch in range(n_epochs):
        clf.partial_fit(X, y, classes=classes)
        elapsed.append(time.perf_counter() - start)
    curves[solver] = (np.array(clf.loss_curve_), np.array(elapsed))

# %%
# Timing L-BFGS
# -------------
# L-BFGS is a full-batch method driven by scipy, so instead we fit it once
# per budget of iterations and time each fit. With a fixed ``random_state``
# the runs follow the same path, so the shorter runs are prefixes of the
# longest one.
budgets = [1, 2, 4, 8, 15, 30, n_epochs]
lbfgs_time = []
for budget in budgets:
    start = time.perf_counter()
    clf = TwoLayerSoftmaxClassifier(solver="lbfgs", max_iter=budget,
                                    **common)
    with warnings.catch_warnings():
        # Stopping after a few iterations is the point here.
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    lbfgs_time.append(time.perf_counter() - start)
lbfgs_loss = np.array(clf.loss_curve_)
# Time to reach iteration k, interpolated between the measured budgets.
iters = np.arange(1, lbfgs_loss.size + 1)
curves["lbfgs"] = (lbfgs_loss, np.interp(iters, budgets, lbfgs_time))

for solver, (loss, _) in curves.items():
    print(f"{solver:>5}: {loss.size} iterations, "
          f"final objective {loss[-1]:.4f}")

# %%
# Loss against iterations and against time
# ----------------------------------------
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
colors = {"lbfgs": "C0", "sgd": "C1", "adam": "C2"}
for solver, (loss, seconds) in curves.items():
    epochs = np.arange(1, loss.size + 1)
    ax1.semilogy(epochs, loss, label=solver, color=colors[solver])
    ax2.semilogy(seconds, loss, label=solver, color=colors[solver])
ax1.set_xlabel("iteration (L-BFGS) or epoch (SGD, Adam)")
ax1.set_ylabel("training objective")
ax2.set_xlabel("wall-clock seconds")
ax1.legend()
ax1.set_title("Per iteration / epoch")
ax2.set_title("Per second")
fig.suptitle("The same objective, three solvers, on digits")
fig.tight_layout()
plt.show()

# %%
# Which solver when?
# ------------------
# * On a data set that fits in memory, **L-BFGS** (the default) usually
#   reaches the lowest objective, has no learning rate to tune and is
#   deterministic. Its first iterations are slow while it builds its picture
#   of the curvature, then it drops fast.
# * **Adam** makes rapid progress in the first epochs and is forgiving about
#   its learning rate; a good choice when an epoch is expensive and a
#   reasonable model is needed quickly.
# * **SGD** with Nesterov momentum is the simplest update and, with a tuned
#   learning rate and schedule, generalizes well; it needs the most care.
# * Only the stochastic solvers support
#   :meth:`~sk_twolayer.TwoLayerSoftmaxClassifier.partial_fit`, for data that
#   arrives in chunks or does not fit in memory.
#
# Wall-clock numbers depend on the machine this page was built on (the
# documentation build uses a single BLAS thread); the shape of the curves is
# what carries over.
