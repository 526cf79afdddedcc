"""
========================================
Data-parallel L-BFGS on a Dask cluster
========================================

:class:`~sk_twolayer.dask.DaskTwoLayerSoftmaxClassifier` fits one model on
data spread over the workers of a Dask cluster. The row blocks are read and
checked once and stay on the workers; scipy's L-BFGS runs here, in this
process, and each evaluation of the loss and gradient runs on the workers
that hold the blocks. The weights go out once, the workers add up their
losses and gradients among themselves, and one loss and one gradient come
back.

The objective is exactly the one an in-memory fit minimizes, so with the
same ``random_state`` the model is the in-memory model up to rounding, for
any chunking and any number of workers. This example checks that on
scikit-learn's digits, read from parquet files as a larger data set would
be, then predicts lazily and trains once more with early stopping.
Everything runs on a small :class:`distributed.LocalCluster` bound to the
loopback interface.
"""

# %%
# A local cluster
# ---------------
# Two worker processes, one thread each, listening on 127.0.0.1 only. On a
# real cluster, replace this by ``Client("tcp://scheduler-host:8786")``.
# The worker processes are started by re-importing this script, so, as in
# any script that starts a process-based cluster, the code that uses the
# cluster runs only under ``if __name__ == "__main__":``.
import shutil
import tempfile
import warnings
from pathlib import Path

import dask.dataframe as dd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier
from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier

if __name__ == "__main__":
    cluster = LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1,
                           processes=True, dashboard_address=None)
    client = Client(cluster)

# %%
# The data, as parquet files
# --------------------------
# The digits, standardized, written as four parquet files of training rows
# and two of test rows, with one column per pixel and a ``label`` column.
# ``dd.read_parquet`` reads them lazily (here, one partition per file);
# nothing is loaded until the fit asks for it. Taking the features and the labels from
# the same dataframe keeps them aligned, partition by partition.
if __name__ == "__main__":
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    scaler = StandardScaler().fit(X_train)
    features = [f"pixel_{k}" for k in range(X.shape[1])]
    train = pd.DataFrame(scaler.transform(X_train), columns=features).assign(
        label=y_train)
    test = pd.DataFrame(scaler.transform(X_test), columns=features).assign(
        label=y_test)

    folder = Path(tempfile.mkdtemp())
    for part, rows in enumerate(np.array_split(np.arange(len(train)), 4)):
        train.iloc[rows].to_parquet(folder / f"train-{part}.parquet")
    for part, rows in enumerate(np.array_split(np.arange(len(test)), 2)):
        test.iloc[rows].to_parquet(folder / f"test-{part}.parquet")

    df = dd.read_parquet(str(folder / "train-*.parquet"))
    df_test = dd.read_parquet(str(folder / "test-*.parquet"))
    print(f"{df.npartitions} training partitions, {df_test.npartitions} test partitions")

