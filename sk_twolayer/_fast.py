"""Fused kernels of the minibatch step, compiled with numba (the ``fast`` extra).

A minibatch step at batch 200 spends most of its time outside its two large
matrix products in passes over memory: numpy's update rules make one pass
per operation over the parameters (Adam about fourteen, with the penalty),
and the small products, the softmax and the activation between the two
large products are a dozen numpy and BLAS calls on arrays of a few hundred
kilobytes. The kernels here do the same arithmetic in one pass each:

- :func:`head`: everything between ``A = Xb @ W1`` and ``gW1 = Xb.T @ dA``
  for the ReLU network (bias, ReLU, scores, log loss, softmax gradient,
  ``gW2``, ``gb2``, ``gb1`` and ``dA``, written over ``A``), row by row
  while the row is in the first-level cache;
- :func:`sgd` and :func:`adam`: the update rules with the penalty folded in
  as weight decay, reading the parameters, the gradient and the optimizer's
  state once and writing them once, and returning the penalty at the new
  parameters, which the next minibatch's loss needs.

They are used only where the user asks for them (``SK_TWOLAYER_FAST=1``,
with numba installed: the ``fast`` extra, ``python -m pip install
".[fast]"``), only on numpy, and only for a fit long enough to repay numba's
import and the loading of the compiled kernels, about a third of a second
in a new process (:func:`for_minibatches`); elsewhere the numpy code runs.
They are opt-in because numba arrives with other packages too (dask-ml, of
the ``dask`` extra): installing one must not change a fit's path, its time
(the first fit compiles the kernels) or its rounding.
The two agree to rounding: the kernels reorder sums and may fuse a multiply
and an add (numba's ``fastmath`` flags ``reassoc`` and ``contract``, nothing
that changes how infinities and NaNs propagate, so that a diverging fit is
still caught).

The kernels are compiled on first use and cached on disk (numba's
``cache=True``): the first fit after installing compiles them (about a
second per dtype on the 2-core machines we measure on, its check
included), and later processes load them (about a third of a second). Before a process first uses them
for a dtype, they run a tiny fit of each minibatch solver against the numpy
code (:func:`load`): a kernel that cannot be compiled, cached or loaded, or
that computes something else, is never used, and the fit runs on numpy,
with one warning that says why and what to do (a read-only package folder
and no writable home: set ``NUMBA_CACHE_DIR``).
"""

import os
import threading

import numpy as np

from ._warnings import warn

# Work, in parameter updates (parameters times minibatch steps), from which a
# fit takes the kernels: there they save more than numba's import and the
# loading of the cached kernels cost in a new process (see
# for_minibatches). Set from measurements on 2 cores (benchmarks/run.py's
# section (i) shape): see docs/user_guide/solvers.rst.
MIN_WORK = 2e7

# SK_TWOLAYER_FAST=1 switches the kernels on (numba installed); anything
# else, or nothing, leaves them off.
ENV = "SK_TWOLAYER_FAST"
_ON = ("1", "on", "true", "yes")

_lock = threading.Lock()
_compiled = None  # the module-level functions below, once compiled
_loaded = {}  # dtype -> the kernels, checked for it, or None (not usable)
_why_not = {}  # dtype -> why they are not usable (an exception's text)


def requested():
    """Whether the environment asks for the kernels (``SK_TWOLAYER_FAST=1``)."""
    return os.environ.get(ENV, "").strip().lower() in _ON


def available():
    """Whether numba can be imported (without importing it)."""
    from importlib.util import find_spec

    return find_spec("numba") is not None


def load(dtype=np.float64):
    """The kernels, checked for ``dtype``; None where they cannot be used.

    The first call for a dtype compiles them (or loads numba's cache) and
    runs a tiny fit of each minibatch solver with them and without them:
    they are used only where the two agree to rounding. A failure of any
    kind (numba missing, a compilation or caching error, a disagreement)
    gives None from then on in this process, and, unless numba is merely
    missing, one warning that says why and what to do.
    """
    global _compiled
    dtype = np.dtype(dtype)
    if dtype in _loaded:
        return _loaded[dtype]
    with _lock:
        if dtype not in _loaded:
            try:
                if _compiled is None:
                    _compiled = _compile()
                _self_check(_compiled, dtype)
                _loaded[dtype] = _compiled
            except ImportError as error:
                _loaded[dtype], _why_not[dtype] = None, f"numba is missing ({error})"
            except Exception as error:  # never in place of the fit
                _loaded[dtype], _why_not[dtype] = None, f"{type(error).__name__}: {error}"
                warn(
                    f"The compiled kernels (SK_TWOLAYER_FAST=1) cannot run "
                    f"in {dtype} here, and the fit runs on NumPy, as without "
                    f"them: {_why_not[dtype]}. Where numba cannot write its "
                    "cache (a read-only installation, no writable home), set "
                    "NUMBA_CACHE_DIR to a writable folder; otherwise unset "
                    f"{ENV} to stop trying.",
                    UserWarning,
                )
    return _loaded[dtype]


