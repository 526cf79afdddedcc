"""Optimizers for a loss given as ``fun(theta, X, y, sample_weight) -> (loss, grad)``.

The solvers know a loss-and-gradient function on a flat parameter vector and
nothing else: not the network, not the estimator. Two drivers share one
interface for progress and stopping:

- :func:`lbfgs` hands the function to :func:`scipy.optimize.minimize`
  (L-BFGS-B) on the full batch;
- :func:`stochastic` runs epochs of minibatch updates with one of the small
  update rules :class:`SGD` (momentum, Nesterov) or :class:`Adam`.

Both call ``callback(iteration, loss, theta)`` once per iteration (L-BFGS)
or epoch (stochastic); a true return value stops training. Both keep the
best weights seen so far, which is what they return when a
:class:`KeyboardInterrupt` or early stopping ends training.
"""

import contextlib
import inspect
import os

import numpy as np
import scipy
import scipy.sparse as sp
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import ThreadpoolController

from . import _fast
from ._namespace import NUMPY, array_api_compat, ops_for
from ._warnings import warn


class DivergenceError(ValueError):
    """Training produced a non-finite loss or non-finite weights."""


def _copy(array):
    """A copy of an array of any namespace (None stays None)."""
    if array is None or isinstance(array, np.ndarray):
        return None if array is None else array.copy()
    # The array's own namespace, whatever scikit-learn's dispatch setting.
    return array_api_compat().array_namespace(array).asarray(array, copy=True)


def _diverging(loss, dtype):
    """Whether a loss is non-finite or too large to be anything but divergence.

    A loss above the square root of the dtype's largest number (about 1e154
    in float64, 2e19 in float32) means scores of that size, whose products
    in the next gradient overflow: the run is lost even while the loss is
    still finite.
    """
    return not abs(loss) <= np.sqrt(np.finfo(dtype).max)


def _diverged(where, hint):
    return DivergenceError(
        f"Training diverged: the loss became non-finite or too large {where}. "
        f"No weights were kept from this fit. {hint}"
    )


# --------------------------------------------------------------- update rules
class _UpdateRule:
    """What SGD and Adam share: the schedule and a plain-data state.

    A subclass names its constructor arguments in ``_hyper`` and the
    attributes that training changes in ``_trained``.
    """

    name = None
    _hyper = _trained = ()

    def end_epoch(self, samples_seen):
        """Apply the ``invscaling`` schedule, ``samples_seen`` being ``t``."""
        if self.schedule == "invscaling":
            self.learning_rate = (
                self.learning_rate_init / (samples_seen + 1) ** self.power_t
            )

    def state_dict(self):
        """The optimizer as a dict of numbers, strings and arrays (copies).

        Fitted models keep this form rather than the object, so that
        :mod:`skops.io` loads them without trusting a private type.
        """
        state = {name: getattr(self, name) for name in self._hyper + self._trained}
        state = {key: _copy(value) if hasattr(value, "shape") else value
                 for key, value in state.items()}
        return {"solver": self.name, **state}

    def penalty_value(self, penalty):
        """``penalty.value(theta)``: the value that the last step's compiled
        kernel computed for this penalty, or a new evaluation."""
        kept = self._penalty_at
        if kept is not None and kept[0] is penalty:
            return kept[1]
        return penalty.value(self.theta, self._ops)

    @staticmethod
    def _penalty_args(penalty, dtype):
        """``(reg, size, 2 * reg)`` of a penalty (``size`` 0 without one)."""
        reg = 0.0 if penalty is None else penalty.reg
        return reg, penalty.size if reg else 0, dtype.type(2 * reg)

    @classmethod
    def from_state(cls, state):
        """The optimizer that :meth:`state_dict` described (arrays copied)."""
        optimizer = cls(**{name: state[name] for name in cls._hyper})
        for name in cls._trained:
            value = state[name]
            setattr(optimizer, name, _copy(value) if hasattr(value, "shape") else value)
        return optimizer