# %%
# Fitting on the workers
# ----------------------
# ``fit`` finds the cluster through the current Dask client (the one
# created above). The dataframe's column names become
# ``feature_names_in_``, as with a pandas dataframe. Both fits below get the
# same fixed budget of 50 L-BFGS iterations and use all of it, so the
# ``ConvergenceWarning`` that says so is silenced.
if __name__ == "__main__":
    params = dict(hidden_size=32, reg=1e-3, max_iter=50, random_state=0)
    X_dask, y_dask = df[features], df["label"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = DaskTwoLayerSoftmaxClassifier(**params).fit(X_dask, y_dask)
    print("feature names:", clf.feature_names_in_[:3], "...")

# %%
# The same fit in memory, on the same rows in the same order. The two models
# agree up to rounding: the same number of iterations, and probabilities
# that differ by rounding errors only.
if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        in_memory = TwoLayerSoftmaxClassifier(**params).fit(train[features],
                                                            train["label"])
    gap = np.abs(clf.predict_proba(test[features])
                 - in_memory.predict_proba(test[features])).max()
    print(f"n_iter_: data-parallel {clf.n_iter_}, in memory {in_memory.n_iter_}")
    print(f"largest difference in a test probability: {gap:.1e}")

# %%
# Lazy prediction
# ---------------
# On Dask input the prediction methods return lazy Dask arrays with one
# block per partition of the input; ``compute`` runs them on the workers.
# (The number of rows in a partition of a dataframe is unknown until it is
# read, hence the ``nan`` in the shape.) ``score`` also runs on the workers,
# block by block.
if __name__ == "__main__":
    proba = clf.predict_proba(df_test[features])
    print(f"{type(proba).__module__}.{type(proba).__name__}: shape {proba.shape}, "
          f"{proba.numblocks[0]} row blocks")
    predicted = clf.predict(df_test[features]).compute()
    print(f"test accuracy from the computed predictions: "
          f"{np.mean(predicted == y_test):.3f}")
    print(f"score on the workers: {clf.score(df_test[features], df_test['label']):.3f}")

# %%
# A filtered dataframe
# --------------------
# Filtering a Dask dataframe often leaves partitions short or without rows.
# Here the first 700 training rows, as a filter on a date would keep the
# oldest ones: the first files keep all their rows, a later one keeps some
# and the last none (the lengths printed below), and every partition's
# length is unknown until it is read. The fit is the in-memory fit on the
# same rows.
if __name__ == "__main__":
    early = df.loc[:699]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        filtered = DaskTwoLayerSoftmaxClassifier(**params).fit(early[features],
                                                               early["label"])
        filtered_local = TwoLayerSoftmaxClassifier(**params).fit(
            train[features][:700], train["label"][:700])
    lengths = early.map_partitions(len).compute().tolist()
    gap = np.abs(filtered.predict_proba(test[features])
                 - filtered_local.predict_proba(test[features])).max()
    print(f"rows per partition after the filter: {lengths}")
    print(f"largest difference from the in-memory fit: {gap:.1e}")

# %%
# Early stopping
# --------------
# With ``early_stopping=True`` each training row is held out with
# probability ``validation_fraction``, on the worker that holds it. The
# choice depends only on the row's position and ``random_state``, so the same
# rows are held out for any chunking; it is not the stratified split that an
# in-memory fit makes, and the number of held-out rows is
# ``validation_fraction`` of the rows only up to sampling noise.
if __name__ == "__main__":
    stopped = DaskTwoLayerSoftmaxClassifier(
        **params, early_stopping=True, validation_fraction=0.2,
    ).fit(X_dask, y_dask)
    print(f"stopped after {stopped.n_iter_} iterations, best validation "
          f"accuracy {stopped.best_validation_score_:.3f}")

# %%
# Loss curves
# -----------
# The training objective after each iteration of the data-parallel fit lies
# on that of the in-memory fit. On the right, the fit with early stopping:
# its training objective, and the mean log loss on the held-out rows.
if __name__ == "__main__":
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    left.plot(in_memory.loss_curve_, lw=4, alpha=0.4, label="in memory")
    left.plot(clf.loss_curve_, "k--", lw=1, label="data-parallel")
    left.set_title("The same fit")
    right.plot(stopped.loss_curve_, label="training objective")
    right.plot(stopped.validation_loss_curve_, label="held-out log loss")
    right.set_title("Early stopping")
    for ax in (left, right):
        ax.set_yscale("log")
        ax.set_xlabel("L-BFGS iteration")
        ax.legend()
    left.set_ylabel("loss")
    fig.tight_layout()
    plt.show()

# %%
# Deploying the model
# -------------------
# After the fit the weights are NumPy arrays. ``to_local`` returns a plain
# :class:`~sk_twolayer.TwoLayerSoftmaxClassifier` with the same weights,
# which needs no cluster, and which pickles, persists with skops and exports
# to ONNX like any in-memory model.
if __name__ == "__main__":
    local = clf.to_local()
    print(type(local).__name__,
          np.array_equal(local.predict(test[features]), clf.predict(test[features])))

# %%
# Always release the cluster's processes when done.
if __name__ == "__main__":
    client.close()
    cluster.close()
    shutil.rmtree(folder)
