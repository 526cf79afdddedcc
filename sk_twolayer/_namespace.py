"""The few array primitives that differ between numpy and other namespaces.

The maths (:mod:`sk_twolayer._loss`) and the update rules
(:mod:`sk_twolayer._solvers`) are written once, over these primitives. Each
primitive takes an optional ``out`` buffer and returns its result:

- :class:`NumpyOps` writes into ``out`` (``out=`` ufuncs, BLAS products into
  kept buffers, the fancy-indexing tricks the hot path was tuned with), so
  the numpy path allocates nothing per call;
- :class:`ArrayAPIOps` ignores ``out`` and returns new arrays, using only
  functions of the Array API standard, so that the same code runs on
  PyTorch (CPU or GPU), CuPy and array-api-strict;
- :class:`TorchOps` is :class:`ArrayAPIOps` with a few of PyTorch's fused
  kernels (``addmm``, ``index_select``, ``scatter_add_``, ``add_`` with a
  factor, the ReLU's backward), because on a GPU small steps are bound by
  the number of kernels.

In-place operators (``A += b``, ``A *= s``) are part of the standard, so the
shared code uses them directly on arrays it owns.

On numpy, :meth:`NumpyOps.chunked` also runs an elementwise kernel over a
long vector chunk by chunk, so that the passes of an update rule over one
chunk find it in cache. (On threads too, it ran slower inside a fit: a
helper thread shares its core with the BLAS thread that still spins after
the step's matrix products.)
"""

import threading

import numpy as np
import scipy.sparse as sp

# Bytes of one vector's chunk in NumpyOps.chunked. Large, so that numpy's
# per-call overhead and the threads' hand-offs of the GIL stay small against
# the work: on 2 cores, Adam's update over 200k parameters ran 1.5-2x slower
# in chunks of 32 KiB (which stay in L2 through all the passes) than in
# chunks of 512 KiB.
CHUNK_BYTES = 512 * 1024