class SGD(_UpdateRule):
    """Minibatch SGD with (Nesterov) momentum and a learning-rate schedule.

    With velocity ``v`` and gradient ``g`` the update is
    ``v <- momentum * v - lr * g`` and then ``theta <- theta + v``
    (classical) or ``theta <- theta + momentum * v - lr * g`` (Nesterov, in
    the reformulation of Sutskever et al., 2013). An L2 penalty
    ``reg * ||theta_p||^2`` enters as its gradient ``2 * reg * theta_p``,
    which is exactly weight decay.

    Both new vectors are linear in ``(theta, v, g)``, so the optimizer keeps
    the three as the rows of one ``(3, n_params)`` array and writes the next
    ``(theta, v)`` with a single ``(2, 3) @ (3, n_params)`` matrix product
    into a second such array, then swaps the two. That reads each vector
    once and writes each once, on BLAS's threads. The separate numpy passes
    it replaces (penalty, momentum, step: about ten over the parameters)
    took twice as long on MNIST-sized networks, where this update is the
    largest cost of an SGD step at batch 200 outside the matrix products.

    Use: :meth:`start` at a point, then per minibatch write the gradient of
    the data term into :attr:`grad` at :attr:`theta` and call :meth:`step`;
    :meth:`finish` keeps the velocity for a later :meth:`start` and frees
    the buffers.

    Parameters
    ----------
    learning_rate_init : float
    momentum : float
    nesterov : bool
    schedule : {"constant", "invscaling", "adaptive"}
        ``invscaling`` sets ``lr = learning_rate_init / (t + 1) ** power_t``
        at the end of each epoch, ``t`` being the number of samples seen;
        ``adaptive`` is driven by :class:`Stopper` (lr / 5 on a plateau).
    power_t : float
    """

    name = "sgd"
    # The velocity is None before the first start.
    _hyper = ("learning_rate_init", "momentum", "nesterov", "schedule", "power_t")
    _trained = ("learning_rate", "_velocity")

    def __init__(self, learning_rate_init=0.01, momentum=0.9, nesterov=True,
                 schedule="constant", power_t=0.5):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate_init
        self.momentum = momentum
        self.nesterov = nesterov
        self.schedule = schedule
        self.power_t = power_t
        self._velocity = None
        self._state = self._spare = self._ops = self._kernels = None
        self._coefs, self._coefs_lr = {}, None
        self._penalty_at = None

    def start(self, theta, ops=NUMPY, kernels=None):
        """Begin at ``theta`` (copied), with the velocity kept from before.

        Off numpy (``ops``), ``(theta, v)`` are two arrays on the device,
        replaced by new ones at each step. With ``kernels`` (see
        :func:`sk_twolayer._fast.for_minibatches`) each step is one compiled
        pass over ``(theta, v, g)`` in place.
        """
        self._ops, self._kernels, self._penalty_at = ops, kernels, None
        self._coefs, self._coefs_lr = {}, None  # their dtype is theta's
        if not ops.is_numpy:
            # The kept velocity is this optimizer's own (from_state copies).
            velocity = self._velocity
            self._pair = (_copy(theta), ops.xp.zeros_like(theta)
                          if velocity is None else velocity)
            return
        self._state = np.empty((3, theta.size), dtype=theta.dtype)
        # The matrix product writes the next (theta, v) into a second array.
        self._spare = None if kernels else np.empty_like(self._state)
        self._state[0] = theta
        self._state[1] = 0 if self._velocity is None else self._velocity

    @property
    def theta(self):
        """The current parameters."""
        return self._state[0] if self._ops.is_numpy else self._pair[0]

    @property
    def grad(self):
        """Where the gradient at :attr:`theta` is to be written before :meth:`step`.

        None off numpy: the gradient is passed to :meth:`step` instead.
        """
        return self._state[2] if self._ops.is_numpy else None

    def _coefficients(self, reg):
        """Rows giving ``(theta', v')`` as combinations of ``(theta, v, g)``.

        Cached per penalty strength (the penalized prefix and the rest of
        the vector) for the current learning rate.
        """
        lr, mu = self.learning_rate, self.momentum
        if self._coefs_lr != lr:
            self._coefs, self._coefs_lr = {}, lr
        coefs = self._coefs.get(reg)
        if coefs is None:
            decay = 2 * lr * reg  # lr times the penalty's gradient factor
            velocity = [-decay, mu, -lr]
            if self.nesterov:
                # theta + mu * v' - lr * (g + 2 reg theta)
                new_theta = [1 - decay * (1 + mu), mu * mu, -lr * (1 + mu)]
            else:  # theta + v'
                new_theta = [1 - decay, mu, -lr]
            coefs = self._coefs[reg] = np.array([new_theta, velocity],
                                                dtype=self._state.dtype)
        return coefs

    def step(self, penalty=None, grad=None):
        """One update from the gradient in :attr:`grad` (or ``grad``).

        ``penalty`` (an L2 penalty with ``reg`` on the first ``size``
        entries) is added to that gradient as weight decay.
        """
        if not self._ops.is_numpy:
            # On a device: the same update, in place on (theta, v), which are
            # this optimizer's own copies; the penalty joins the gradient.
            ops, (theta, velocity) = self._ops, self._pair
            if penalty is not None and penalty.reg:
                penalty.add_gradient(theta, grad, ops)
            lr, mu = float(self.learning_rate), float(self.momentum)
            velocity *= mu
            ops.add_scaled(velocity, -lr, grad)  # v' = mu v - lr g
            if self.nesterov:
                ops.add_scaled(theta, mu, velocity)
                ops.add_scaled(theta, -lr, grad)  # theta + mu v' - lr g
            else:
                theta += velocity
            return
        state, spare = self._state, self._spare
        if self._kernels is not None:
            reg, size, two_reg = self._penalty_args(penalty, state.dtype)
            kind = state.dtype.type
            total = self._kernels.sgd(state[0], state[1], state[2], size, two_reg,
                                      kind(self.learning_rate), kind(self.momentum),
                                      bool(self.nesterov))
            self._penalty_at = (penalty, reg * total)
            return
        n = state.shape[1]
        split = n if penalty is None or not penalty.reg else penalty.size
        if split:
            np.matmul(self._coefficients(0.0 if penalty is None else penalty.reg),
                      state[:, :split], out=spare[:2, :split])
        if split < n:
            np.matmul(self._coefficients(0.0), state[:, split:],
                      out=spare[:2, split:])
        self._state, self._spare = spare, state

    def finish(self):
        """Keep the velocity for the next :meth:`start`; free the buffers."""
        if self._ops.is_numpy:
            self._velocity = self._state[1].copy()
        else:
            self._velocity = self._pair[1]
        self._state = self._spare = self._pair = self._ops = None
        self._kernels = self._penalty_at = None


