"""
============================================
Training out of memory with Dask Incremental
============================================

:class:`dask_ml.wrappers.Incremental` feeds the row blocks of a Dask array, one
after the other, to the ``partial_fit`` of the estimator it wraps.
``TwoLayerSoftmaxClassifier`` runs one epoch of its stochastic solver per
``partial_fit`` call, so each block gets one pass and each call to
``Incremental.partial_fit`` is one pass over the whole data set.

Here the data (scikit-learn's digits) fits in memory, so we can compare the
accuracy reached after each pass with an ordinary in-memory ``fit`` on the same
data. Everything runs on a small :class:`distributed.LocalCluster` bound to
the loopback interface.
"""

# %%
# Data, split into row blocks
# ---------------------------
# A Dask array is a grid of NumPy blocks; ``Incremental`` needs every block
# to hold whole rows, so the columns are not chunked (``-1``).
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from dask_ml.wrappers import Incremental
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, random_state=0, stratify=y
)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

rows_per_block = 420
dX_train = da.from_array(X_train, chunks=(rows_per_block, -1))
dy_train = da.from_array(y_train, chunks=rows_per_block)
dX_test = da.from_array(X_test, chunks=(rows_per_block, -1))

# %%
# A local cluster
# ---------------
# Two worker processes, one thread each, listening on 127.0.0.1 only. On a
# real cluster, replace this by ``Client("tcp://scheduler-host:8786")``.
# The worker processes are started by re-importing this script, so, as in any
# script that starts a process-based cluster, the code that uses the cluster
# runs only under ``if __name__ == "__main__":``.
if __name__ == "__main__":
    cluster = LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1,
                           processes=True, dashboard_address=None)
    client = Client(cluster)

# %%
# Streaming passes through ``partial_fit``
# ----------------------------------------
# ``classes`` must be given on the first call, since a single block may not
# contain every digit. After each pass we score on the held-out blocks; the
# prediction runs in parallel, one task per block.
if __name__ == "__main__":
    n_passes = 15
    params = dict(solver="adam", hidden_size=64, random_state=0)
    incremental = Incremental(TwoLayerSoftmaxClassifier(**params),
                              scoring="accuracy", random_state=0)

    pass_accuracy = []
    for _ in range(n_passes):
        incremental.partial_fit(dX_train, dy_train, classes=np.unique(y))
        pass_accuracy.append(incremental.score(dX_test, y_test))

# %%
# The in-memory reference: ``partial_fit`` on the whole NumPy array is one
# epoch of the same solver, so this curve is what ``fit`` would reach after
# the same number of epochs.
if __name__ == "__main__":
    in_memory = TwoLayerSoftmaxClassifier(**params)
    memory_accuracy = []
    for _ in range(n_passes):
        in_memory.partial_fit(X_train, y_train, classes=np.unique(y))
        memory_accuracy.append(in_memory.score(X_test, y_test))

    print(f"Incremental after {n_passes} passes: {pass_accuracy[-1]:.3f}")
    print(f"in-memory after {n_passes} epochs: {memory_accuracy[-1]:.3f}")

# %%
# Accuracy per pass
# -----------------
if __name__ == "__main__":
    passes = np.arange(1, n_passes + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(passes, pass_accuracy, "o-", label="Incremental on the cluster")
    ax.plot(passes, memory_accuracy, "s--", label="in-memory fit")
    ax.set_xlabel("pass over the training data")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Adam, one epoch per pass")
    ax.legend(loc="lower right")
    fig.tight_layout()
    plt.show()

# %%
# Always release the cluster's processes when done.
if __name__ == "__main__":
    client.close()
    cluster.close()