class NumpyOps:
    """Primitives on numpy arrays (and a scipy sparse ``X``)."""

    is_numpy = True
    on_accelerator = False
    xp = np
    device = None

    # ------------------------------------------------------------ creation
    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def asarray(self, array, dtype=None):
        """A host (numpy) array in this namespace: itself, no copy."""
        return np.asarray(array, dtype=dtype)

    def to_numpy(self, array):
        return np.asarray(array)

    def to_float(self, scalar):
        return float(scalar)

    # ------------------------------------------------------------ products
    def affine(self, a, b, bias, out=None):
        """``a @ b + bias``; into ``out`` where given. ``a`` may be sparse."""
        product = self.matmul(a, b, out=out)
        product += bias
        return product

    def add_scaled(self, y, alpha, x, scratch):
        """``y += alpha * x`` in place, through ``scratch`` (x's shape)."""
        np.multiply(x, y.dtype.type(alpha), out=scratch)
        y += scratch
        return y

    def matmul(self, a, b, out=None):
        """``a @ b``; into ``out`` where given. ``a`` may be sparse."""
        if out is None:
            product = a @ b
            return product if type(product) is np.ndarray else np.asarray(product)
        if sp.issparse(a) or sp.issparse(b):
            out[...] = a @ b
            return out
        return np.matmul(a, b, out=out)

    def take_rows(self, X, idx, out=None):
        """Rows ``idx`` of ``X`` (copied into ``out`` for dense X)."""
        if sp.issparse(X):
            return X[idx]
        if out is None:
            return X[idx]
        # mode="clip": the indices are valid by construction, and the default
        # mode="raise" buffers `out` (a third slower on MNIST-sized rows).
        return np.take(X, idx, axis=0, out=out, mode="clip")

    def take(self, a, idx):
        return a[idx]

    def rows(self, X, rows):
        """The rows of ``X`` in the slice ``rows`` (a view where possible)."""
        return X[rows]

    def numpy_dtype(self, a):
        return a.dtype

    # ----------------------------------------------------- chunked kernels
    def chunked(self, kernel, size, dtype, n_scratch=0, breaks=()):
        """The sum of ``kernel(lo, hi, *scratch)`` over chunks of ``range(size)``.

        The chunks hold :data:`CHUNK_BYTES` of ``dtype`` each (fewer at the
        ends) and none straddles an index in ``breaks``. ``scratch`` are
        ``n_scratch`` arrays of the chunk's length, kept by the calling
        thread across calls.
        """
        dtype = np.dtype(dtype)
        step = max(1024, CHUNK_BYTES // dtype.itemsize)
        cuts = sorted({0, size, *(b for b in breaks if 0 < b < size)})
        scratch = _scratch(dtype, n_scratch, min(step, size))
        total = 0.0
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            for a in range(lo, hi, step):
                b = min(a + step, hi)
                value = kernel(a, b, *(buf[:b - a] for buf in scratch))
                if value is not None:
                    total += value
        return total

    # ---------------------------------------------------------- elementwise
    def exp(self, a, out=None):
        return np.exp(a, out=out)

    def multiply(self, a, b, out=None):
        return np.multiply(a, b, out=out)

    def divide(self, a, b, out=None):
        return np.divide(a, b, out=out)

    def sqrt(self, a, out=None):
        return np.sqrt(a, out=out)

    # ------------------------------------------------------------ reductions
    def max(self, a, axis, out=None):
        return np.max(a, axis=axis, out=out)

    def sum(self, a, axis, out=None):
        return np.sum(a, axis=axis, out=out)

    def dot(self, a, b):
        """``sum(a * b)`` of two vectors, as a Python float."""
        return float(np.dot(a, b))

    def total(self, a):
        """``sum(a)`` of a vector, accumulated in float64, as a Python float."""
        return float(a.sum(dtype=np.float64))

    def as_float(self, mask, dtype):
        return mask.astype(dtype)

    def all_finite(self, a):
        return bool(np.isfinite(a).all())

    # -------------------------------------------------- one entry per column
    def pick(self, ST, y, rows):
        """``ST[y[i], i]`` for each column ``i`` of ``ST`` (C, n)."""
        flat_index = np.multiply(y, ST.shape[1], dtype=np.intp)
        flat_index += rows
        return ST.reshape(-1)[flat_index], flat_index

    def subtract_at(self, ST, where, values):
        """Subtract ``values[i]`` from ``ST[y[i], i]``, in place.

        ``where`` is the second result of :meth:`pick`.
        """
        ST.reshape(-1)[where] -= values
        return ST


class ArrayAPIOps:
    """Primitives in an Array API namespace ``xp``, on ``device``."""

    is_numpy = False

    def __init__(self, xp, device):
        self.xp = xp
        self.device = device
        # A GPU or other device with its own memory; the host's CPU devices
        # ("cpu" in PyTorch, array-api-strict's CPU_DEVICE) are not.
        self.on_accelerator = "cpu" not in str(device).lower()
        self._zeros = {}

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=dtype, device=self.device)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype, device=self.device)

    def asarray(self, array, dtype=None):
        """A numpy array (or scalar) moved to this namespace and device."""
        if dtype is not None and not isinstance(dtype, np.dtype):
            return self.xp.asarray(array, dtype=dtype, device=self.device)
        return self.xp.asarray(np.asarray(array, dtype=dtype), device=self.device)

    def to_numpy(self, array):
        from sklearn.utils._array_api import _convert_to_numpy

        return _convert_to_numpy(array, self.xp)

    def to_float(self, scalar):
        return float(scalar)

    def matmul(self, a, b, out=None):
        return a @ b

    def affine(self, a, b, bias, out=None):
        """``a @ b + bias`` (a new array)."""
        product = a @ b
        product += bias
        return product

    def add_scaled(self, y, alpha, x, scratch=None):
        """``y += alpha * x`` in place, ``y`` being a whole array.

        (The standard leaves in-place writes through a slice unspecified;
        numpy's and PyTorch's slices are views that take them.)
        """
        y += alpha * x
        return y

    def relu_backward(self, dH, h):
        """``dH`` where ``h > 0``, else 0 (a new array)."""
        # A 0-d zero rather than the scalar 0.0, which where() accepts only
        # from the 2024.12 standard on; made once per dtype.
        zero = self._zeros.get(dH.dtype)
        if zero is None:
            zero = self._zeros[dH.dtype] = self.xp.zeros((), dtype=dH.dtype,
                                                         device=self.device)
        return self.xp.where(h > 0, dH, zero)

    def take_rows(self, X, idx, out=None):
        return self.xp.take(X, idx, axis=0)

    def take(self, a, idx):
        return self.xp.take(a, idx, axis=0)

    def rows(self, X, rows):
        return X[rows, ...]

    def numpy_dtype(self, a):
        return np.dtype("float32" if a.dtype == self.xp.float32 else "float64")

    def exp(self, a, out=None):
        return self.xp.exp(a)

    def multiply(self, a, b, out=None):
        return a * b

    def divide(self, a, b, out=None):
        return a / b

    def sqrt(self, a, out=None):
        return self.xp.sqrt(a)

    def max(self, a, axis, out=None):
        return self.xp.max(a, axis=axis)

    def sum(self, a, axis, out=None):
        return self.xp.sum(a, axis=axis)

    def dot(self, a, b):
        """``sum(a * b)`` of two vectors, a 0-d array left on the device."""
        return a @ b

    def total(self, a):
        return self.xp.sum(a)

    def as_float(self, mask, dtype):
        return self.xp.astype(mask, dtype)

    def all_finite(self, a):
        return bool(self.xp.all(self.xp.isfinite(a)))

    def _one_hot(self, ST, y):
        C = ST.shape[0]
        classes = self.xp.arange(C, device=self.device)
        return self.xp.astype(classes[:, None] == y[None, :], ST.dtype)

    def pick(self, ST, y, rows):
        picked = self.xp.take_along_axis(ST, y[None, :], axis=0)[0, ...]
        return picked, y

    def subtract_at(self, ST, where, values):
        """``values`` (a vector, or one number for all) off ``ST[y[i], i]``."""
        if hasattr(values, "shape"):
            values = values[None, :]
        return ST - self._one_hot(ST, where) * values