class Adam(_UpdateRule):
    """Adam (Kingma and Ba, 2015) with bias-corrected step size.

    The same interface as :class:`SGD`. An L2 penalty is added to the
    gradient before the moments are updated (Adam with L2, not AdamW).

    On numpy the update runs in chunks (see :meth:`NumpyOps.chunked`); per
    chunk it is the same sequence of numpy operations as a whole-array
    update, so the result is the same to the last bit. The same pass returns the penalty at the new
    ``theta``, which the next minibatch's loss needs (:meth:`penalty_value`).

    Parameters
    ----------
    learning_rate_init : float
    beta_1, beta_2 : float
        Decay rates of the first and second moment estimates.
    epsilon : float
        Added to the root of the second moment for stability.
    schedule, power_t :
        As for :class:`SGD`; the schedule scales the base step size.
    """

    name = "adam"
    _hyper = ("learning_rate_init", "beta_1", "beta_2", "epsilon", "schedule",
              "power_t")
    _trained = ("learning_rate", "n_steps", "_m", "_v")

    def __init__(self, learning_rate_init=0.001, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, schedule="constant", power_t=0.5):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate_init
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.schedule = schedule
        self.power_t = power_t
        self.n_steps = 0
        self._m = self._v = None
        self.theta = self.grad = self._ops = self._kernels = None
        self._penalty_at = None

    def start(self, theta, ops=NUMPY, kernels=None):
        self._ops, self._kernels = ops, kernels
        self.theta = _copy(theta)
        self.grad = np.empty_like(theta) if ops.is_numpy else None
        # The moments are updated in place; kept ones are this optimizer's
        # own (from_state copies), so a failed call changes no model.
        if self._m is None:
            self._m = ops.xp.zeros_like(theta)
            self._v = ops.xp.zeros_like(theta)
        self._penalty_at = None

    def step(self, penalty=None, grad=None):
        self.n_steps += 1
        b1, b2 = self.beta_1, self.beta_2
        lr = (self.learning_rate * np.sqrt(1 - b2 ** self.n_steps)
              / (1 - b1 ** self.n_steps))
        if not self._ops.is_numpy:
            self._device_step(penalty, grad, float(lr))
            return
        theta, m, v, g = self.theta, self._m, self._v, self.grad
        if self._kernels is not None:
            reg, size, two_reg = self._penalty_args(penalty, theta.dtype)
            kind = theta.dtype.type
            total = self._kernels.adam(
                theta, m, v, g, size, two_reg, kind(b1), kind(b2), kind(1 - b1),
                kind(1 - b2), kind(self.epsilon), kind(-float(lr)))
            self._penalty_at = (penalty, reg * total)
            return
        reg = 0.0 if penalty is None else penalty.reg
        size = penalty.size if reg else 0
        kind = theta.dtype.type
        # Each factor rounded to theta's dtype once, as numpy rounds a
        # Python float that meets an array of that dtype.
        two_reg, one_b1, one_b2 = kind(2 * reg), kind(1 - b1), kind(1 - b2)
        b1, b2 = kind(b1), kind(b2)
        eps, minus_lr = kind(self.epsilon), kind(-float(lr))

        def update(lo, hi, tmp):
            th, mc, vc, gc = theta[lo:hi], m[lo:hi], v[lo:hi], g[lo:hi]
            if lo < size:  # g + 2 reg theta
                np.multiply(th, two_reg, out=tmp)
                gc += tmp
            # m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2 (g overwritten)
            mc *= b1
            np.multiply(gc, one_b1, out=tmp)
            mc += tmp
            np.multiply(gc, gc, out=gc)
            gc *= one_b2
            vc *= b2
            vc += gc
            # theta <- theta - lr m / (sqrt(v) + eps)
            np.sqrt(vc, out=tmp)
            tmp += eps
            np.divide(mc, tmp, out=tmp)
            tmp *= minus_lr
            th += tmp
            # the penalty at the new theta, while the chunk is in cache
            return float(np.einsum("i,i", th, th)) if lo < size else None

        # (On one thread: on two, the fits ran slower, 5 epochs at
        # N=20,000, H=256 on 2 cores: float32 2.42 s on one thread against
        # 2.54-2.66 s on two; float64 4.21-4.33 s against 4.30-4.42 s,
        # though the update alone runs faster on two. See _namespace.)
        self._penalty_at = (penalty, reg * self._ops.chunked(
            update, theta.shape[0], theta.dtype, 1, breaks=(size,)))

    def _device_step(self, penalty, grad, lr):
        """The same update with whole-array operations, off numpy."""
        ops, b1, b2 = self._ops, self.beta_1, self.beta_2
        if penalty is not None:
            penalty.add_gradient(self.theta, grad, ops)
        m, v = self._m, self._v
        m *= b1
        ops.add_scaled(m, 1 - b1, grad)
        grad = grad * grad
        grad *= 1 - b2
        v *= b2
        v += grad
        step = ops.sqrt(v)
        step += self.epsilon
        step = m / step
        step *= -lr
        self.theta += step

    def finish(self):
        """Keep the moments for the next :meth:`start`; free the rest."""
        self.theta = self.grad = self._ops = self._penalty_at = None
        self._kernels = None


