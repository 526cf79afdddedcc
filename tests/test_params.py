"""The flat parameter layout and the initialization its docstring documents."""

import numpy as np
import pytest

from sk_twolayer._params import ParamLayout


def test_pack_and_unpack_are_inverse_views():
    layout = ParamLayout(5, 4, 3)
    theta = np.arange(layout.size, dtype=float)
    W1, W2, b1, b2 = layout.unpack(theta)
    assert (W1.shape, W2.shape, b1.shape, b2.shape) == ((5, 4), (4, 3), (4,), (3,))
    assert all(np.shares_memory(part, theta) for part in (W1, W2, b1, b2))
    np.testing.assert_array_equal(layout.pack(W1, W2, b1, b2), theta)
    # The penalized prefix is the two weight matrices, then the biases.
    assert layout.n_penalized(False) == 5 * 4 + 4 * 3
    assert layout.n_penalized(True) == layout.size


@pytest.mark.parametrize("activation, factor",
                         [("relu", 1.0), ("tanh", 1.0), ("logistic", 2.0)])
def test_glorot_bounds_as_documented(activation, factor):
    # Large layers, so that the largest draw comes within 1% of the bound.
    layout = ParamLayout(300, 200, 100, dtype=np.float32)
    theta = layout.init(np.random.RandomState(0), activation)
    assert theta.dtype == np.float32
    W1, W2, b1, b2 = layout.unpack(theta)
    for W in (W1, W2):
        fan_in, fan_out = W.shape
        bound = factor * np.sqrt(6.0 / (fan_in + fan_out))
        assert 0.99 * bound < np.abs(W).max() <= bound
    assert not b1.any() and not b2.any()


def test_logistic_bound_is_ours_not_scikit_learns():
    # The docstring says we double Glorot's bound for the logistic, where
    # scikit-learn's MLP uses sqrt(2 / (fan_in + fan_out)).
    layout = ParamLayout(300, 200, 100)
    W1 = layout.unpack(layout.init(np.random.RandomState(0), "logistic"))[0]
    sklearn_bound = np.sqrt(2.0 / (300 + 200))
    assert np.abs(W1).max() > 3 * sklearn_bound