def status():
    """What a bug report says of the kernels: asked for or not, and, per
    dtype tried in this process, in use or why not."""
    if not requested():
        return f"off (set {ENV}=1 to use them)"
    if not available():
        return f"asked for ({ENV}=1), but numba is not installed"
    tried = ", ".join(f"{d}: {'in use' if k is not None else _why_not.get(d)}"
                      for d, k in sorted(_loaded.items(), key=str))
    return f"on ({ENV}=1); " + (tried or "not yet used in this process")


def for_minibatches(ops, theta, n_steps):
    """The kernels for a minibatch fit of ``n_steps`` steps, or None.

    None unless asked for (``SK_TWOLAYER_FAST=1``), off numpy, for a dtype
    other than float32 and float64, without numba, where they failed their
    check (:func:`load`), and for a fit of less than :data:`MIN_WORK`
    parameter updates. The decision depends on nothing else (not on
    whether numba is already loaded), so that a fit gives the same result
    in a new process and in an old one.
    """
    if not requested():
        return None
    if not ops.is_numpy or theta.dtype not in (np.float32, np.float64):
        return None
    if theta.shape[0] * float(n_steps) < MIN_WORK:
        return None
    return load(theta.dtype)


def _self_check(kernels, dtype):
    """A tiny fit of each minibatch solver (a few steps, with sample
    weights), with the kernels and without: the same weights to rounding,
    or a ``RuntimeError``. It runs every kernel through the code a fit runs
    (the same array types, so the compilations a fit needs happen here)."""
    from . import _solvers
    from ._loss import TwoLayerLoss
    from ._params import ParamLayout

    rng = np.random.RandomState(0)
    layout = ParamLayout(5, 7, 3, dtype)
    X = rng.normal(size=(24, 5)).astype(dtype)
    y = rng.randint(0, 3, size=24)
    sample_weight = rng.uniform(0.5, 2.0, size=24).astype(dtype)
    tolerance = 1e-4 if dtype == np.float32 else 1e-9
    for optimizer in (lambda: _solvers.SGD(0.1, 0.9, True),
                      lambda: _solvers.Adam(0.01, 0.9, 0.999, 1e-8)):
        thetas = []
        for use in (kernels, None):
            loss = TwoLayerLoss(layout, reg=1e-3)
            theta = layout.init(np.random.RandomState(1))
            _solvers.stochastic(
                loss.data_loss_gradient, theta, X, y, sample_weight,
                optimizer=optimizer(), batch_size=8, max_iter=2,
                rng=np.random.RandomState(2), penalty=loss.penalty,
                stopper=_solvers.Stopper(0.0, 3), warn_on_max_iter=False,
                kernels=use)
            thetas.append(theta)
        if not np.allclose(thetas[0], thetas[1], rtol=tolerance, atol=tolerance):
            raise RuntimeError(
                "the compiled kernels disagree with the NumPy code (largest "
                f"difference {np.max(np.abs(thetas[0] - thetas[1])):.3g})")


class _Kernels:
    """The compiled functions, as attributes."""

    def __init__(self, **functions):
        self.__dict__.update(functions)