def optimizer_from_state(state):
    """Rebuild an :class:`SGD` or :class:`Adam` from its ``state_dict()``."""
    return {"sgd": SGD, "adam": Adam}[state["solver"]].from_state(state)


# ------------------------------------------------------------------- stopping
class Stopper:
    """Tracks the best value of a monitored quantity and when to stop.

    The quantity is the training loss (lower is better) or a validation score
    (higher is better). An iteration that fails to improve on the best by
    ``tol`` counts as no improvement; ``n_iter_no_change`` of them in a row
    end training, or, with the adaptive schedule, divide the learning rate by
    5 until it falls below 1e-6. The weights at the best value are kept.

    Parameters
    ----------
    tol : float
    n_iter_no_change : int
    higher_is_better : bool
    """

    def __init__(self, tol, n_iter_no_change, higher_is_better=False):
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.sign = 1.0 if higher_is_better else -1.0
        self.best = -np.inf
        self.best_theta = None
        self.no_improvement_count = 0

    @property
    def best_value(self):
        return self.sign * self.best

    def update(self, value, theta):
        """Record ``value`` at ``theta``; return True when training should stop."""
        signed = self.sign * value
        if signed < self.best + self.tol:
            self.no_improvement_count += 1
        else:
            self.no_improvement_count = 0
        if signed > self.best:
            self.best = signed
            if self.best_theta is None or not isinstance(theta, np.ndarray):
                self.best_theta = _copy(theta)
            else:
                self.best_theta[...] = theta
        return self.no_improvement_count > self.n_iter_no_change

    def state_dict(self):
        """The stopper as a dict of numbers and arrays (copies)."""
        return {
            "tol": self.tol,
            "n_iter_no_change": self.n_iter_no_change,
            "higher_is_better": self.sign > 0,
            "best": float(self.best),
            "best_theta": _copy(self.best_theta),
            "no_improvement_count": int(self.no_improvement_count),
        }

    @classmethod
    def from_state(cls, state):
        """The stopper that :meth:`state_dict` described (arrays copied)."""
        stopper = cls(state["tol"], state["n_iter_no_change"],
                      state["higher_is_better"])
        stopper.best = state["best"]
        best_theta = state["best_theta"]
        stopper.best_theta = _copy(best_theta)
        stopper.no_improvement_count = state["no_improvement_count"]
        return stopper

    def plateau_message(self, what):
        return (
            f"{what} did not improve more than tol={self.tol} for "
            f"{self.n_iter_no_change} consecutive iterations."
        )


