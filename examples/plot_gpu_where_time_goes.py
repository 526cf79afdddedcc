"""
Training on a GPU, and where the time goes
==========================================

With scikit-learn's Array API dispatch switched on,
:class:`~sk_twolayer.TwoLayerSoftmaxClassifier` trains on PyTorch tensors
where they live: on a GPU when there is one. This example fits the same
model on the same data with each solver, on the best device present (a CUDA
GPU, else Apple's MPS, else the CPU), and uses PyTorch's profiler to show
what each fit spends its time on:

* **matrix products**, the work the model cannot avoid (``addmm``, ``mm``);
* **other kernels**: the softmax, the ReLU and its derivative, the
  reductions, the gathers of minibatch rows and the parameter updates;
* **everything else**, which is time outside PyTorch's kernels: our Python
  code, scipy's L-BFGS-B on the host, and, on a GPU, the device waiting for
  the host to launch its next kernel.

A large share of "everything else" says a fit is bound by the host, not by
the device. That is what to expect from small minibatches on a GPU, and
why larger batches and the full-batch L-BFGS use a GPU better.

PyTorch is optional, and not part of the ``docs`` extra (a plain ``torch``
requirement would pull its multi-GB CUDA build). Where it is not installed,
this example still times the fits on numpy, and says in its output that the
device fits, the profile and the chart were left out: nothing below is ever
a figure measured on another machine or an earlier build. Install PyTorch
and run the example to see them.
"""

# %%
# Data on the device
# ------------------
# scipy's own Array API support must be on before scipy is first imported,
# as scikit-learn requires for dispatch; in a script, set the variable in
# the shell or at the very top, as here.
import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import sklearn
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier

try:
    import torch
    from torch.profiler import ProfilerActivity, profile
except ImportError:  # PyTorch is optional: then the fits run on numpy only
    torch = None

if torch is None:
    device = None
elif torch.cuda.is_available():
    device = torch.device("cuda")
elif torch.backends.mps.is_available():
    device = torch.device("mps")
else:
    device = torch.device("cpu")
on_gpu = device is not None and device.type == "cuda"
n_samples = 200_000 if on_gpu else 20_000

X, y = make_classification(n_samples=n_samples, n_features=256, n_informative=64,
                           n_classes=10, random_state=0)
X = StandardScaler().fit_transform(X).astype(np.float32)
if device is None:
    print("PyTorch is not installed where this ran: the fits below run on "
          "numpy only; the device fits, their profile and the chart are left "
          "out.")
else:
    X_device = torch.asarray(X, device=device)
    y_device = torch.asarray(y, device=device)
    print(f"device: {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if on_gpu else ""))
print(f"{n_samples} samples, 256 features, 10 classes, float32")


def sync():
    """Wait for the device to finish, so that timings include its work."""
    if device is None:
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# %%
# Timed and profiled fits
# -----------------------
# Each fit runs once to warm up (kernel selection, memory pools), once timed,
# and once under the profiler, which records every PyTorch operation with
# its own time ("self" time: without the operations it calls); on a GPU, the
# time of its kernels on the device (on Apple's MPS it sees only the host's
# side). Recording costs a little time per operation, so the shares come
# from the profiled fit and the times from the timed one. Without PyTorch,
# only the same fits on numpy are timed.
fits = {
    "L-BFGS, 20 iterations": dict(solver="lbfgs", max_iter=20),
    "SGD, 2 epochs, batch 200": dict(solver="sgd", batch_size=200, max_iter=2),
    "SGD, 2 epochs, batch 2048": dict(solver="sgd", batch_size=2048, max_iter=2),
}
PRODUCTS = {"aten::mm", "aten::addmm", "aten::mv", "aten::dot", "aten::matmul"}


def fit(params, X, y):
    clf = TwoLayerSoftmaxClassifier(hidden_size=256, tol=0.0, random_state=0,
                                    n_iter_no_change=np.inf, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


def timed(func):
    sync()
    start = time.perf_counter()
    func()
    sync()
    return time.perf_counter() - start


def profiled_fit(params):
    """The device fit's time, and the shares of its time (products, other
    kernels, everything else) under PyTorch's profiler."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu
                                           else [])
    with sklearn.config_context(array_api_dispatch=True):
        fit(params, X_device[:2000], y_device[:2000])  # warm up
        wall = timed(lambda: fit(params, X_device, y_device))
        with profile(activities=activities) as prof:
            profiled = timed(lambda: fit(params, X_device, y_device))
    products = other = 0.0
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        # Microseconds on the device (GPU) or in the operation itself (CPU).
        spent = (event.self_device_time_total if on_gpu
                 else event.self_cpu_time_total) * 1e-6
        if event.key in PRODUCTS:
            products += spent
        else:
            other += spent
    shares = np.array([products, other, max(profiled - products - other, 0.0)])
    return wall, shares / profiled


results = {}
for name, params in fits.items():
    results[name] = {}
    if device is not None:
        results[name]["wall"], results[name]["shares"] = profiled_fit(params)
    # The same fit on numpy.
    results[name]["numpy"] = timed(lambda: fit(params, X, y))

if device is None:
    print(f"{'fit':<27} {'numpy s':>8}")
    for name, r in results.items():
        print(f"{name:<27} {r['numpy']:8.2f}")
else:
    print(f"{'fit':<27} {'device s':>9} {'numpy s':>8}  products  other kernels  "
          "everything else")
    for name, r in results.items():
        products, other, rest = r["shares"]
        print(f"{name:<27} {r['wall']:9.2f} {r['numpy']:8.2f}  {products:8.0%}  "
              f"{other:13.0%}  {rest:15.0%}")

# %%
# "device s" is the fit on ``device``, "numpy s" the same fit with numpy
# arrays on this machine's CPUs (with one BLAS thread while the
# documentation builds, where PyTorch keeps its own threads).
#
# Where the time goes, as shares of each fit's time (drawn only where
# PyTorch is installed: the profile is PyTorch's):
if device is None:
    print("No chart: PyTorch is not installed where this ran, so no fit was "
          "profiled.")
else:
    labels = list(results)
    shares = np.array([r["shares"] for r in results.values()])
    fig, ax = plt.subplots(figsize=(7, 3))
    left = np.zeros(len(labels))
    for column, (part, color) in enumerate(zip(
            ["matrix products", "other kernels", "everything else"],
            ["tab:blue", "tab:orange", "tab:gray"])):
        ax.barh(labels, shares[:, column], left=left, color=color, label=part)
        left += shares[:, column]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the fit's time")
    ax.set_title(f"Where the time goes on {device.type}")
    ax.invert_yaxis()
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.12), ncol=3,
              frameon=False)
    fig.tight_layout()
    plt.show()

# %%
# Reading the chart
# -----------------
# * **L-BFGS** evaluates the loss on the full batch: a few large matrix
#   products per evaluation take the largest share, and large products are
#   what a GPU does best. Between evaluations scipy works on the host on one
#   vector of parameters, which the estimator moves to the device and back,
#   once each way.
# * **SGD** does the same products on a minibatch at a time, and each step
#   also runs the softmax, the ReLU's derivative, the gathers and the
#   update: kernels whose work grows with the batch more slowly than the
#   products do, or not at all. So the products' share grows with the batch
#   size; compare the two SGD rows.
# * On a GPU, the kernels of a batch-200 step are so short that launching
#   them costs about as much as running them: there the share outside the
#   kernels is the one to watch, and a larger batch is the cure.
#
# The GPU benchmark (``python benchmarks/run.py --only device --device
# cuda``) measures the same fits at a million samples against a plain
# PyTorch loop; see :doc:`/user_guide/accelerators`.
