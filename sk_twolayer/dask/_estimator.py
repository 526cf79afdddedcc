"""The estimator: :class:`DaskTwoLayerSoftmaxClassifier`.

The in-memory estimator, whose ``fit`` reads Dask input through
:class:`~._rows.DaskRows`, and whose prediction methods also take Dask
input and return lazy Dask arrays. It has no maths of its own.
"""

import copy
import inspect
import textwrap

import dask
import dask.array as da
import distributed
import numpy as np
from dask.base import tokenize
from sklearn.utils.validation import check_is_fitted, validate_data

from .._classifier import TwoLayerSoftmaxClassifier
from . import _worker
from ._faults import check_running, translated
from ._inputs import is_dask, meta, row_blocks
from ._rows import DaskRows


# ------------------------------------------------------------- the estimator
def _also_lazy(name, shape_and_dtype):
    """The in-memory estimator's method ``name``, also on Dask input.

    On in-memory input it is that method; on a Dask array or dataframe it
    returns a lazy Dask array with the row blocks of X, whose width and
    dtype ``shape_and_dtype(estimator)`` gives. Its docstring is the
    in-memory method's, with Dask input and output added.
    """
    in_memory = getattr(TwoLayerSoftmaxClassifier, name)

    def method(self, X):
        if not is_dask(X):
            return in_memory(self, X)
        return self._lazy(X, name, *shape_and_dtype(self))

    method.__name__ = name
    method.__qualname__ = f"DaskTwoLayerSoftmaxClassifier.{name}"
    doc = in_memory.__doc__
    if doc:  # (stripped under python -OO)
        summary, rest = inspect.cleandoc(doc).split("\n\n", 1)
        doc = (
            f"{summary}\n\nOn a Dask array or dataframe the result is a lazy "
            "Dask array with\nthe row blocks of X (those with rows), computed on the workers."
            f"\n\n{rest}\n"
        ).replace("X : {array-like, sparse matrix}",
                  "X : {array-like, sparse matrix, Dask array, Dask dataframe}"
                  ).replace(": ndarray of shape", ": ndarray or Dask array of shape")
    method.__doc__ = doc
    return method


def _section(obj, name):
    """The entries of section ``name`` of ``obj``'s numpydoc docstring.

    The Dask estimator's parameters and attributes are the in-memory
    estimator's: its docstring takes them from there rather than repeat them.
    (Empty where docstrings are stripped, ``python -OO``.)
    """
    if not obj.__doc__:
        return ""
    # Python 3.13 strips docstrings' indentation, earlier versions keep it.
    lines = inspect.cleandoc(obj.__doc__).splitlines()
    start = lines.index(name) + 2  # past the title and its underline
    end = start
    while end < len(lines) and not (
        lines[end] and not lines[end][0].isspace()
        and end + 1 < len(lines) and set(lines[end + 1].strip()) == {"-"}
    ):
        end += 1
    return textwrap.indent("\n".join(lines[start:end]).rstrip(), "    ")