class Result:
    """What a solver returns.

    Attributes
    ----------
    theta : ndarray
        Final weights (the best ones when early stopping or an interrupt
        ended training).
    loss_curve : list of float
        Training loss at each iteration or epoch.
    n_iter : int
    converged : bool
        Whether a stopping criterion, rather than the iteration budget, ended
        training.
    message : str
    interrupted : bool
        Whether a KeyboardInterrupt ended training.
    """

    def __init__(self, theta, loss_curve, n_iter, converged, message,
                 interrupted=False):
        self.theta = theta
        self.loss_curve = loss_curve
        self.n_iter = n_iter
        self.converged = converged
        self.message = message
        self.interrupted = interrupted


def _warn_interrupted(n_iter):
    warn(
        f"Training was interrupted by the user after {n_iter} iterations; the "
        "model keeps the best weights found so far.",
        UserWarning,
    )


# ---------------------------------------------------------------------- L-BFGS
@contextlib.contextmanager
def _single_threaded_scipy_blas():
    """Run scipy's own BLAS, where it has its own, on one thread.

    pip wheels of numpy and scipy each bundle an OpenBLAS with its own thread
    pool. L-BFGS-B's internals call scipy's for small vector operations, and
    the idle threads of that pool keep spinning while numpy's pool runs the
    loss's matrix products on the same cores: measured here, a 30-iteration
    fit took 10.6 s with both pools at 2 threads and 7.5 s with scipy's at 1.
    Where numpy and scipy share one BLAS (conda, system builds) nothing is
    changed, since the matrix products need its threads.
    """
    scipy_dir = os.path.dirname(os.path.realpath(scipy.__file__))
    vendored = (scipy_dir, scipy_dir + ".libs")
    controllers = [
        lib for lib in ThreadpoolController().lib_controllers
        if lib.user_api == "blas"
        and os.path.realpath(lib.filepath).startswith(vendored)
    ]
    previous = [lib.num_threads for lib in controllers]
    for lib in controllers:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(controllers, previous):
            lib.set_num_threads(n)