class TorchOps(ArrayAPIOps):
    """:class:`ArrayAPIOps` with PyTorch's fused kernels where they help.

    On a GPU a minibatch step at batch 200 is bound by the number of kernel
    launches, not by arithmetic. The standard's functions sometimes take
    several: array_api_compat's ``take`` adds three kernels to make negative
    indices wrap, and the one-hot subtraction takes five. Here each of these
    primitives is one or two kernels, with the same results.
    """

    def __init__(self, xp, device):
        super().__init__(xp, device)
        import torch

        self._torch = torch
        # Label dtypes that index_select has no kernel for (uint16 labels
        # from a numpy y, say).
        self._no_index_select = {torch.uint16, torch.uint32, torch.uint64}

    def affine(self, a, b, bias, out=None):
        return self._torch.addmm(bias, a, b)

    def add_scaled(self, y, alpha, x, scratch=None):
        return y.add_(x, alpha=alpha)

    def relu_backward(self, dH, h):
        # The kernel of PyTorch's own ReLU backward: one pass, where the
        # comparison and select take two (and on the CPU 25x longer).
        return self._torch.ops.aten.threshold_backward(dH, h, 0)

    def take_rows(self, X, idx, out=None):
        return self._torch.index_select(X, 0, idx)

    def take(self, a, idx):
        if a.dtype in self._no_index_select:
            return a[idx]  # indexing covers the dtypes index_select lacks
        return self._torch.index_select(a, 0, idx)

    def pick(self, ST, y, rows):
        index = y[None, :]
        if index.dtype != self._torch.int64:  # what gather and scatter take
            index = index.to(self._torch.int64)
        return self._torch.gather(ST, 0, index)[0], index

    def subtract_at(self, ST, where, values):
        if hasattr(values, "shape"):
            return ST.scatter_add_(0, where, -values[None, :])
        # One number for all: scatter_'s scalar form (its reduce argument is
        # deprecated only with a tensor source).
        return ST.scatter_(0, where, -float(values), reduce="add")