class DaskTwoLayerSoftmaxClassifier(TwoLayerSoftmaxClassifier):
    __doc__ = r"""Two-layer softmax network fitted data-parallel on a Dask cluster.

    The parameters, the objective and the fitted attributes are those of
    :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`:

    .. math::

        \frac{\sum_i w_i\,(-\log p_{y_i}(x_i))}{\sum_i w_i}
        + \lambda\left(\|W_1\|^2 + \|W_2\|^2 + \|b_1\|^2 + \|b_2\|^2\right),

    with the sums over all rows of all blocks. On in-memory input (numpy,
    pandas, sparse) it fits exactly as that estimator does.

    On a Dask array chunked by rows, or a Dask dataframe (``X``), with Dask
    arrays or series for ``y`` and ``sample_weight``, ``solver="lbfgs"``
    runs data-parallel: the blocks are checked and prepared once on the
    workers (blocks without rows are fine); scipy's L-BFGS iterate stays
    here, and each evaluation sends the parameters out once, evaluates the
    loss and gradient on the workers that hold the blocks, and sums them in
    a tree on the workers. With the same ``random_state`` the fit (without
    early stopping) is the in-memory fit up to rounding, whatever the
    chunking and the number of workers. A worker lost during the fit loses
    nothing: its blocks are recomputed from their source. ``"sgd"`` and
    ``"adam"`` do not run data-parallel: stream the blocks through
    :meth:`partial_fit` with :class:`dask_ml.wrappers.Incremental`. The
    settings of the data-parallel fit are in ``dask.config``, under
    ``sk-twolayer.dask``.

    With ``early_stopping=True`` each row is held out with probability
    ``validation_fraction`` on the worker that holds it, the same rows for
    any chunking; the count is ``validation_fraction`` of the rows up to
    sampling noise, and the split differs from the in-memory (stratified)
    one.

    After the fit the weights are numpy arrays; the prediction methods take
    Dask input and return lazy Dask arrays with X's row blocks, which hold
    the model in their graph and compute on whichever client computes them;
    :meth:`score` runs on the estimator's ``client`` where one is set; and
    :meth:`to_local` returns the plain estimator (for ONNX, skops, pickle).

    Parameters
    ----------
{parameters}

    Attributes
    ----------
{attributes}
    client : distributed.Client or None
        The Dask client to fit and score with, settable
        (``clf.client = client``); None (the default) uses the current one,
        :func:`distributed.default_client`. Lazy predictions do not depend
        on it: they compute wherever they are computed. It is not a
        parameter: it is neither pickled nor carried over by
        :func:`~sklearn.base.clone`, whose clones use the current client.

    See Also
    --------
    sk_twolayer.TwoLayerSoftmaxClassifier : The in-memory estimator.
    dask_ml.wrappers.Incremental : Streams blocks through ``partial_fit``.

    Examples
    --------
    >>> import dask.array as da
    >>> from distributed import Client, LocalCluster
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
    ...                        dashboard_address=None)
    >>> client = Client(cluster)
    >>> dX, dy = da.from_array(X, chunks=50), da.from_array(y, chunks=50)
    >>> clf = DaskTwoLayerSoftmaxClassifier(hidden_size=8, random_state=0).fit(dX, dy)
    >>> clf.predict(dX[:3]).compute()
    array([0, 0, 0])
    >>> float(clf.score(dX, dy)) > 0.95
    True
    >>> client.close(); cluster.close()
    """.replace("{parameters}", _section(TwoLayerSoftmaxClassifier, "Parameters")
                ).replace("{attributes}", _section(TwoLayerSoftmaxClassifier, "Attributes"))

    # ------------------------------------------------------ scikit-learn API
    @property
    def client(self):
        """The Dask client to fit with; None (the default) uses the current one."""
        return getattr(self, "_client", None)

    @client.setter
    def client(self, client):
        if client is not None and not isinstance(client, distributed.Client):
            raise TypeError(
                f"client must be a distributed.Client or None, got {client!r}."
            )
        self._client = client

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_client", None)  # a connection, not a part of the model
        return state

    def to_local(self):
        """The fitted model as a plain :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`.

        Its parameters and fitted attributes are copies of this model's; it
        exports to ONNX, persists with skops and pickles as any in-memory
        model.

        Returns
        -------
        model : TwoLayerSoftmaxClassifier
            A fitted in-memory model with this model's parameters and weights.
        """
        check_is_fitted(self)
        params = self.get_params(deep=False)
        local = TwoLayerSoftmaxClassifier(**params)
        for name, value in vars(self).items():
            if name not in params and name != "_client":
                setattr(local, name, copy.deepcopy(value))
        return local

    # ---------------------------------------------------------------- fitting
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None):
        """Fit the network, data-parallel on Dask input.

        On a Dask array chunked by rows, or a Dask dataframe, the row blocks
        are validated and persisted once on the workers of the client's
        cluster, and L-BFGS evaluates the loss and gradient there; on
        in-memory input the fit is that of
        :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`.

        Parameters
        ----------
        X : {array-like, sparse matrix, Dask array, Dask dataframe} of shape \
                (n_samples, n_features)
            Training data. A Dask array must be chunked by rows only.
        y : array-like, Dask array or Dask series of shape (n_samples,)
            Target labels: with a Dask array X, a Dask array (or an in-memory
            one); with a Dask dataframe X, a Dask series of the same
            dataframe.
        sample_weight : array-like, Dask array or Dask series of shape \
                (n_samples,), default=None
            Non-negative sample weights, given like ``y``.
        X_val : {array-like, sparse matrix, Dask array, Dask dataframe} of \
                shape (n_val, n_features), default=None
            Validation data, used instead of holding out
            ``validation_fraction`` of ``X``; with Dask input it is kept on
            the workers too.
        y_val : array-like, Dask array or Dask series of shape (n_val,), \
                default=None
            Validation labels; required with ``X_val``.
        sample_weight_val : array-like, Dask array or Dask series of shape \
                (n_val,), default=None
            Weights of the validation samples.

        Returns
        -------
        self : DaskTwoLayerSoftmaxClassifier
            The fitted estimator, with numpy weights.
        """
        return super().fit(X, y, sample_weight, X_val=X_val, y_val=y_val,
                           sample_weight_val=sample_weight_val)

    def _training_rows(self, X, y, sample_weight, incremental, classes, first_call):
        inputs = {"X": X, "y": y, "sample_weight": sample_weight}
        if not is_dask(X):
            dask_inputs = [name for name, value in inputs.items() if is_dask(value)]
            if dask_inputs:
                raise TypeError(
                    f"{', '.join(dask_inputs)} is a Dask collection but X is in "
                    "memory: pass X as a Dask array or dataframe too, or compute "
                    f"{dask_inputs[0]}."
                )
            return super()._training_rows(X, y, sample_weight, incremental,
                                          classes, first_call)
        if incremental:
            raise TypeError(
                "partial_fit takes the blocks of a Dask array one by one, in "
                "memory: wrap the model in dask_ml.wrappers.Incremental, whose "
                "partial_fit passes each block of X to this partial_fit."
            )
        if self.solver != "lbfgs":
            raise ValueError(
                f"solver={self.solver!r} does not run data-parallel: minibatch "
                "steps depend on each other, so one model cannot take them on "
                "many workers at once. Use solver='lbfgs', or stream the blocks "
                "through partial_fit with dask_ml.wrappers.Incremental("
                f"TwoLayerSoftmaxClassifier(solver={self.solver!r}), ...)."
            )
        return DaskRows(self, self._current_client(), X, y, sample_weight,
                        first_call)

    def _fit(self, X, y, sample_weight, incremental, classes=None,
             validation=(None, None, None)):
        if not is_dask(X) or incremental:
            return super()._fit(X, y, sample_weight, incremental, classes,
                                validation)
        # A scheduler lost during the fit is said as such, whatever failed.
        with translated(self._current_client()):
            return super()._fit(X, y, sample_weight, incremental, classes,
                                validation)

    def _current_client(self):
        """The estimator's client, else the current one; a clear error where
        there is none, or it is closed."""
        if self.client is not None:
            check_running(self.client)
            return self.client
        try:
            return distributed.default_client()
        except ValueError:
            raise ValueError(
                "Fitting on Dask input needs a running Dask client, and none "
                "was found. Start one before fitting, e.g. "
                "`from distributed import Client; client = Client()` for a "
                "local cluster, or `Client('tcp://scheduler-host:8786')` for a "
                "running one; or set the estimator's client attribute."
            ) from None

    # ------------------------------------------------------------- prediction
    def _lazy(self, X, method, columns, dtype):
        """``method`` of the local model over the row blocks of X, lazily.

        ``columns`` is the width of its output (None for one value per row).
        """
        check_is_fitted(self)
        validate_data(self, meta(X), reset=False, ensure_min_samples=0,
                      dtype=None)
        model = self._model_in_graph()
        blocks = row_blocks(X)
        shape = () if columns is None else (columns,)
        empty = np.empty((0,) + shape, dtype=dtype)  # (for blocks without rows)
        return da.concatenate([
            da.from_delayed(
                dask.delayed(_worker.apply, pure=True)(model, method, block, empty),
                shape=(n,) + shape, dtype=dtype)
            for block, n in zip(blocks.X, blocks.lengths)
        ])

    def _model_in_graph(self):
        """The local model as one key of a task graph, which every task of a
        prediction or score depends on.

        The model travels in the graph (once, however many blocks), so that
        a lazy result belongs to no cluster: whichever client computes it
        runs it, as any Dask collection. The key is a hash of what the
        predictions depend on, so that two graphs of the same model share it.
        """
        local = self.to_local()
        token = tokenize(local.coefs_, local.intercepts_, local.classes_,
                         local.activation, getattr(local, "feature_names_in_", None))
        return dask.delayed(local, traverse=False, name=f"sk-twolayer-model-{token}")

    predict = _also_lazy("predict", lambda est: (None, est.classes_.dtype))
    predict_proba = _also_lazy(
        "predict_proba", lambda est: (est.classes_.size, est.coefs_[0].dtype))
    predict_log_proba = _also_lazy(
        "predict_log_proba", lambda est: (est.classes_.size, est.coefs_[0].dtype))
    decision_function = _also_lazy(
        "decision_function",
        lambda est: (None if est.classes_.size == 2 else est.classes_.size,
                     est.coefs_[0].dtype))

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on ``X`` and ``y``, weighted by ``sample_weight``.

        Dask input is scored block by block on the workers (of the
        estimator's client, where one is set); only two numbers per block
        come back.

        Parameters
        ----------
        X : {array-like, sparse matrix, Dask array, Dask dataframe} of shape \
                (n_samples, n_features)
            Test samples.
        y : array-like, Dask array or Dask series of shape (n_samples,)
            True labels, with the row blocks (or partitions) of X.
        sample_weight : array-like, Dask array or Dask series of shape \
                (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            The weighted fraction of correct predictions.
        """
        if not is_dask(X):
            return super().score(X, y, sample_weight)
        check_is_fitted(self)
        validate_data(self, meta(X), reset=False, ensure_min_samples=0, dtype=None)
        model = self._model_in_graph()
        blocks = row_blocks(X, y, sample_weight)
        parts = [
            dask.delayed(_worker.hits, pure=True)(
                model, xb, blocks.y[i],
                None if blocks.sample_weight is None else blocks.sample_weight[i])
            for i, xb in enumerate(blocks.X)
        ]
        if self.client is None:  # (the current scheduler, whatever it is)
            parts = dask.compute(*parts)
        else:
            with translated(self._current_client()):
                parts = self.client.gather(self.client.compute(parts))
        hits, total = np.sum(parts, axis=0)
        return float(hits / total)