# Overflow in a diverging run is detected from the non-finite loss and
# reported as a DivergenceError, so numpy's own warnings are silenced here.
@np.errstate(over="ignore", invalid="ignore")
def lbfgs(fun, theta0, X, y, sample_weight=None, *, max_iter=200, max_fun=15000,
          tol=1e-4, callback=None, stopper=None, score=None):
    """Minimize ``fun`` over the full batch with scipy's L-BFGS-B.

    scipy keeps its iterate in float64; the function is evaluated in the
    dtype of ``theta0`` (float32 stays float32 over the data) and its
    gradient is handed back to scipy in float64.

    Parameters
    ----------
    fun : callable
        ``fun(theta, X, y, sample_weight) -> (loss, grad)``.
    theta0 : ndarray
        Starting point; its dtype is the working dtype.
    X, y, sample_weight :
        The data, passed through to ``fun``.
    max_iter, max_fun : int
        scipy's ``maxiter`` and ``maxfun``.
    tol : float
        scipy's ``gtol``: stop when every entry of the projected gradient is
        below it.
    callback : callable or None
        ``callback(iteration, loss, theta) -> stop``, once per iteration.
    stopper : Stopper or None
        With ``score``: early stopping on a validation score per iteration.
    score : callable or None
        ``score(theta) -> float``, higher is better.

    Returns
    -------
    Result
    """
    dtype = theta0.dtype
    work = np.empty_like(theta0)
    grad = np.empty_like(theta0)

    def fun64(x):
        np.copyto(work, x, casting="same_kind")
        loss, g = fun(work, X, y, sample_weight, grad=grad)
        if _diverging(loss, dtype):
            # Let L-BFGS-B's line search back off from a diverging point.
            return np.inf, np.zeros_like(x)
        return loss, g.astype(np.float64, copy=dtype != np.float64)

    loss_curve = []
    last = {"x": theta0.astype(np.float64), "stop_reason": None}

    def on_iteration(intermediate_result):
        x = intermediate_result.x
        loss = float(intermediate_result.fun)
        loss_curve.append(loss)
        last["x"] = x
        theta = x.astype(dtype, copy=True)
        stop = False
        if stopper is not None and score is not None:
            if stopper.update(score(theta), theta):
                last["stop_reason"] = stopper.plateau_message("Validation score")
                stop = True
        if callback is not None and callback(len(loss_curve), loss, theta):
            last["stop_reason"] = last["stop_reason"] or "Stopped by a callback."
            stop = True
        if stop:
            raise StopIteration

    interrupted = False
    try:
        with _single_threaded_scipy_blas():
            res = minimize(
                fun64,
                theta0.astype(np.float64),
                method="L-BFGS-B",
                jac=True,
                callback=on_iteration,
                options={"maxiter": max_iter, "maxfun": max_fun, "gtol": tol},
            )
    except KeyboardInterrupt:
        interrupted = True
        res = None
    n_iter = len(loss_curve)

    if interrupted:
        _warn_interrupted(n_iter)
        theta = last["x"].astype(dtype)
        if stopper is not None and stopper.best_theta is not None:
            theta = stopper.best_theta
        return Result(theta, loss_curve, n_iter, False, "interrupted", True)

    if _diverging(res.fun, dtype) or not np.all(np.isfinite(res.x)):
        raise _diverged(
            "in L-BFGS",
            "Scale the features (e.g. with StandardScaler) or increase reg.",
        )
    theta = res.x.astype(dtype)
    converged = res.status != 1
    message = last["stop_reason"] or str(res.message)
    if stopper is not None and score is not None and stopper.best_theta is not None:
        theta = stopper.best_theta
    if not converged:
        warn(
            f"L-BFGS did not converge: {res.message}. Increase max_iter "
            f"(currently {max_iter}) or max_fun (currently {max_fun}), or "
            "scale the features, e.g. with StandardScaler.",
            ConvergenceWarning,
        )
    return Result(theta, loss_curve, n_iter, converged, message)


