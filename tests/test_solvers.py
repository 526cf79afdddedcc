"""The solvers on their own: they see a function of a flat vector, nothing else."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from sk_twolayer import _namespace, _solvers
from sk_twolayer._loss import L2Penalty


def _quadratic(dtype=np.float64, dim=6):
    """A weighted least-squares problem whose minimizer is known exactly.

    ``fun(theta, X, y, sw)`` is the weighted mean of ``(x_i . theta - y_i)**2``
    over the rows given, the form the solvers expect from the network's loss.
    """
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, dim)).astype(dtype)
    theta_star = np.linspace(-1, 1, dim).astype(dtype)
    y = X @ theta_star

    def fun(theta, Xb, yb, swb=None, grad=None):
        r = Xb @ theta - yb
        w = np.ones(len(yb), dtype=dtype) if swb is None else swb
        total = w.sum()
        g = (2 / total) * (Xb.T @ (w * r)) if total else np.zeros_like(theta)
        if grad is not None:
            grad[...] = g
            g = grad
        return float(np.dot(w, r * r) / total) if total else 0.0, g

    return fun, X, y, theta_star


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lbfgs_finds_the_minimizer_in_the_working_dtype(dtype):
    fun, X, y, theta_star = _quadratic(dtype)
    calls = []
    result = _solvers.lbfgs(fun, np.zeros(X.shape[1], dtype=dtype), X, y,
                            tol=1e-8, callback=lambda *a: calls.append(a) or False)
    assert result.theta.dtype == dtype
    np.testing.assert_allclose(result.theta, theta_star, atol=1e-3 if dtype == np.float32 else 1e-6)
    assert result.converged
    # One callback and one loss entry per iteration, non-increasing.
    assert len(calls) == len(result.loss_curve) == result.n_iter
    assert np.all(np.diff(result.loss_curve) <= 0)
    assert [c[0] for c in calls] == list(range(1, result.n_iter + 1))


def test_lbfgs_warns_with_scipys_message_when_it_stops_short():
    fun, X, y, _ = _quadratic()
    with pytest.warns(ConvergenceWarning, match="ITERATIONS REACHED LIMIT"):
        result = _solvers.lbfgs(fun, np.zeros(X.shape[1]), X, y, max_iter=2, tol=0)
    assert result.n_iter == 2 and not result.converged


def test_lbfgs_non_finite_objective_is_a_divergence_error():
    def fun(theta, X, y, sw=None, grad=None):
        return np.nan, np.full_like(theta, np.nan)

    with pytest.raises(_solvers.DivergenceError, match="diverged"):
        _solvers.lbfgs(fun, np.zeros(3), None, None)


@pytest.mark.parametrize("optimizer", [
    _solvers.SGD(0.05, momentum=0.0),
    _solvers.SGD(0.05, momentum=0.9, nesterov=False),
    _solvers.SGD(0.05, momentum=0.9, nesterov=True),
    _solvers.Adam(0.05),
])
def test_stochastic_optimizers_reach_the_minimizer(optimizer):
    fun, X, y, theta_star = _quadratic()
    theta = np.zeros(X.shape[1])
    stopper = _solvers.Stopper(tol=1e-10, n_iter_no_change=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = _solvers.stochastic(
            fun, theta, X, y, optimizer=optimizer, batch_size=20, max_iter=300,
            rng=np.random.RandomState(0), stopper=stopper,
        )
    assert result.theta is theta  # updated in place
    np.testing.assert_allclose(theta, theta_star, atol=2e-2)
    assert result.loss_curve[-1] < 1e-3 * result.loss_curve[0]
    assert result.samples_seen == result.n_iter * len(X)


def _steps(optimizer, theta, grads, penalty=None):
    """Run ``optimizer`` from ``theta`` over the given gradients; the new theta."""
    optimizer.start(theta)
    for g in grads:
        optimizer.grad[...] = g
        optimizer.step(penalty)
    out = optimizer.theta.copy()
    optimizer.finish()
    return out


def test_sgd_update_rules_match_their_formulas():
    theta, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    t = _steps(_solvers.SGD(0.1, momentum=0.0), theta, [g])
    np.testing.assert_allclose(t, theta - 0.1 * g)

    # v1 = -lr g, v2 = 0.9 v1 - lr g; theta += v each step
    t = _steps(_solvers.SGD(0.1, momentum=0.9, nesterov=False), theta, [g, g])
    v2 = 0.9 * (-0.1 * g) - 0.1 * g
    np.testing.assert_allclose(t, theta - 0.1 * g + v2)

    # theta += 0.9 v - lr g, with v = -lr g
    t = _steps(_solvers.SGD(0.1, momentum=0.9, nesterov=True), theta, [g])
    np.testing.assert_allclose(t, theta + 0.9 * (-0.1 * g) - 0.1 * g)


@pytest.mark.parametrize("make", [
    lambda: _solvers.SGD(0.1, momentum=0.0),
    lambda: _solvers.SGD(0.1, momentum=0.9, nesterov=False),
    lambda: _solvers.SGD(0.1, momentum=0.9, nesterov=True),
    lambda: _solvers.Adam(0.1),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_penalty_in_the_update_equals_penalty_in_the_gradient(make, dtype):
    # The penalty folded into the update (weight decay) must give the same
    # trajectory as adding 2 * reg * theta to every gradient by hand, with an
    # unpenalized tail, over several steps so that the velocity matters too.
    rng = np.random.RandomState(0)
    theta0 = rng.normal(size=7).astype(dtype)
    grads = rng.normal(size=(4, 7)).astype(dtype)
    penalty = L2Penalty(0.3, 5)  # the loss's own penalty object

    folded = _steps(make(), theta0, grads, penalty)

    by_hand = make()
    by_hand.start(theta0)
    for g in grads:
        full = g + 2 * 0.3 * np.r_[by_hand.theta[:5], np.zeros(2, dtype)]
        by_hand.grad[...] = full
        by_hand.step()
    assert folded.dtype == dtype
    np.testing.assert_allclose(folded, by_hand.theta,
                               rtol=1e-5 if dtype == np.float32 else 1e-12)
    # and the penalty did something: without it the result differs
    assert not np.allclose(folded, _steps(make(), theta0, grads), rtol=1e-4)


def test_velocity_carries_over_from_one_start_to_the_next():
    # Two runs of two steps each (as two partial_fit calls) equal one run of
    # four: finish() keeps the momentum for the next start().
    rng = np.random.RandomState(1)
    theta0, grads = rng.normal(size=5), rng.normal(size=(4, 5))
    split = _solvers.SGD(0.1, momentum=0.9)
    half = _steps(split, theta0, grads[:2])
    np.testing.assert_allclose(_steps(split, half, grads[2:]),
                               _steps(_solvers.SGD(0.1, momentum=0.9), theta0, grads),
                               rtol=1e-12)


def test_adam_first_step_has_the_learning_rate_as_size():
    # With bias correction the first Adam step is lr * sign(g) (up to epsilon).
    t = _steps(_solvers.Adam(0.01), np.zeros(3), [np.array([3.0, -0.001, 10.0])])
    np.testing.assert_allclose(t, [-0.01, 0.01, -0.01], rtol=1e-3)


def test_invscaling_schedule():
    sgd = _solvers.SGD(0.3, schedule="invscaling", power_t=0.5)
    sgd.end_epoch(samples_seen=99)
    assert sgd.learning_rate == pytest.approx(0.3 / 10)


def test_stopper_counts_plateaus_and_keeps_the_best():
    stopper = _solvers.Stopper(tol=0.1, n_iter_no_change=2)  # on a loss
    values = [1.0, 0.5, 0.45, 0.6, 0.44]
    stops = [stopper.update(v, np.array([v])) for v in values]
    # 0.45 and 0.6 do not improve on 0.5 by 0.1; 0.44 neither: third plateau.
    assert stops == [False, False, False, False, True]
    assert stopper.best_value == pytest.approx(0.44)
    np.testing.assert_array_equal(stopper.best_theta, [0.44])

    scores = _solvers.Stopper(tol=0.0, n_iter_no_change=1, higher_is_better=True)
    assert not scores.update(0.5, np.array([1.0]))
    assert not scores.update(0.7, np.array([2.0]))
    assert not scores.update(0.6, np.array([3.0]))
    assert scores.update(0.6, np.array([4.0]))
    np.testing.assert_array_equal(scores.best_theta, [2.0])


def test_stochastic_early_stopping_restores_the_best_weights():
    fun, X, y, _ = _quadratic()
    # A score that peaks at epoch 3 and then falls: training must stop two
    # epochs later and hand back the weights of epoch 3.
    seen = []

    def score(theta):
        seen.append(theta.copy())
        return -abs(len(seen) - 3)

    theta = np.zeros(X.shape[1])
    result = _solvers.stochastic(
        fun, theta, X, y, optimizer=_solvers.SGD(0.01), batch_size=50,
        max_iter=100, rng=np.random.RandomState(0),
        stopper=_solvers.Stopper(0.0, 2, higher_is_better=True), score=score,
    )
    assert result.n_iter == 6 and result.converged
    np.testing.assert_array_equal(theta, seen[2])


def test_stochastic_divergence_is_an_error():
    fun, X, y, _ = _quadratic()
    with pytest.raises(_solvers.DivergenceError, match="learning_rate_init"):
        _solvers.stochastic(
            fun, np.zeros(X.shape[1]), X, y, optimizer=_solvers.SGD(1e3),
            batch_size=20, max_iter=50, rng=np.random.RandomState(0),
            stopper=_solvers.Stopper(1e-4, 10),
        )


def test_stochastic_interrupt_returns_the_best_weights():
    fun, X, y, _ = _quadratic()

    def callback(epoch, loss, theta):
        if epoch == 3:
            raise KeyboardInterrupt
        return False

    stopper = _solvers.Stopper(0.0, 100)
    with pytest.warns(UserWarning, match="interrupted"):
        result = _solvers.stochastic(
            fun, np.zeros(X.shape[1]), X, y, optimizer=_solvers.SGD(0.01),
            batch_size=50, max_iter=100, rng=np.random.RandomState(0),
            stopper=stopper, callback=callback,
        )
    assert result.interrupted and result.n_iter == 3
    np.testing.assert_array_equal(result.theta, stopper.best_theta)


def test_shuffle_false_visits_rows_in_order():
    order = []

    def fun(theta, Xb, yb, swb=None, grad=None):
        order.extend(yb.tolist())
        return 0.0, np.zeros_like(theta)

    X, y = np.zeros((10, 2)), np.arange(10)
    _solvers.stochastic(fun, np.zeros(2), X, y, optimizer=_solvers.SGD(0.1),
                        batch_size=3, max_iter=2, rng=np.random.RandomState(0),
                        shuffle=False, stopper=_solvers.Stopper(1.0, 0),
                        warn_on_max_iter=False)
    assert order[:10] == list(range(10))


# ------------------------------------------- update rules against plain code
def _plain_sgd(theta, grads, lr, mu, nesterov, reg, size):
    """SGD with momentum and L2 on ``theta[:size]``, written out plainly."""
    theta, v = theta.astype(np.float64), np.zeros(theta.shape)
    for g in grads:
        g = g + 2 * reg * np.r_[theta[:size], np.zeros(theta.size - size)]
        v = mu * v - lr * g
        theta = theta + (mu * v - lr * g if nesterov else v)
    return theta


def _plain_adam(theta, grads, lr, b1, b2, eps, reg, size):
    """Adam with bias correction and L2 on ``theta[:size]``, written out plainly."""
    theta = theta.astype(np.float64)
    m, v = np.zeros(theta.shape), np.zeros(theta.shape)
    for t, g in enumerate(grads, start=1):
        g = g + 2 * reg * np.r_[theta[:size], np.zeros(theta.size - size)]
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        # the bias-corrected step, with epsilon scaled as in the fused form
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps / np.sqrt(1 - b2 ** t))
    return theta


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rule", ["sgd", "sgd classical", "adam"])
def test_update_rules_match_plain_code_over_many_chunks(rule, dtype):
    # A vector of several chunks whose penalized prefix ends inside one, over
    # steps enough for the momentum to matter; against float64 plain code.
    chunk = _namespace.CHUNK_BYTES // np.dtype(dtype).itemsize
    n, size, reg = 3 * chunk + 1001, 2 * chunk + 77, 0.05
    rng = np.random.RandomState(0)
    theta0 = rng.normal(size=n).astype(dtype)
    grads = rng.normal(size=(6, n)).astype(dtype)
    penalty = L2Penalty(reg, size)
    if rule == "adam":
        make = lambda: _solvers.Adam(0.01)  # noqa: E731
        expected = _plain_adam(theta0, grads, 0.01, 0.9, 0.999, 1e-8, reg, size)
    else:
        nesterov = rule == "sgd"
        make = lambda: _solvers.SGD(0.01, momentum=0.9, nesterov=nesterov)  # noqa: E731
        expected = _plain_sgd(theta0, grads, 0.01, 0.9, nesterov, reg, size)
    got = _steps(make(), theta0, grads, penalty)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected,
                               rtol=2e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("make", [lambda: _solvers.SGD(0.1, momentum=0.9),
                                  lambda: _solvers.Adam(0.1)])
def test_penalty_from_the_update_pass_is_the_penalty_at_the_new_weights(
        make):
    chunk = _namespace.CHUNK_BYTES // 8
    rng = np.random.RandomState(0)
    theta0 = rng.normal(size=2 * chunk + 5)
    penalty = L2Penalty(0.3, chunk + 3)
    optimizer = make()
    optimizer.start(theta0)
    # before any step there is nothing kept: it is evaluated
    assert optimizer.penalty_value(penalty) == pytest.approx(
        penalty.value(theta0), rel=1e-12)
    for _ in range(3):
        optimizer.grad[...] = rng.normal(size=theta0.size)
        optimizer.step(penalty)
        assert optimizer.penalty_value(penalty) == pytest.approx(
            penalty.value(optimizer.theta), rel=1e-12)
    # another penalty object is evaluated afresh, not given the kept value
    other = L2Penalty(1.0, 10)
    assert optimizer.penalty_value(other) == pytest.approx(
        other.value(optimizer.theta), rel=1e-12)
    optimizer.finish()


@pytest.mark.parametrize("size", [1, 1000, 70_000, 200_000])
def test_chunked_covers_every_index_once_and_sums_the_kernel(size):
    breaks = (0, size // 3, size // 3, size - 1, size + 10)
    seen = np.zeros(size, dtype=int)
    straddles = []

    def kernel(lo, hi, scratch):
        assert scratch.shape == (hi - lo,) and scratch.dtype == np.float32
        seen[lo:hi] += 1
        straddles.extend(b for b in breaks if lo < b < hi)
        return float(hi - lo)

    total = _namespace.NUMPY.chunked(kernel, size, np.float32, 1, breaks=breaks)
    assert total == size
    np.testing.assert_array_equal(seen, 1)
    assert straddles == []  # no chunk crosses a break