def _compile():
    import numba

    # Reassociation lets the sums vectorize, contraction fuses a multiply
    # and an add; NaN and infinity keep their meaning.
    flags = {"reassoc", "contract", "nsz"}
    jit = numba.njit(cache=True, nogil=True, fastmath=flags, error_model="numpy")

    @jit
    def sgd(theta, v, g, size, two_reg, lr, mu, nesterov):
        """SGD with momentum over ``theta``, ``v`` in place; the gradient of
        the penalty ``two_reg * theta`` joins ``g`` on ``[:size]``. Returns
        ``||theta[:size]||^2`` at the new theta (float64)."""
        total = 0.0
        n = theta.shape[0]
        for i in range(size):
            gi = g[i] + two_reg * theta[i]
            vi = mu * v[i] - lr * gi
            v[i] = vi
            t = theta[i] + (mu * vi - lr * gi if nesterov else vi)
            theta[i] = t
            total += t * t
        for i in range(size, n):
            gi = g[i]
            vi = mu * v[i] - lr * gi
            v[i] = vi
            theta[i] = theta[i] + (mu * vi - lr * gi if nesterov else vi)
        return total

    @jit
    def adam(theta, m, v, g, size, two_reg, b1, b2, one_b1, one_b2, eps, minus_lr):
        """Adam over ``theta``, ``m``, ``v`` in place, ``minus_lr`` the
        bias-corrected step size negated; the penalty as in :func:`sgd`.
        Returns ``||theta[:size]||^2`` at the new theta (float64)."""
        total = 0.0
        n = theta.shape[0]
        for i in range(size):
            gi = g[i] + two_reg * theta[i]
            mi = b1 * m[i] + one_b1 * gi
            vi = b2 * v[i] + one_b2 * (gi * gi)
            m[i] = mi
            v[i] = vi
            t = theta[i] + minus_lr * (mi / (np.sqrt(vi) + eps))
            theta[i] = t
            total += t * t
        for i in range(size, n):
            gi = g[i]
            mi = b1 * m[i] + one_b1 * gi
            vi = b2 * v[i] + one_b2 * (gi * gi)
            m[i] = mi
            v[i] = vi
            theta[i] = theta[i] + minus_lr * (mi / (np.sqrt(vi) + eps))
        return total

    @jit
    def head(A, b1, W2, b2, y, sw, scale, W2T, gW2T, h, s, gW2, gb1, gb2,
             accumulate):
        """The ReLU network between its two large products, row by row.

        ``A`` (n, H) holds ``Xb @ W1`` and is overwritten with dL/dA, the
        factor of the second large product. ``scale`` is 1 / the sum of the
        weights; ``sw`` the rows' weights (an empty array: all 1). The
        gradients of ``W2`` (H, C), ``b1`` and ``b2`` are written into
        ``gW2``, ``gb1``, ``gb2`` (added to them when ``accumulate``).
        ``W2T``, ``gW2T`` (C, H), ``h`` (H) and ``s`` (C) are scratch.
        Returns the weighted sum of the rows' log losses (float64).
        """
        n, H = A.shape
        C = W2.shape[1]
        weighted = sw.shape[0] > 0
        for c in range(C):
            for k in range(H):
                W2T[c, k] = W2[k, c]
                gW2T[c, k] = 0.0
        if not accumulate:
            for k in range(H):
                gb1[k] = 0.0
            for c in range(C):
                gb2[c] = 0.0
        loss = 0.0
        for i in range(n):
            a = A[i]
            for k in range(H):
                hk = a[k] + b1[k]
                h[k] = 0.0 if hk <= 0 else hk  # NaN stays NaN
            # scores, shifted by their maximum
            top = -np.inf
            for c in range(C):
                t = b2[c]
                w = W2T[c]
                for k in range(H):
                    t += h[k] * w[k]
                s[c] = t
                top = max(top, t)
            yi = y[i]
            true = s[yi] - top
            total = 0.0
            for c in range(C):
                e = np.exp(s[c] - top)
                s[c] = e
                total += e
            wi = sw[i] if weighted else 1.0
            # log sum exp - (s_y - max); total is in [1, C]
            loss += wi * (np.log(total) - true)
            # dL/ds = w (softmax - onehot) / sum(w)
            f = wi * scale
            for c in range(C):
                s[c] = s[c] * (f / total)
            s[yi] -= f
            # dL/dA = (dL/ds W2^T) * 1(h > 0), over A's row
            for k in range(H):
                a[k] = 0.0
            for c in range(C):
                dc = s[c]
                gb2[c] += dc
                w = W2T[c]
                gw = gW2T[c]
                for k in range(H):
                    a[k] += dc * w[k]
                    gw[k] += dc * h[k]
            for k in range(H):
                d = a[k] if h[k] > 0 else 0.0
                a[k] = d
                gb1[k] += d
        for k in range(H):
            for c in range(C):
                if accumulate:
                    gW2[k, c] += gW2T[c, k]
                else:
                    gW2[k, c] = gW2T[c, k]
        return loss

    return _Kernels(sgd=sgd, adam=adam, head=head)
