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

from ._namespace import NUMPY, max_precision_float_dtype, ops_for
from ._params import ParamLayout

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "logistic")

# Slope of leaky_relu for negative pre-activations.
LEAKY_SLOPE = 0.01

# Upper bound on the host scratch memory (MiB) used when the loss is evaluated
# over many rows at once (full-batch L-BFGS). scikit-learn's ``working_memory``
# config is respected when it is smaller. Blocks of a few thousand rows keep
# the CPU's matrix products at full speed; larger ones only cost page faults
# (the public loss_and_gradient at N=20000: 205 ms at 16 MiB, 230 ms at
# 64 MiB). An accelerator gets scikit-learn's ``working_memory`` (1 GiB by
# default) instead: there a block of a few thousand rows is too small a
# product to fill the device, and each block costs some forty kernel
# launches.
DEFAULT_WORKING_MEMORY = 16


def _rows_in_budget(row_bytes, n_rows, ops=NUMPY):
    """How many rows of ``row_bytes`` fit in the scratch-memory budget."""
    budget = get_config()["working_memory"]
    if not ops.on_accelerator:
        budget = min(budget, DEFAULT_WORKING_MEMORY)
    return int(min(max(1, budget * 2**20 // row_bytes), max(1, n_rows)))


def _row_blocks(n_rows, rows_per_block):
    """Slices that cover ``range(n_rows)`` in blocks of equal size.

    Plain slices rather than scikit-learn's ``gen_batches``, whose parameter
    validation costs ~0.4 ms a call: 8% of a batch-200 SGD step, and most of
    a one-row prediction. Equal blocks (not full ones and a small remainder),
    because a small last block runs its GEMMs far below the machine's rate.
    """
    n_blocks = max(1, -(-n_rows // rows_per_block))  # ceil division
    block = max(1, -(-n_rows // n_blocks))
    return [slice(start, min(start + block, n_rows))
            for start in range(0, n_rows, block)]


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


def _activate(ops, A, activation, zeros=None):
    """h = f(A): in place for numpy, a new array in other namespaces."""
    if ops.is_numpy:
        _activate_inplace(A, activation, zeros)
        return A
    xp = ops.xp
    if activation == "relu":
        return xp.clip(A, min=0.0)
    if activation == "leaky_relu":
        return xp.where(A > 0, A, LEAKY_SLOPE * A)
    if activation == "tanh":
        return xp.tanh(A)
    return (xp.tanh(0.5 * A) + 1.0) * 0.5  # logistic, as above


def _backprop_activation(ops, dH, h, activation):
    """dL/df = dL/dh * f'(f), with f' read off h (see the numpy version)."""
    if ops.is_numpy:
        _backprop_activation_inplace(dH, h, activation)
        return dH
    xp = ops.xp
    if activation == "relu":
        return ops.relu_backward(dH, h)
    if activation == "leaky_relu":
        return xp.where(h > 0, dH, LEAKY_SLOPE * dH)
    if activation == "tanh":
        return dH * (1.0 - h * h)
    return dH * (h * (1.0 - h))  # logistic


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


class _GradientViews:
    """Gradient blocks written into views of the flat gradient (numpy).

    ``add(k, a, b, accumulate, scratch)`` writes (or adds) ``a @ b`` into
    block ``k`` of ``(gW1, gW2, gb1, gb2)``.
    """

    def __init__(self, layout, grad):
        self.grad = grad
        self.views = layout.unpack(grad)

    def add(self, k, a, b, accumulate, scratch, via_transpose=False):
        _matmul_into(a, b, self.views[k], accumulate, scratch)

    def add_sum(self, k, M, axis, ones, accumulate, scratch):
        """The sum of ``M`` over ``axis`` as a product with ``ones``."""
        a, b = (ones, M) if axis == 0 else (M, ones)
        _matmul_into(a, b, self.views[k], accumulate, scratch)

    def flat(self):
        return self.grad


class _GradientParts:
    """Gradient blocks kept as arrays, concatenated at the end (Array API).

    Other namespaces have no portable way to write into a reshaped slice.
    """

    def __init__(self, xp):
        self.xp = xp
        self.parts = [None] * 4

    def add(self, k, a, b, accumulate, scratch=None, via_transpose=False):
        # via_transpose: ``a @ b`` as ``(b.T @ a.T).T``, for two transposed
        # operands, which PyTorch's CPU kernels multiply 3-15x slower than
        # two contiguous ones (measured at 200 to 20,000 rows). numpy's BLAS
        # takes both orders at the same speed.
        product = (b.T @ a.T).T if via_transpose else a @ b
        self._put(k, product, accumulate)

    def add_sum(self, k, M, axis, ones=None, accumulate=False, scratch=None):
        # A reduction: PyTorch's runs 3x faster than the product with ones
        # that numpy prefers (over 2,048 rows and more, on the CPU).
        self._put(k, self.xp.sum(M, axis=axis), accumulate)

    def _put(self, k, product, accumulate):
        self.parts[k] = self.parts[k] + product if accumulate else product

    def flat(self):
        xp = self.xp
        return xp.concat([xp.reshape(part, (-1,)) for part in self.parts])


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

    def value(self, theta, ops=NUMPY):
        """``reg * ||theta[:size]||^2``: a float, or a 0-d array off numpy."""
        if not self.reg:
            return 0.0
        penalized = theta[: self.size]
        return self.reg * ops.dot(penalized, penalized)

    def add_gradient(self, theta, grad, ops=NUMPY):
        """Add ``2 * reg * theta`` to ``grad`` on the prefix, in place."""
        if not self.reg:
            return
        size, factor = self.size, 2 * self.reg
        if ops.is_numpy:  # into the prefix's view, through kept scratch
            tmp = self._scratch
            if tmp is None or tmp.dtype != theta.dtype or tmp.size < size:
                tmp = self._scratch = np.empty(size, dtype=theta.dtype)
            ops.add_scaled(grad[:size], factor, theta[:size], tmp[:size])
        elif size == theta.shape[0]:  # the whole vector, in place
            ops.add_scaled(grad, factor, theta)
        else:  # a prefix: item assignment, which every namespace supports
            grad[:size] += factor * theta[:size]


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
    ops : NumpyOps or ArrayAPIOps
        The array namespace and device of ``theta`` and the data (see
        :mod:`sk_twolayer._namespace`). Off numpy, the loss is a 0-d array
        on the device, so that a training loop reads it only when it wants.
    """

    def __init__(self, layout, reg=0.0, penalize_bias=True, activation="relu",
                 block_rows=None, ops=NUMPY):
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
        self.ops = ops
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
        return _rows_in_budget(row_bytes, n_rows, self.ops)

    def _buffer(self, name, *shape, fill=None):
        """A C-contiguous view of ``shape`` on a flat buffer kept across calls.

        With ``fill``, a new buffer is filled once and must never be written
        to. An all-zero one comes from calloc, so its pages usually stay
        unmapped; the memory budget counts it anyway.

        Off numpy there are no kept buffers (the primitives there return new
        arrays): the result is None.
        """
        if not self.ops.is_numpy:
            return None
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < size:
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
        self.penalty.add_gradient(theta, grad, self.ops)
        return loss + self.penalty.value(theta, self.ops), grad

    def data_loss_gradient(self, theta, X, y, sample_weight=None, grad=None,
                           weight_sum=None, kernels=None):
        """The weighted mean log loss and its gradient, without the penalty.

        Same parameters and returns as :meth:`loss_gradient`. Off numpy,
        ``grad`` is ignored and a new gradient is returned, and the loss is
        a 0-d array on the device: nothing is read back to the host.

        ``kernels`` (from :func:`sk_twolayer._fast.for_minibatches`, which
        the minibatch solvers pass) runs what lies between the two large
        products of a ReLU network in one compiled pass
        (:func:`sk_twolayer._fast.head`); the result is the same to
        rounding.

        ``weight_sum`` is the denominator of the weighted mean: by default
        the sum of ``sample_weight`` (N without weights). Rows that are one
        part of a larger data set pass the total of all the rows, and get
        their share of the mean over all of them: the shares of the parts
        add up to the mean, term for term as one evaluation computes it.
        """
        layout, ops = self.layout, self.ops
        W1, W2, b1, b2 = layout.unpack(theta, None if ops.is_numpy else ops.xp)
        if ops.is_numpy:
            if grad is None:
                grad = np.empty_like(theta)
            sink = _GradientViews(layout, grad)
        else:
            sink = _GradientParts(ops.xp)

        N = X.shape[0]
        if weight_sum is not None:
            weight_sum = float(weight_sum)
        elif sample_weight is None:
            weight_sum = float(max(N, 1))
        else:
            weight_sum = ops.total(sample_weight)
        if not ops.is_numpy and sample_weight is not None:
            # No branch on a device value: all-zero weights give a zero data
            # term and gradient through a clipped denominator, as below.
            weight_sum = ops.xp.clip(ops.xp.asarray(weight_sum, dtype=W1.dtype,
                                                    device=ops.device),
                                     min=float(np.finfo(layout.dtype).tiny))
        elif not (N > 0 and weight_sum > 0):
            # An empty batch, or one whose weights are all zero, carries no
            # data term: only the penalty remains, which keeps minibatch
            # training going.
            grad.fill(0)
            return 0.0, grad

        # dL/ds_i = w_i (p_i - onehot(y_i)) / sum(w): fold 1 / sum(w) in once.
        inv_weight_sum = 1.0 / weight_sum
        if ops.is_numpy:
            inv_weight_sum = layout.dtype.type(inv_weight_sum)
        data_loss = None
        if kernels is not None and self.activation == "relu" and ops.is_numpy:
            block = self._fused_block
            y = y if y.dtype == np.intp else y.astype(np.intp)
        else:
            block = self._block
        # The first block writes the gradient, later blocks add to it:
        # no zero-fill pass and no per-call temporaries of theta's size.
        blocks = _row_blocks(N, self._rows_per_block(N))
        for i, rows in enumerate(blocks):
            if len(blocks) == 1:  # all the rows: no slicing (a CSR slice copies)
                Xb, yb, swb = X, y, sample_weight
            else:
                Xb = X[rows] if ops.is_numpy else X[rows, ...]
                yb = y[rows]
                swb = None if sample_weight is None else sample_weight[rows]
            block_loss = block(Xb, yb, swb, inv_weight_sum, W1, W2, b1, b2,
                               sink, accumulate=i > 0, kernels=kernels)
            data_loss = block_loss if i == 0 else data_loss + block_loss
        if ops.is_numpy:
            return data_loss / weight_sum, sink.flat()
        return data_loss * inv_weight_sum, sink.flat()

    def _rows(self, n):
        """``arange(n)``, kept across calls for the fancy indexing by label."""
        rows = self._buffers.get("rows")
        if rows is None or rows.size < n:
            rows = self._buffers["rows"] = np.arange(n)
        return rows[:n]

    def _fused_block(self, Xb, yb, swb, inv_weight_sum, W1, W2, b1, b2, sink,
                     accumulate=False, kernels=None):
        """:meth:`_block` for the ReLU network on numpy, with the compiled
        :func:`sk_twolayer._fast.head` between the two large products."""
        n = Xb.shape[0]
        D, H, C = self.layout.n_features, self.layout.n_hidden, self.layout.n_classes
        A = self.ops.matmul(Xb, W1, out=self._buffer("A", n, H))
        _, gW2, gb1, gb2 = sink.views
        swb = (self._buffer("no_weights", 0) if swb is None
               else swb.astype(A.dtype, copy=False))
        block_loss = kernels.head(
            A, b1, W2, b2, yb, swb, float(inv_weight_sum),
            self._buffer("W2T", C, H), self._buffer("gW2T", C, H),
            self._buffer("h", H), self._buffer("s", C), gW2, gb1, gb2, accumulate)
        # A now holds dL/dA: dW1 = X^T dA (D, H)
        sink.add(0, Xb.T, A, accumulate, self._buffer("gW1", D, H))
        return block_loss

    def _block(self, Xb, yb, swb, inv_weight_sum, W1, W2, b1, b2, sink,
               accumulate=False, kernels=None):
        """Forward and backward pass over one block of rows.

        Writes the gradient of the block into ``sink`` (adds to it when
        ``accumulate``) and returns the weighted sum of the per-sample log
        losses in the block.
        """
        ops = self.ops
        n = Xb.shape[0]
        H, C = self.layout.n_hidden, self.layout.n_classes
        rows = self._rows(n) if ops.is_numpy else None

        # ---- forward
        A = ops.affine(Xb, W1, b1, out=self._buffer("A", n, H))  # (n, H): f
        A = _activate(ops, A, self.activation,
                      self._buffer("zeros", n, H, fill=0))  # A = h
        # Scores are kept transposed, one row per class: (C, n). With few
        # classes, reductions over a sample's scores then run along the long
        # axis, which numpy vectorizes (a third faster at batch 200).
        ST = ops.affine(W2.T, A.T, b2[:, None], out=self._buffer("S", C, n))

        # ---- log loss, stable for any size of score: shift by the row max
        per_sample = self._buffer("per_sample", 2 * n)
        row_max = ops.max(ST, 0, out=None if per_sample is None else per_sample[:n])
        ST -= row_max
        true_scores, where = ops.pick(ST, yb, rows)  # s_iy - max_i, (n,)
        ST = ops.exp(ST, out=ST)
        row_sum = ops.sum(ST, 0, out=None if per_sample is None else per_sample[n:])
        # l_i = log sum exp(s_i) - s_iy; row_sum is in [1, C]: log never sees 0
        losses = ops.xp.log(row_sum)
        losses -= true_scores
        if swb is None:
            block_loss = ops.total(losses)
            scale = inv_weight_sum
        else:
            block_loss = ops.dot(swb, losses)
            scale = swb * inv_weight_sum

        # ---- backward, reusing the forward values in place
        # dscores = w_i (softmax - onehot) / sum(w): exp(s) times
        # (w_i / sum(w)) / row_sum, then the one-hot part subtracted.
        row_sum = ops.divide(scale, row_sum, out=row_sum)
        ST *= row_sum
        ST = ops.subtract_at(ST, where, scale)
        S = ST.T  # (n, C)
        ones = self._buffer("ones", n, fill=1)
        # dW2 = h^T dscores (H, C), db2 = sum_i dscores
        sink.add(1, A.T, S, accumulate, self._buffer("gW2", H, C),
                 via_transpose=True)
        sink.add_sum(3, ST, 1, ones, accumulate, self._buffer("gb2", C))
        # dh = dscores W2^T (n, H); df = dh * f'(f), f' read off h
        dH = ops.matmul(S, W2.T, out=self._buffer("dH", n, H))
        dH = _backprop_activation(ops, dH, A, self.activation)
        # dW1 = X^T df (D, H), db1 = sum_i df
        sink.add(0, Xb.T, dH, accumulate,
                 self._buffer("gW1", self.layout.n_features, H))
        sink.add_sum(2, dH, 0, ones, accumulate, self._buffer("gb1", H))
        return block_loss

    def evaluate(self, theta, X, y, sample_weight=None, weight_sum=None):
        """Weighted mean log loss (no penalty) and accuracy, from one forward pass.

        Both are read back to the host as floats. ``weight_sum`` is the
        denominator of both means, as in :meth:`data_loss_gradient`.
        """
        ops = self.ops
        xp = ops.xp
        W1, W2, b1, b2 = self.layout.unpack(theta, None if ops.is_numpy else xp)
        S = forward(W1, b1, W2, b2, X, self.activation, ops)
        correct = xp.argmax(S, axis=1) == y
        losses = -xp.take_along_axis(log_softmax(S, ops), y[:, None], axis=1)[:, 0]
        if sample_weight is None:
            sample_weight = xp.ones_like(losses)
        total = ops.total(sample_weight) if weight_sum is None else weight_sum
        return (ops.to_float(ops.dot(sample_weight, losses) / total),
                ops.to_float(ops.dot(sample_weight, ops.as_float(correct, losses.dtype))
                             / total))


def _scores_block(ops, Xb, W1, b1, W2, b2, activation, out=None):
    """``f(Xb @ W1 + b1) @ W2 + b2`` for one block of rows, into ``out``."""
    A = ops.affine(Xb, W1, b1)  # (n, H), a new array
    A = _activate(ops, A, activation)
    return ops.affine(A, W2, b2, out=out)


def forward(W1, b1, W2, b2, X, activation="relu", ops=NUMPY):
    """Scores of the network, ``f(X @ W1 + b1) @ W2 + b2``, shape (N, C).

    Rows are processed in blocks so that the hidden layer never needs more
    scratch memory than the working-memory budget.
    """
    N, (H, C) = X.shape[0], W2.shape
    if not ops.is_numpy:
        itemsize = ops.numpy_dtype(X).itemsize
        blocks = _row_blocks(N, _rows_in_budget((H + C) * itemsize, N, ops))
        return ops.xp.concat([
            _scores_block(ops, X[rows, ...], W1, b1, W2, b2, activation)
            for rows in blocks
        ], axis=0)
    dtype = np.result_type(X.dtype, W1.dtype)
    rows_per_block = _rows_in_budget((H + C) * dtype.itemsize, N)
    if rows_per_block >= N:  # one block (one-row predictions among them)
        return _scores_block(ops, X, W1, b1, W2, b2, activation)
    S = np.empty((N, C), dtype=dtype)
    for rows in _row_blocks(N, rows_per_block):
        _scores_block(ops, X[rows], W1, b1, W2, b2, activation, out=S[rows])
    return S


def log_softmax(S, ops=NUMPY):
    """Row-wise ``log softmax(S)``, shifted by the row maximum (a new array)."""
    xp = ops.xp
    S = S - xp.max(S, axis=1, keepdims=True)
    S -= xp.log(xp.sum(xp.exp(S), axis=1, keepdims=True))
    return S


def softmax_inplace(S, ops=NUMPY):
    """Row-wise softmax of ``S``, shifted by the row maximum; in place on numpy."""
    if ops.is_numpy:  # array methods: a few microseconds less per call
        S -= S.max(axis=1, keepdims=True)
        np.exp(S, out=S)
        S /= S.sum(axis=1, keepdims=True)
        return S
    xp = ops.xp
    S -= xp.max(S, axis=1, keepdims=True)
    S = xp.exp(S)
    S /= xp.sum(S, axis=1, keepdims=True)
    return S


def _as_array(value, ops, dtype=None):
    """``value`` as an array of ``ops``'s namespace and device."""
    if ops.is_numpy:
        return np.asarray(value, dtype=dtype)
    if dtype is None:
        return ops.xp.asarray(value, device=ops.device)
    return ops.xp.asarray(value, dtype=dtype, device=ops.device)


def _check_param(name, value, shape, dtype, ops=NUMPY):
    value = _as_array(value, ops)
    if tuple(value.shape) != shape:
        raise ValueError(
            f"{name} has shape {tuple(value.shape)}, but the other arguments "
            f"need {shape}."
        )
    return _as_array(value, ops, dtype)


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
    ops = ops_for(X, W1, b1, W2, b2, y, sample_weight)
    xp = None if ops.is_numpy else ops.xp
    if sp.issparse(X):
        X = sp.csr_array(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
    elif xp is None:
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
    elif X.dtype not in (xp.float32, xp.float64):
        X = xp.astype(X, max_precision_float_dtype(xp, ops.device))
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional, got shape {tuple(X.shape)}.")
    dtype = ops.numpy_dtype(X)
    W1 = _as_array(W1, ops)
    if W1.ndim != 2:
        raise ValueError(f"W1 must be 2-dimensional, got shape {tuple(W1.shape)}.")
    W2 = _as_array(W2, ops)
    if W2.ndim != 2:
        raise ValueError(f"W2 must be 2-dimensional, got shape {tuple(W2.shape)}.")
    D, H = W1.shape
    C = W2.shape[1]
    if X.shape[1] != D:
        raise ValueError(f"X has {X.shape[1]} features, but W1 expects {D}.")
    layout = ParamLayout(D, H, C, dtype)
    theta = layout.pack(
        _check_param("W1", W1, (D, H), X.dtype, ops),
        _check_param("W2", W2, (H, C), X.dtype, ops),
        _check_param("b1", b1, (H,), X.dtype, ops),
        _check_param("b2", b2, (C,), X.dtype, ops),
        xp=xp,
    )
    y = _as_array(y, ops)
    if tuple(y.shape) != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},), got {tuple(y.shape)}.")
    integral = (np.issubdtype(y.dtype, np.integer) if xp is None
                else xp.isdtype(y.dtype, "integral"))
    if X.shape[0] and (not integral or int(ops.xp.min(y)) < 0
                       or int(ops.xp.max(y)) >= C):
        raise ValueError(f"y must hold integer class indices in [0, {C}).")
    if sample_weight is not None:
        sample_weight = _as_array(sample_weight, ops, X.dtype)
        if tuple(sample_weight.shape) != (X.shape[0],):
            raise ValueError(
                f"sample_weight must have shape ({X.shape[0]},), "
                f"got {tuple(sample_weight.shape)}."
            )
    loss_fn = TwoLayerLoss(layout, reg, penalize_bias, activation, ops=ops)
    loss, grad = loss_fn.loss_gradient(theta, X, y, sample_weight)
    gW1, gW2, gb1, gb2 = layout.unpack(grad, xp)
    return float(loss), {"W1": gW1, "b1": gb1, "W2": gW2, "b2": gb2}
