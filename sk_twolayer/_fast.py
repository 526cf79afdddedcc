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

They are used only where numba is installed (the ``fast`` extra:
``python -m pip install ".[fast]"``), only on numpy, and only for a fit long enough to
repay numba's import and the loading of the compiled kernels, about a third
of a second in a new process (:func:`for_minibatches`); elsewhere the numpy
code runs. The two agree to rounding: the kernels reorder sums and may fuse
a multiply and an add (numba's ``fastmath`` flags ``reassoc`` and
``contract``, nothing that changes how infinities and NaNs propagate, so
that a diverging fit is still caught).

The kernels are compiled on first use and cached on disk (numba's
``cache=True``): the first fit after installing compiles them, about ten
seconds, and later processes load them.
"""

import os
import threading

import numpy as np

# Work, in parameter updates (parameters times minibatch steps), from which a
# fit takes the kernels: there they save more than numba's import and the
# loading of the cached kernels cost in a new process (see
# for_minibatches). Set from measurements on 2 cores (benchmarks/run.py's
# section (i) shape): see docs/user_guide/solvers.rst.
MIN_WORK = 2e7

# SK_TWOLAYER_FAST=0 switches the kernels off, whatever is installed.
ENV = "SK_TWOLAYER_FAST"

_lock = threading.Lock()
_kernels = None  # the module-level functions below, once compiled
_missing = False


def available():
    """Whether numba can be imported (without importing it)."""
    from importlib.util import find_spec

    return find_spec("numba") is not None


def load():
    """The kernels (this module's compiled functions), or None without numba."""
    global _kernels, _missing
    if _kernels is not None or _missing:
        return _kernels
    with _lock:
        if _kernels is None and not _missing:
            try:
                _kernels = _compile()
            except ImportError:
                _missing = True
    return _kernels


def for_minibatches(ops, theta, n_steps):
    """The kernels for a minibatch fit of ``n_steps`` steps, or None.

    None off numpy, for a dtype other than float32 and float64, without
    numba, with ``SK_TWOLAYER_FAST=0``, and for a fit of less than
    :data:`MIN_WORK` parameter updates. The decision depends on nothing
    else (not on whether numba is already loaded), so that a fit gives the
    same result in a new process and in an old one.
    """
    if os.environ.get(ENV, "1").strip() in ("0", "false", "no", "off"):
        return None
    if not ops.is_numpy or theta.dtype not in (np.float32, np.float64):
        return None
    if theta.shape[0] * float(n_steps) < MIN_WORK:
        return None
    return load()


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
