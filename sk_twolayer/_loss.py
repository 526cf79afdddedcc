"""The maths of the two-layer network: forward pass, loss and backward pass.

Everything here is a pure function of parameters and data (the only state is
scratch memory that :class:`TwoLayerLoss` keeps between calls so that a
training loop does not allocate). Nothing here knows about estimators.

Notation follows the derivation the package is built on: ``N`` samples, ``D``
features, ``H`` hidden units, ``C`` classes; ``W1`` (D, H), ``b1`` (H,),
``W2`` (H, C), ``b2`` (C,).
"""

import math

import numpy as np
import scipy.sparse as sp
from sklearn import get_config

from ._params import ParamLayout

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "logistic")

# Slope of leaky_relu for negative pre-activations.
LEAKY_SLOPE = 0.01

# Upper bound on the scratch memory (MiB) used when the loss is evaluated over
# many rows at once (full-batch L-BFGS). scikit-learn's ``working_memory``
# config is respected when it is smaller. Blocks of a few thousand rows keep
# the matrix products at full speed; larger ones only cost page faults (the
# public loss_and_gradient at N=20000: 205 ms at 16 MiB, 230 ms at 64 MiB).
DEFAULT_WORKING_MEMORY = 16


def _rows_in_budget(row_bytes, n_rows):
    """How many rows of ``row_bytes`` fit in the scratch-memory budget."""
    budget = min(get_config()["working_memory"], DEFAULT_WORKING_MEMORY) * 2**20
    return int(min(max(1, budget // row_bytes), max(1, n_rows)))


def _row_blocks(n_rows, rows_per_block):
    """Slices that cover ``range(n_rows)`` in blocks of equal size.

    Plain slices rather than scikit-learn's ``gen_batches``, whose parameter
    validation costs ~0.4 ms a call: 8% of a batch-200 SGD step, and most of
    a one-row prediction. Equal blocks (not full ones and a small remainder),
    because a small last block runs its GEMMs far below the machine's rate.
    """
    n_blocks = max(1, -(-n_rows // rows_per_block))  # ceil division
    block = max(1, -(-n_rows // n_blocks))
    return [slice(start, start + block) for start in range(0, n_rows, block)]


def _activate_inplace(A, activation, zeros=None):
    """Overwrite the pre-activations ``A`` (N, H) with the hidden values h.

    ``zeros``, an all-zero array of A's shape, makes the ReLU an
    array-array maximum: numpy's vectorized loop, 4-5x faster at batch 200
    than the maximum with a scalar 0.
    """
    if activation == "relu":
        np.maximum(A, 0 if zeros is None else zeros, out=A)
    elif activation == "leaky_relu":
        np.maximum(A, LEAKY_SLOPE * A, out=A)
    elif activation == "tanh":
        np.tanh(A, out=A)
    else:  # logistic
        # 1 / (1 + exp(-a)) written with tanh: exact and free of overflow.
        A *= 0.5
        np.tanh(A, out=A)
        A += 1
        A *= 0.5


def _backprop_activation_inplace(dH, h, activation):
    """Multiply dL/dh (N, H) by f'(f) in place, using only the forward value h.

    Every supported activation has a derivative that is a function of its
    output, so the pre-activations never need to be kept. ``h`` is consumed
    (overwritten) in the process.
    """
    if activation == "relu":
        # h > 0 exactly where f > 0: the mask 1(f > 0), written over h as
        # 0.0 / 1.0 (np.greater is ~8x faster than np.sign here).
        np.greater(h, 0, out=h, casting="unsafe")
    elif activation == "leaky_relu":
        # h > 0 exactly where f > 0; map the mask {0, 1} to {slope, 1}.
        np.greater(h, 0, out=h, casting="unsafe")
        h *= 1 - LEAKY_SLOPE
        h += LEAKY_SLOPE
    elif activation == "tanh":
        # tanh' = 1 - h**2
        np.square(h, out=h)
        np.subtract(1, h, out=h)
    else:  # logistic' = h * (1 - h)
        dH *= h
        np.subtract(1, h, out=h)
    dH *= h


def _matmul_into(a, b, out, accumulate, scratch):
    """``out = a @ b``, or ``out += a @ b`` through a kept scratch buffer.

    Sums over the rows of a block (the bias gradients) go through here too,
    as ``ones @ M``: a BLAS matrix-vector product, 2-3x faster at batch 200
    than numpy's reduction over the rows.

    A sparse ``a`` (the transposed CSR input) has no ``out=``: its product
    is a new dense array, written or added once.
    """
    if sp.issparse(a):
        if accumulate:
            out += a @ b
        else:
            out[...] = a @ b
    elif accumulate:
        np.matmul(a, b, out=scratch)
        out += scratch
    else:
        np.matmul(a, b, out=out)


class L2Penalty:
    """The penalty ``reg * ||theta[:size]||^2`` on a prefix of the flat vector.

    Its gradient is ``2 * reg * theta`` on the prefix and zero after it. The
    loss adds it to the data term for L-BFGS; the stochastic solvers take it
    as it is, so that plain SGD can fold it into its update as weight decay
    instead of adding it to every minibatch gradient.

    Parameters
    ----------
    reg : float
        Strength of the penalty.
    size : int
        Length of the penalized prefix of ``theta``.
    """

    def __init__(self, reg, size):
        self.reg = float(reg)
        self.size = int(size)
        self._scratch = None

    def value(self, theta):
        """``reg * ||theta[:size]||^2``."""
        if not self.reg:
            return 0.0
        penalized = theta[: self.size]
        return self.reg * float(np.dot(penalized, penalized))

    def add_gradient(self, theta, grad):
        """Add ``2 * reg * theta`` to ``grad`` on the prefix, in place."""
        if not self.reg:
            return
        tmp = self._scratch
        if tmp is None or tmp.dtype != theta.dtype or tmp.size < self.size:
            tmp = self._scratch = np.empty(self.size, dtype=theta.dtype)
        np.multiply(theta[: self.size], theta.dtype.type(2 * self.reg), out=tmp)
        grad[: self.size] += tmp


class TwoLayerLoss:
    r"""Loss and gradient of the two-layer softmax network on a flat vector.

    The objective, for samples :math:`x_i` with labels :math:`y_i` and
    weights :math:`w_i`, is

    .. math::

        L(\theta) = \frac{\sum_i w_i\,\ell_i}{\sum_i w_i}
          + \lambda \left(\|W_1\|^2 + \|W_2\|^2 + \|b_1\|^2 + \|b_2\|^2\right),
        \qquad
        \ell_i = -\log \operatorname{softmax}(s_i)_{y_i},

    with :math:`h_i = f(x_i W_1 + b_1)` and :math:`s_i = h_i W_2 + b_2`. The
    bias terms of the penalty are dropped when ``penalize_bias=False``. Its
    gradient is ``2 * reg * theta`` on the penalized entries plus the
    backpropagated data term.

    The parameters live in one flat vector laid out by
    :class:`~sk_twolayer._params.ParamLayout` (weights first, then biases),
    which is what :func:`scipy.optimize.minimize` and the stochastic update
    rules work on. :meth:`loss_gradient` returns ``(loss, grad)`` exactly as
    ``minimize(..., jac=True)`` expects; it is :meth:`data_loss_gradient`
    plus :attr:`penalty`.

    Parameters
    ----------
    layout : ParamLayout
        Shapes of the network.
    reg : float
        Strength :math:`\lambda` of the L2 penalty.
    penalize_bias : bool
        Whether the biases are penalized, as in the seed's objective.
    activation : str
        Hidden activation: one of ``"relu"``, ``"leaky_relu"``, ``"tanh"``,
        ``"logistic"``.
    block_rows : int or None
        Number of rows evaluated at once. ``None`` derives it from a memory
        budget so that a full-batch evaluation never needs scratch memory
        proportional to N.
    """

    def __init__(self, layout, reg=0.0, penalize_bias=True, activation="relu",
                 block_rows=None):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {ACTIVATIONS}, got {activation!r}."
            )
        self.layout = layout
        self.reg = float(reg)
        self.penalize_bias = bool(penalize_bias)
        self.activation = activation
        self.block_rows = block_rows
        self.penalty = L2Penalty(self.reg, layout.n_penalized(self.penalize_bias))
        self._buffers = {}

    # ------------------------------------------------------------------ memory
    def _rows_per_block(self, n_rows):
        if self.block_rows is not None:
            return max(1, int(self.block_rows))
        H, C = self.layout.n_hidden, self.layout.n_classes
        itemsize = np.dtype(self.layout.dtype).itemsize
        # A (H) + dH (H) + zeros (H) + S (C) per row, plus small per-row
        # vectors.
        row_bytes = (3 * H + C + 5) * itemsize
        return _rows_in_budget(row_bytes, n_rows)

    def _buffer(self, name, *shape, fill=None):
        """A C-contiguous view of ``shape`` on a flat buffer kept across calls.

        With ``fill``, a new buffer is filled once and must never be written
        to. An all-zero one comes from calloc, so its pages usually stay
        unmapped; the memory budget counts it anyway.
        """
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            buf = np.zeros(size, dtype=self.layout.dtype)
            if fill:
                buf.fill(fill)
            self._buffers[name] = buf
        return buf[:size].reshape(shape)

    # ------------------------------------------------------------- evaluation
    def loss_gradient(self, theta, X, y, sample_weight=None, grad=None):
        """Loss and gradient at ``theta``: the data term plus the penalty.

        Parameters
        ----------
        theta : ndarray of shape (n_params,)
            Packed parameters, in the layout's dtype.
        X : {ndarray, sparse matrix} of shape (N, D)
            Input, in the layout's dtype. Sparse input must be CSR.
        y : ndarray of shape (N,)
            Integer class indices in ``[0, C)``.
        sample_weight : ndarray of shape (N,) or None
            Non-negative weights, in the layout's dtype.
        grad : ndarray of shape (n_params,) or None
            Where to write the gradient; allocated when None.

        Returns
        -------
        loss : float
        grad : ndarray of shape (n_params,)
        """
        loss, grad = self.data_loss_gradient(theta, X, y, sample_weight, grad)
        self.penalty.add_gradient(theta, grad)
        return loss + self.penalty.value(theta), grad

    def data_loss_gradient(self, theta, X, y, sample_weight=None, grad=None):
        """The weighted mean log loss and its gradient, without the penalty.

        Same parameters and returns as :meth:`loss_gradient`.
        """
        layout = self.layout
        dtype = layout.dtype
        W1, W2, b1, b2 = layout.unpack(theta)
        if grad is None:
            grad = np.empty_like(theta)
        gW1, gW2, gb1, gb2 = layout.unpack(grad)

        N = X.shape[0]
        if sample_weight is None:
            weight_sum = float(N)
        else:
            weight_sum = float(sample_weight.sum(dtype=np.float64))
        data_loss = 0.0
        if N > 0 and weight_sum > 0:
            # dL/ds_i = w_i (p_i - onehot(y_i)) / sum(w): fold 1 / sum(w) in once.
            inv_weight_sum = dtype.type(1.0 / weight_sum)
            # The first block writes the gradient, later blocks add to it:
            # no zero-fill pass and no per-call temporaries of theta's size.
            blocks = _row_blocks(N, self._rows_per_block(N))
            for i, rows in enumerate(blocks):
                swb = None if sample_weight is None else sample_weight[rows]
                data_loss += self._block(
                    X[rows], y[rows], swb, inv_weight_sum,
                    W1, W2, b1, b2, gW1, gW2, gb1, gb2, accumulate=i > 0,
                )
            data_loss /= weight_sum
        else:
            # An empty batch, or one whose weights are all zero, carries no
            # data term: only the penalty remains, which keeps minibatch
            # training going.
            grad.fill(0)

        return data_loss, grad

    def _rows(self, n):
        """``arange(n)``, kept across calls for the fancy indexing by label."""
        rows = self._buffers.get("rows")
        if rows is None or rows.size < n:
            rows = self._buffers["rows"] = np.arange(n)
        return rows[:n]

    def _block(self, Xb, yb, swb, inv_weight_sum, W1, W2, b1, b2,
               gW1, gW2, gb1, gb2, accumulate=False):
        """Forward and backward pass over one block of rows.

        Writes the gradient of the block into ``gW1, gW2, gb1, gb2`` (adds to
        them when ``accumulate``) and returns the weighted sum of the
        per-sample log losses in the block.
        """
        n = Xb.shape[0]
        H, C = self.layout.n_hidden, self.layout.n_classes
        rows = self._rows(n)

        # ---- forward
        A = self._buffer("A", n, H)  # (n, H): f, then h, then f'(f)
        if sp.issparse(Xb):
            A[...] = Xb @ W1  # sparse GEMM; X is never densified
        else:
            np.matmul(Xb, W1, out=A)
        A += b1
        zeros = self._buffer("zeros", n, H, fill=0)
        _activate_inplace(A, self.activation, zeros)  # A = h
        # Scores are kept transposed, one row per class: (C, n). With few
        # classes, reductions over a sample's scores then run along the long
        # axis, which numpy vectorizes (a third faster at batch 200).
        ST = self._buffer("S", C, n)
        np.matmul(W2.T, A.T, out=ST)
        ST += b2[:, None]

        # ---- log loss, stable for any size of score: shift by the row max
        per_sample = self._buffer("per_sample", 2 * n)
        row_max, row_sum = per_sample[:n], per_sample[n:]
        np.max(ST, axis=0, out=row_max)
        ST -= row_max
        # where s_iy sits in the flattened ST
        true_class = np.multiply(yb, n, dtype=np.intp)
        true_class += rows
        flat = ST.reshape(-1)
        losses = -flat[true_class]  # -(s_iy - max_i), (n,)
        np.exp(ST, out=ST)
        np.sum(ST, axis=0, out=row_sum)  # in [1, C]: log never sees 0
        losses += np.log(row_sum)  # l_i = log sum exp(s_i) - s_iy
        if swb is None:
            block_loss = float(losses.sum(dtype=np.float64))
            scale = inv_weight_sum
        else:
            block_loss = float(np.dot(swb, losses))
            scale = swb * inv_weight_sum

        # ---- backward, reusing the forward values in place
        # dscores = w_i (softmax - onehot) / sum(w): exp(s) times
        # (w_i / sum(w)) / row_sum, then the one-hot part subtracted.
        np.divide(scale, row_sum, out=row_sum)
        ST *= row_sum
        flat[true_class] -= scale
        S = ST.T  # (n, C)
        # dW2 = h^T dscores (H, C), db2 = sum_i dscores
        _matmul_into(A.T, S, gW2, accumulate, self._buffer("gW2", H, C))
        ones = self._buffer("ones", n, fill=1)
        _matmul_into(ST, ones, gb2, accumulate, self._buffer("gb2", C))
        # dh = dscores W2^T (n, H); df = dh * f'(f), f' read off h
        dH = self._buffer("dH", n, H)
        np.matmul(S, W2.T, out=dH)
        _backprop_activation_inplace(dH, A, self.activation)
        # dW1 = X^T df (D, H), db1 = sum_i df
        _matmul_into(Xb.T, dH, gW1, accumulate, self._buffer("gW1", *gW1.shape))
        _matmul_into(ones, dH, gb1, accumulate, self._buffer("gb1", H))
        return block_loss

    def evaluate(self, theta, X, y, sample_weight=None):
        """Weighted mean log loss (no penalty) and accuracy, from one forward pass."""
        W1, W2, b1, b2 = self.layout.unpack(theta)
        S = forward(W1, b1, W2, b2, X, self.activation)
        correct = S.argmax(axis=1) == y
        # log softmax(s)_y = s_y - logsumexp(s), shifted by the row max
        S -= S.max(axis=1, keepdims=True)
        losses = np.log(np.exp(S).sum(axis=1)) - S[np.arange(len(y)), y]
        return (float(np.average(losses, weights=sample_weight)),
                float(np.average(correct, weights=sample_weight)))


def forward(W1, b1, W2, b2, X, activation="relu"):
    """Scores of the network, ``f(X @ W1 + b1) @ W2 + b2``, shape (N, C).

    Rows are processed in blocks so that the hidden layer never needs more
    scratch memory than the working-memory budget.
    """
    N, (H, C) = X.shape[0], W2.shape
    dtype = np.result_type(X.dtype, W1.dtype)
    S = np.empty((N, C), dtype=dtype)
    row_bytes = (H + C) * dtype.itemsize
    for rows in _row_blocks(N, _rows_in_budget(row_bytes, N)):
        A = np.asarray(X[rows] @ W1)  # (n, H)
        A += b1
        _activate_inplace(A, activation)
        np.matmul(A, W2, out=S[rows])
        S[rows] += b2
    return S


def _check_param(name, value, shape, dtype):
    value = np.asarray(value)
    if value.shape != shape:
        raise ValueError(
            f"{name} has shape {value.shape}, but the other arguments need {shape}."
        )
    return np.asarray(value, dtype=dtype)


def loss_and_gradient(W1, b1, W2, b2, X, y, reg=0.0, *, sample_weight=None,
                      penalize_bias=True, activation="relu"):
    r"""Loss and gradient of the two-layer softmax network.

    The network maps a sample :math:`x` (a row of ``X``) to class
    probabilities through one hidden layer:

    .. math::

        h = f(x W_1 + b_1), \qquad s = h W_2 + b_2, \qquad
        p = \operatorname{softmax}(s),

    with :math:`f(a) = \max(0, a)` by default. The objective is the mean log
    loss plus an L2 penalty on all four parameters,

    .. math::

        L = \frac{\sum_i w_i\,(-\log p_{i y_i})}{\sum_i w_i}
            + \lambda \left(\|W_1\|^2 + \|W_2\|^2 + \|b_1\|^2 + \|b_2\|^2\right),

    where :math:`w_i = 1` without ``sample_weight`` and the bias terms are
    dropped with ``penalize_bias=False``. The backward pass reuses the values
    of the forward pass: the softmax becomes :math:`\partial L/\partial s`
    in place and the activation's derivative is read off :math:`h`.

    Parameters
    ----------
    W1 : array-like of shape (D, H)
        First-layer weights.
    b1 : array-like of shape (H,)
        First-layer bias.
    W2 : array-like of shape (H, C)
        Second-layer weights.
    b2 : array-like of shape (C,)
        Second-layer bias.
    X : {array-like, sparse matrix} of shape (N, D)
        Input samples. Sparse input is used as CSR without being densified.
    y : array-like of shape (N,)
        Class indices, integers in ``[0, C)``.
    reg : float, default=0.0
        Strength :math:`\lambda` of the L2 penalty.
    sample_weight : array-like of shape (N,), default=None
        Non-negative sample weights. The data term is their weighted mean.
    penalize_bias : bool, default=True
        Whether ``b1`` and ``b2`` are penalized.
    activation : {"relu", "leaky_relu", "tanh", "logistic"}, default="relu"
        Hidden-layer activation :math:`f`.

    Returns
    -------
    loss : float
        Value of the objective.
    grads : dict
        Gradients with keys ``"W1"``, ``"b1"``, ``"W2"``, ``"b2"``, each with
        the shape of its parameter. The dtype is float32 when ``X`` is
        float32 and float64 otherwise.

    See Also
    --------
    TwoLayerSoftmaxClassifier : The estimator that minimizes this objective.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_twolayer import loss_and_gradient
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(5, 3))
    >>> y = np.array([0, 1, 2, 1, 0])
    >>> W1, b1 = np.zeros((3, 4)), np.zeros(4)
    >>> W2, b2 = np.zeros((4, 3)), np.zeros(3)
    >>> loss, grads = loss_and_gradient(W1, b1, W2, b2, X, y, reg=0.1)
    >>> print(f"{loss:.4f}")  # all-zero weights predict uniformly: log(3)
    1.0986
    >>> sorted(grads), grads["W1"].shape
    (['W1', 'W2', 'b1', 'b2'], (3, 4))
    """
    if sp.issparse(X):
        X = sp.csr_array(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
    else:
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
    dtype = X.dtype
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional, got shape {X.shape}.")
    W1 = np.asarray(W1)
    if W1.ndim != 2:
        raise ValueError(f"W1 must be 2-dimensional, got shape {W1.shape}.")
    W2 = np.asarray(W2)
    if W2.ndim != 2:
        raise ValueError(f"W2 must be 2-dimensional, got shape {W2.shape}.")
    D, H = W1.shape
    C = W2.shape[1]
    if X.shape[1] != D:
        raise ValueError(f"X has {X.shape[1]} features, but W1 expects {D}.")
    layout = ParamLayout(D, H, C, dtype)
    theta = layout.pack(
        _check_param("W1", W1, (D, H), dtype),
        _check_param("W2", W2, (H, C), dtype),
        _check_param("b1", b1, (H,), dtype),
        _check_param("b2", b2, (C,), dtype),
    )
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}.")
    if y.size and (
        not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= C
    ):
        raise ValueError(f"y must hold integer class indices in [0, {C}).")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=dtype)
        if sample_weight.shape != (X.shape[0],):
            raise ValueError(
                f"sample_weight must have shape ({X.shape[0]},), "
                f"got {sample_weight.shape}."
            )
    loss_fn = TwoLayerLoss(layout, reg, penalize_bias, activation)
    loss, grad = loss_fn.loss_gradient(theta, X, y, sample_weight)
    gW1, gW2, gb1, gb2 = layout.unpack(grad)
    return loss, {"W1": gW1, "b1": gb1, "W2": gW2, "b2": gb2}