# ------------------------------------------------------------------ stochastic
class BatchGatherer:
    """Copies the rows of a minibatch into a buffer kept across batches.

    Off numpy the rows are gathered on the device into a new array.
    """

    def __init__(self, X, ops=NUMPY):
        self.X = X
        self.ops = ops
        self._buf = None

    def __call__(self, idx):
        X = self.X
        if sp.issparse(X) or not self.ops.is_numpy:
            return self.ops.take_rows(X, idx)
        n = idx.shape[0]
        if self._buf is None or self._buf.shape[0] < n:
            self._buf = np.empty((n, X.shape[1]), dtype=X.dtype)
        return self.ops.take_rows(X, idx, out=self._buf[:n])


@np.errstate(over="ignore", invalid="ignore")
def stochastic(fun, theta, X, y, sample_weight=None, *, optimizer, batch_size,
               max_iter, rng, penalty=None, shuffle=True, stopper, score=None,
               callback=None, samples_seen=0, warn_on_max_iter=True,
               kernels="auto", verbose=False):
    """Run up to ``max_iter`` epochs of minibatch updates on ``theta`` in place.

    The objective is ``fun`` plus ``penalty``; the penalty goes to the update
    rule rather than into every minibatch gradient.

    Parameters
    ----------
    fun : callable
        ``fun(theta, X, y, sample_weight, grad=None) -> (loss, grad)``, the
        data term.
    theta : ndarray
        Updated in place (at the end of each epoch).
    X, y, sample_weight :
        The training data.
    optimizer : SGD or Adam
    batch_size : int
    max_iter : int
        Number of epochs.
    rng : numpy.random.RandomState
        Source of the per-epoch shuffles.
    penalty : L2Penalty or None
        ``value(theta)`` is added to each minibatch loss; the optimizer adds
        its gradient.
    shuffle : bool
    stopper : Stopper
        Decides when to stop, on the training loss or, with ``score``, on a
        validation score.
    score : callable or None
        ``score(theta) -> float`` evaluated after each epoch.
    callback : callable or None
        ``callback(epoch, loss, theta) -> stop`` after each epoch.
    samples_seen : int
        Samples seen before this call, for the ``invscaling`` schedule.
    warn_on_max_iter : bool
        Whether to emit a ConvergenceWarning when ``max_iter`` is reached.
    kernels : "auto", kernels or None
        The compiled kernels of the steps (:mod:`sk_twolayer._fast`):
        ``"auto"`` takes them where :func:`~sk_twolayer._fast.for_minibatches`
        says (asked for, and worth it), None never.
    verbose : bool
        Print which code runs the steps, before the first.

    Returns
    -------
    result : Result
        Its ``samples_seen`` attribute is the updated count.

    Notes
    -----
    ``theta`` and the data may live in another Array API namespace (a GPU,
    say). Then nothing crosses to the host within an epoch: the shuffle is
    drawn on the host from ``rng`` and moved to the device once per epoch,
    the batch losses are summed on the device and read once per epoch, and
    divergence is checked on that sum and on the weights.
    """
    ops = ops_for(theta)
    n = X.shape[0]
    batch_size = int(np.clip(batch_size, 1, n))
    gather = BatchGatherer(X, ops)
    order = np.arange(n)
    dtype = ops.numpy_dtype(theta)
    weight_total = n if sample_weight is None else ops.to_float(ops.total(sample_weight))
    adaptive = getattr(optimizer, "schedule", "constant") == "adaptive"
    loss_curve = []
    converged, message, interrupted = False, "", False
    what = "Validation score" if score is not None else "Training loss"

    full_batch = batch_size >= n
    # The compiled kernels, where asked for and worth their loading.
    if isinstance(kernels, str):
        kernels = _fast.for_minibatches(
            ops, theta, max_iter * (1 if full_batch else -(-n // batch_size)))
    if verbose:
        print("Minibatch steps: " + ("the compiled kernels (SK_TWOLAYER_FAST=1)"
                                     if kernels is not None else "NumPy"
                                     if ops.is_numpy else "the array's namespace"))
    fun_kwargs = {}
    if kernels is not None and "kernels" in inspect.signature(fun).parameters:
        fun_kwargs["kernels"] = kernels
    hint = (
        f"Lower learning_rate_init (currently {optimizer.learning_rate_init}) "
        "or scale the features, e.g. with StandardScaler."
    )
    optimizer.start(theta, ops, kernels)
    try:
        for epoch in range(max_iter):
            if shuffle and not full_batch:
                rng.shuffle(order)
                epoch_order = ops.asarray(order)  # one transfer per epoch
            epoch_loss = 0.0
            for start in range(0, n, batch_size):
                rows = slice(start, min(start + batch_size, n))
                if full_batch:
                    Xb, yb, swb = X, y, sample_weight
                elif not shuffle:
                    # Rows in order: the batch is a view, nothing is copied.
                    Xb, yb = ops.rows(X, rows), y[rows]
                    swb = None if sample_weight is None else sample_weight[rows]
                else:
                    idx = epoch_order[rows]
                    Xb, yb = gather(idx), ops.take(y, idx)
                    swb = None if sample_weight is None else ops.take(sample_weight, idx)
                current, grad = optimizer.theta, optimizer.grad
                loss, g = fun(current, Xb, yb, swb, grad=grad, **fun_kwargs)
                if grad is not None and g is not grad:
                    grad[...] = g
                if penalty is not None:
                    loss += optimizer.penalty_value(penalty)
                if ops.is_numpy and _diverging(loss, dtype):
                    raise _diverged(f"in epoch {epoch + 1}", hint)
                optimizer.step(penalty, g)
                # The epoch loss is the weighted mean of the batch losses.
                batch_rows = Xb.shape[0]
                epoch_loss += loss * (batch_rows if swb is None else ops.total(swb))
                samples_seen += batch_rows
            # Read back once per epoch (off numpy, the first read of it).
            epoch_loss = ops.to_float(epoch_loss)
            epoch_loss /= weight_total if weight_total > 0 else 1.0
            theta[...] = optimizer.theta
            if _diverging(epoch_loss, dtype) or not ops.all_finite(theta):
                raise _diverged(f"in epoch {epoch + 1}", hint)
            loss_curve.append(epoch_loss)
            optimizer.end_epoch(samples_seen)

            if score is not None:
                plateau = stopper.update(score(theta), theta)
            else:
                plateau = stopper.update(epoch_loss, theta)
            stop_by_callback = callback is not None and callback(
                epoch + 1, epoch_loss, theta
            )
            if plateau:
                if adaptive and optimizer.learning_rate > 1e-6:
                    optimizer.learning_rate /= 5.0
                    stopper.no_improvement_count = 0
                else:
                    converged = True
                    message = stopper.plateau_message(what)
                    if adaptive:
                        message += " Learning rate too small."
                    break
            if stop_by_callback:
                converged, message = True, "Stopped by a callback."
                break
    except KeyboardInterrupt:
        interrupted = True
        message = "interrupted"
        theta[...] = optimizer.theta  # the weights so far
        _warn_interrupted(len(loss_curve))
    finally:
        optimizer.finish()

    n_iter = len(loss_curve)
    if (score is not None or interrupted) and stopper.best_theta is not None:
        # Early stopping and interrupts return the best weights seen.
        theta[...] = stopper.best_theta
    if not converged and not interrupted and warn_on_max_iter:
        message = f"Maximum iterations ({max_iter}) reached."
        warn(
            f"Stochastic optimizer: maximum iterations ({max_iter}) reached "
            "and the optimization has not converged yet. Increase max_iter "
            "or learning_rate_init.",
            ConvergenceWarning,
        )
    result = Result(theta, loss_curve, n_iter, converged, message, interrupted)
    result.samples_seen = samples_seen
    return result