_SCRATCH = threading.local()


def _scratch(dtype, count, length):
    """``count`` arrays of ``length`` kept by the calling thread."""
    kept = getattr(_SCRATCH, "arrays", None)
    if kept is None:
        kept = _SCRATCH.arrays = {}
    arrays = kept.get(dtype)
    if arrays is None or len(arrays) < count or arrays[0].shape[0] < length:
        arrays = kept[dtype] = [np.empty(length, dtype=dtype)
                                for _ in range(max(count, len(arrays or ())))]
    return arrays[:count]


NUMPY = NumpyOps()


def to_host(array):
    """A numpy copy of an array from another namespace; anything else as is.

    Lists, pandas objects and sparse matrices pass through unchanged, for
    scikit-learn's validation to handle as usual.
    """
    if array is None or isinstance(array, np.ndarray):
        return array
    array = detached(array)
    compat = array_api_compat()
    if compat is None or not compat.is_array_api_obj(array):
        return array
    from sklearn.utils._array_api import _convert_to_numpy

    return _convert_to_numpy(array, compat.array_namespace(array))


def detached(array):
    """``array`` without autograd history: a PyTorch tensor that requires
    grad is detached (a view, no copy); anything else is returned as is.

    The fit works on the values only, so that fitted weights never carry
    autograd state and the user's tensor gets no gradient from us.
    """
    if getattr(array, "requires_grad", False):
        return array.detach()
    return array


def move_to(ops, array, name):
    """``array`` in the namespace and on the device of ``ops``.

    A numpy target takes any array through :func:`to_host` (sparse
    matrices and array-likes pass through to scikit-learn's validation);
    another namespace takes arrays through the host, unless the array is
    there already. Sparse input cannot move off numpy: that is an error
    that names the argument.
    """
    if array is None:
        return None
    array = detached(array)
    if ops.is_numpy:
        return to_host(array)
    if sp.issparse(array):
        raise TypeError(
            f"{name} is a sparse matrix, but the model trains on "
            f"{ops.xp.__name__} arrays on {ops.device}: pass {name} as a dense "
            "array of that namespace."
        )
    compat = array_api_compat()
    if (compat.is_array_api_obj(array) and not isinstance(array, np.ndarray)
            and compat.array_namespace(array) is ops.xp
            and compat.device(array) == ops.device):
        return array
    return ops.asarray(to_host(array))


def array_api_compat():
    """array_api_compat: scikit-learn's vendored copy (1.7 and later), else
    the package itself; None where neither is there (then no array can be
    from another namespace)."""
    try:
        from sklearn.externals import array_api_compat as compat
    except ImportError:  # pragma: no cover - scikit-learn 1.6
        try:
            import array_api_compat as compat
        except ImportError:
            return None
    return compat


def ops_for(*arrays):
    """The primitives for the namespace and device of ``arrays``.

    numpy arrays, scipy sparse matrices and array-likes get :data:`NUMPY`;
    other namespaces are recognized only under scikit-learn's
    ``array_api_dispatch``, as scikit-learn's own estimators do.
    """
    from sklearn import get_config
    from sklearn.utils._array_api import get_namespace_and_device

    if not get_config()["array_api_dispatch"]:
        return NUMPY  # the common case, without inspecting the arrays
    xp, is_array_api, device = get_namespace_and_device(*arrays)
    if not is_array_api or _is_numpy(xp):
        return NUMPY
    if array_api_compat().is_torch_namespace(xp):
        return TorchOps(xp, device)
    return ArrayAPIOps(xp, device)


def max_precision_float_dtype(xp, device):
    """float64, or float32 on a device without it (Apple's MPS)."""
    try:
        from sklearn.utils._array_api import _max_precision_float_dtype
    except ImportError:  # pragma: no cover - scikit-learn without the helper
        return xp.float64
    return _max_precision_float_dtype(xp, device)


def _is_numpy(xp):
    """numpy itself, or array_api_compat's wrapper of it."""
    from sklearn.utils._array_api import _is_numpy_namespace

    return _is_numpy_namespace(xp)
