"""The scikit-learn estimator: validation, labels and wiring. No maths here."""

import contextlib
import copy
import inspect
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, compute_class_weight
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

try:  # scikit-learn >= 1.8: fit and predict in one namespace, or a clear error
    from sklearn.utils._array_api import check_same_namespace
except ImportError:  # pragma: no cover - older scikit-learn

    def check_same_namespace(X, estimator, *, attribute, method):
        """Stand-in on older scikit-learn, which has no such check."""


try:  # scikit-learn >= 1.9: the callback API (set_callbacks, ProgressBar, ...)
    from sklearn.callback import CallbackSupportMixin
except ImportError:  # pragma: no cover - older scikit-learn has no callbacks

    class CallbackSupportMixin:
        """Stand-in on scikit-learn < 1.9, which has no callback API."""


from . import _solvers
from ._loss import ACTIVATIONS, TwoLayerLoss, forward, log_softmax, softmax_inplace
from ._namespace import (
    array_api_compat,
    detached,
    max_precision_float_dtype,
    move_to,
    ops_for,
    to_host,
)
from ._params import ParamLayout
from ._warnings import warn


# Below this many held-out samples, a validation accuracy moves in steps too
# coarse to detect improvement, so early stopping is switched off with a
# warning (it would also make tiny fits depend on which rows were held out).
MIN_VALIDATION_SAMPLES = 10


# Attributes that scikit-learn's callback API sets during a fit and removes
# after it (in _fit_context), whatever the outcome.
_CALLBACK_MACHINERY = ("_callback_fit_ctx", "_skl_callbacks_to_teardown")


@contextlib.contextmanager
def _rollback_on_error(estimator):
    """Restore every attribute of ``estimator`` if the body raises.

    Fitting never modifies arrays that an earlier fit left behind (it works on
    copies and assigns at the end), so a shallow snapshot of ``__dict__`` is
    enough to leave a fitted model exactly as it was.
    """
    snapshot = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        # scikit-learn's callback machinery, set up during this fit, must
        # survive so that its teardown (after fit) still runs.
        machinery = {k: v for k, v in estimator.__dict__.items()
                     if k in _CALLBACK_MACHINERY}
        estimator.__dict__.clear()
        estimator.__dict__.update(snapshot, **machinery)
        raise


# scikit-learn >= 1.9 rejects all-zero sample weights in _check_sample_weight
# unless told otherwise; the estimator checks them itself (partial_fit allows them).
_ALLOW_ZERO_WEIGHTS = (
    {"allow_all_zero_weights": True}
    if "allow_all_zero_weights" in inspect.signature(_check_sample_weight).parameters
    else {}
)


def _float_dtypes(ops):
    """The float dtypes X may keep, in its namespace (no float64 on MPS)."""
    if ops.is_numpy:
        return [np.float64, np.float32]
    xp = ops.xp
    if max_precision_float_dtype(xp, ops.device) == xp.float32:
        return [xp.float32]
    return [xp.float64, xp.float32]


def _astype(ops, X, dtype):
    """X in ``dtype`` (of X's namespace), without a copy where it already is."""
    if ops.is_numpy:
        return X.astype(dtype, copy=False)
    return X if X.dtype == dtype else ops.xp.astype(X, dtype)


def _copy_to(ops, theta):
    """A copy of ``theta`` in the namespace and on the device of ``ops``."""
    if isinstance(theta, np.ndarray):
        return theta.copy() if ops.is_numpy else ops.asarray(theta)
    return _solvers._copy(theta)


def _check_continues_in_place(estimator, ops):
    """A warm start or partial_fit stays in the fitted namespace and device."""
    W1 = estimator.coefs_[0]
    if isinstance(W1, np.ndarray) and ops.is_numpy:
        return
    if not isinstance(W1, np.ndarray) and not ops.is_numpy:
        compat = array_api_compat()
        if compat.array_namespace(W1) is ops.xp and compat.device(W1) == ops.device:
            return
    where = ("numpy" if isinstance(W1, np.ndarray)
             else f"{type(W1).__module__}.{type(W1).__name__} on {W1.device}")
    raise ValueError(
        f"This model was fitted on {where}, and warm_start and partial_fit "
        "continue it only with X from the same array namespace and device "
        "(with array_api_dispatch on for a namespace other than numpy). Move "
        "the model first with sklearn.utils._array_api.move_estimator_to, "
        "or set warm_start=False to fit a new one."
    )


def _label_indices(y, labels):
    """Positions of ``y`` in the sorted ``labels``; unknown labels are an error."""
    unknown = np.setdiff1d(unique_labels(y), labels)
    if unknown.size:
        raise ValueError(
            f"y contains labels {unknown.tolist()} that are not in classes "
            f"{labels.tolist()}. Pass every class to the first partial_fit "
            "call, or fit with warm_start=False."
        )
    return np.searchsorted(labels, y)


def _check_validation_weight(total):
    """The validation rows must carry some weight to score anything."""
    if total <= 0:
        raise ValueError(
            "The validation samples all have zero weight; pass validation "
            "data with positive weights or change random_state."
        )


def _fitted_classes(ops, labels):
    """``classes_`` as scikit-learn's array-API classifiers keep it.

    Numeric labels live in the namespace and on the device of X, like the
    weights, so that predictions and scikit-learn's tools that line them up
    with ``classes_`` (``cross_val_predict``, the probability scorers) stay
    in one namespace. Strings, which no device holds, stay on the host.
    """
    if ops.is_numpy or labels.dtype.kind not in "biuf":
        return labels
    return ops.asarray(labels)


def _partial_fit_available(est):
    """partial_fit exists exactly where it can work; the error says why not."""
    if est.solver not in ("sgd", "adam"):
        raise AttributeError(
            "partial_fit is only available for solver='sgd' or solver='adam', "
            f"not solver={est.solver!r}."
        )
    if isinstance(est.class_weight, str) and est.class_weight == "balanced":
        raise AttributeError(
            "partial_fit is not available with class_weight='balanced': the "
            "class frequencies of the whole data are unknown to a single call. "
            "Pass a dict, e.g. from sklearn.utils.class_weight.compute_class_weight."
        )
    return True


class _InMemoryRows:
    """The rows one fit trains on, validated, in the namespace of X.

    ``_fit`` reads its data only through these names, so that rows kept
    elsewhere (on the workers of a Dask cluster, :mod:`sk_twolayer.dask`)
    share the whole fit: ``ops``, ``labels`` (host), ``dtype``,
    ``n_features``; after :meth:`hold_out`, the training rows ``X``, ``y``,
    ``sample_weight``, their count ``n_samples`` and ``solver_weight``;
    and :meth:`close` when the fit ends.
    """

    def __init__(self, ops, X, y, sample_weight, labels):
        self.ops, self.labels = ops, labels
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.dtype = ops.numpy_dtype(X)
        self.n_features = X.shape[1]
        self.solver_weight = None

    @property
    def n_samples(self):
        return self.X.shape[0]

    def objective(self, loss):
        """The loss the solvers call on these rows: the in-memory one."""
        return loss

    def close(self):
        """Nothing to release: the rows are the caller's arrays."""

    def hold_out(self, estimator, validation, rng, incremental):
        """Set aside the validation rows; the validation dict, or None.

        What remains are the training rows, with ``y`` and the weights
        moved to X's namespace. Equal positive weights make the weighted
        mean the plain mean: the solvers then get none
        (``solver_weight``), which saves passes over every batch (and, on a
        GPU, kernel launches).
        """
        ops = self.ops
        validation = estimator._validation_data(
            self.X, self.y, self.sample_weight, validation, self.labels, rng,
            incremental, ops,
        )
        if validation is not None:
            self.X, self.y, self.sample_weight = validation.pop("train")
        sample_weight = self.sample_weight
        uniform = sample_weight[0] > 0 and np.all(sample_weight == sample_weight[0])
        self.y, self.sample_weight = ops.asarray(self.y), ops.asarray(sample_weight)
        self.solver_weight = None if uniform else self.sample_weight
        return validation


class _IterationHook:
    """Per-iteration progress: verbose output and scikit-learn's callbacks.

    Scikit-learn's callback API sees one task per fit with one subtask per
    iteration (L-BFGS) or epoch (stochastic solvers). As in scikit-learn's
    own L-BFGS bridge, each iteration's subtask begins when the previous one
    ends, and the one left over at the end is closed as an empty task.
    """

    def __init__(self, estimator, X, y, metadata, max_iter, unpack, extra_attrs):
        self.estimator = estimator
        self.verbose = estimator.verbose
        self.X, self.y, self.metadata = X, y, metadata
        self.unpack = unpack
        self.extra_attrs = extra_attrs
        self.ctx = self.iter_ctx = None
        if hasattr(estimator, "_init_callback_context"):
            self.ctx = estimator._init_callback_context(max_subtasks=max_iter + 1)
            self.ctx.call_on_fit_task_begin(estimator=estimator, X=X, y=y,
                                            metadata=metadata)
            self.iter_ctx = self._begin()

    def _begin(self):
        ctx = self.ctx.subcontext(task_name="iteration")
        ctx.call_on_fit_task_begin(estimator=self.estimator, X=self.X, y=self.y,
                                   metadata=self.metadata)
        return ctx

    def _attributes(self, theta):
        W1, W2, b1, b2 = self.unpack(theta)  # unpack copies
        return {"coefs_": [W1, W2], "intercepts_": [b1, b2], **self.extra_attrs}

    def __call__(self, iteration, loss, theta):
        if self.verbose:
            print(f"Iteration {iteration}, loss = {loss:.8f}")
        if self.ctx is None:
            return False
        stop = self.iter_ctx.call_on_fit_task_end(
            estimator=self.estimator, X=self.X, y=self.y, metadata=self.metadata,
            reconstruction_attributes=lambda: self._attributes(theta),
        )
        self.iter_ctx = self._begin()
        return stop

    def close(self, state):
        if self.ctx is None:
            return
        self.iter_ctx.call_on_fit_task_end(estimator=self.estimator)
        self.ctx.call_on_fit_task_end(
            estimator=self.estimator, X=self.X, y=self.y, metadata=self.metadata,
            reconstruction_attributes=state,
        )


class TwoLayerSoftmaxClassifier(CallbackSupportMixin, ClassifierMixin, BaseEstimator):
    r"""Two-layer neural network: one hidden layer and a softmax output.

    The model maps a sample :math:`x` to class probabilities

    .. math::

        p(x) = \operatorname{softmax}\big(f(x W_1 + b_1)\, W_2 + b_2\big),

    with the ReLU :math:`f(a) = \max(0, a)` by default, and is trained by
    minimizing the mean log loss plus an L2 penalty on all parameters:

    .. math::

        \frac{\sum_i w_i\,(-\log p_{y_i}(x_i))}{\sum_i w_i}
        + \lambda\left(\|W_1\|^2 + \|W_2\|^2 + \|b_1\|^2 + \|b_2\|^2\right).

    The objective and its gradient are :func:`sk_twolayer.loss_and_gradient`;
    every solver optimizes that same function.

    Under scikit-learn's ``array_api_dispatch``, ``X`` may also be a PyTorch
    tensor, a CuPy array or another Array API array: the model trains and
    predicts in that namespace and on that device, and ``coefs_``,
    ``intercepts_``, numeric ``classes_`` and the predictions live there too.

    Parameters
    ----------
    hidden_size : int, default=100
        Number of hidden units H.
    activation : {"relu", "leaky_relu", "tanh", "logistic"}, default="relu"
        Activation of the hidden layer.
    reg : float, default=1e-4
        Strength :math:`\lambda` of the L2 penalty. Unlike MLPClassifier's
        ``alpha`` it is not divided by the number of samples: the data term is
        a mean, so ``reg`` has the same meaning whatever the data size. The
        default is a light penalty that keeps the weights bounded (and the
        problem well posed on separable data) without costing accuracy.
    solver : {"lbfgs", "sgd", "adam"}, default="lbfgs"
        Optimizer. ``"lbfgs"`` (scipy's L-BFGS-B on the full batch) is the
        default because it needs no learning rate, converges in few
        iterations on the small and medium data sets typical of scikit-learn
        work, and is deterministic. Use ``"sgd"`` or ``"adam"`` for large data
        or for :meth:`partial_fit`.
    batch_size : int or "auto", default="auto"
        Minibatch size of the stochastic solvers; ``"auto"`` is
        ``min(200, n_samples)``. Ignored by ``"lbfgs"``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Learning-rate schedule of the stochastic solvers, with
        MLPClassifier's semantics: ``"invscaling"`` uses
        ``learning_rate_init / (t + 1) ** power_t`` with ``t`` the samples
        seen; ``"adaptive"`` divides the rate by 5 each time the monitored
        quantity stalls for ``n_iter_no_change`` epochs.
    learning_rate_init : float or "auto", default="auto"
        Initial step size of the stochastic solvers. ``"auto"`` is 0.02 for
        ``"sgd"`` and 0.002 for ``"adam"``, whose steps are already
        normalized per coordinate. Both train standardized data in a few
        dozen epochs; MLPClassifier's single default of 0.001 is slow for SGD
        with momentum.
    power_t : float, default=0.5
        Exponent of the ``"invscaling"`` schedule.
    max_iter : int, default=200
        Maximum number of iterations (L-BFGS) or epochs (stochastic solvers).
    shuffle : bool, default=True
        Whether to reshuffle the samples every epoch (stochastic solvers).
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialization, the shuffles and the validation
        split. An int gives a bit-identical model on every fit.
    tol : float, default=1e-4
        For ``"lbfgs"``, scipy's ``gtol``. For the stochastic solvers, the
        improvement of the monitored quantity below which an epoch counts as
        no improvement.
    verbose : bool, default=False
        Print the loss after every iteration or epoch, for every solver.
    warm_start : bool, default=False
        Continue from the current weights on the next :meth:`fit`, which
        must see the same classes. The stochastic solvers start a new
        optimizer (momentum and Adam's moments start at zero), as
        MLPClassifier's do; the ``invscaling`` schedule counts on from
        ``t_``.
    momentum : float, default=0.9
        Momentum of ``"sgd"``, in [0, 1].
    nesterovs_momentum : bool, default=True
        Whether ``"sgd"`` uses Nesterov's momentum.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified)
        and stop when its accuracy stalls for ``n_iter_no_change``
        iterations; the best weights are restored at the end. Works for every
        solver. A validation set passed to :meth:`fit` as ``X_val, y_val`` is
        used instead of a split. Where a class has a single sample the split
        cannot be stratified: it falls back to a plain random split, with a
        warning that names the class. :meth:`partial_fit` is not available
        with early stopping.
    validation_fraction : float, default=0.1
        Fraction of the training data held out with ``early_stopping``.
    beta_1 : float, default=0.9
        Decay rate of Adam's first-moment estimate.
    beta_2 : float, default=0.999
        Decay rate of Adam's second-moment estimate.
    epsilon : float, default=1e-8
        Numerical stabilizer of Adam.
    n_iter_no_change : int or np.inf, default=10
        Epochs (or iterations) without an improvement of ``tol`` before the
        stochastic solvers stop, or early stopping ends training.
        ``np.inf`` never stops on a plateau: training runs for ``max_iter``.
    max_fun : int, default=15000
        Maximum number of loss evaluations of ``"lbfgs"``.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplied into ``sample_weight``.
        ``"balanced"`` uses ``n_samples / (n_classes * np.bincount(y))``.
    penalize_bias : bool, default=True
        Whether the penalty covers the biases, as in the objective above.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels. Under ``array_api_dispatch``, numeric labels live in
        the namespace and on the device of ``X``, strings on the host.
    coefs_ : list of ndarray
        ``[W1, W2]``, of shapes (n_features, hidden_size) and
        (hidden_size, n_classes).
    intercepts_ : list of ndarray
        ``[b1, b2]``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.
    n_iter_ : int
        Number of iterations (L-BFGS) or epochs the solver ran in the last
        :meth:`fit`, warm-started or not, as in MLPClassifier; so
        ``n_iter_ == max_iter`` means the budget ran out. :meth:`partial_fit`
        adds its one epoch per call.
    loss_ : float
        Training objective at the end of fitting.
    best_loss_ : float
        Lowest training objective seen.
    loss_curve_ : list of float
        Training objective after each iteration or epoch, for every solver.
    t_ : int
        Number of training samples seen by the solver since the model was
        started, counting on across warm-started fits and :meth:`partial_fit`
        calls.
    validation_scores_ : list of float or None
        Validation accuracy after each iteration, with early stopping or a
        validation set; None otherwise.
    validation_loss_curve_ : list of float or None
        Validation log loss (without the penalty) after each iteration.
    best_validation_score_ : float or None
        Best validation accuracy; its weights are the ones kept.
    n_outputs_ : int
        Number of output units (the number of classes).

    See Also
    --------
    sklearn.neural_network.MLPClassifier : Multi-layer perceptron.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sk_twolayer import TwoLayerSoftmaxClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), TwoLayerSoftmaxClassifier(
    ...     reg=1e-3, random_state=0)).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.score(X, y) > 0.95
    True
    """

    _parameter_constraints = {
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "reg": [Interval(Real, 0, None, closed="left")],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [
            StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")
        ],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "penalize_bias": ["boolean"],
    }

    def __init__(
        self,
        hidden_size=100,
        *,
        activation="relu",
        reg=1e-4,
        solver="lbfgs",
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init="auto",
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        class_weight=None,
        penalize_bias=True,
    ):
        self.hidden_size = hidden_size
        self.activation = activation
        self.reg = reg
        self.solver = solver
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.class_weight = class_weight
        self.penalize_bias = penalize_bias

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.array_api_support = True
        return tags

    # ----------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None):
        """Fit the network to data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Float32 data is trained in float32.
        y : array-like of shape (n_samples,)
            Target labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights.
        X_val : {array-like, sparse matrix} of shape (n_val, n_features), \
                default=None
            Validation data for early stopping, used instead of holding out
            ``validation_fraction`` of ``X``. Its scores are recorded in
            ``validation_scores_`` and ``validation_loss_curve_``.
        y_val : array-like of shape (n_val,), default=None
            Validation labels; required with ``X_val``.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation samples.

        Returns
        -------
        self : TwoLayerSoftmaxClassifier
            The fitted estimator.
        """
        with _rollback_on_error(self):
            return self._fit(
                X, y, sample_weight, incremental=False,
                validation=(X_val, y_val, sample_weight_val),
            )

    @available_if(_partial_fit_available)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Run one epoch of the stochastic solver over the given data.

        Only available for ``solver="sgd"`` and ``solver="adam"``, and
        without ``class_weight="balanced"``. With ``early_stopping=True`` it
        raises a ValueError, as MLPClassifier's does: one call sees one chunk
        of data, with nothing held out to stop on.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Target labels, all of them in ``classes``.
        classes : array-like of shape (n_classes,), default=None
            Every class that will ever appear. Required on the first call;
            on later calls it may be omitted, and if given must equal
            ``classes_`` (a ValueError otherwise, as in scikit-learn's other
            incremental classifiers).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights.

        Returns
        -------
        self : TwoLayerSoftmaxClassifier
            The updated estimator.
        """
        if self.early_stopping:
            raise ValueError(
                "partial_fit does not support early_stopping=True: one call "
                "sees one chunk of data, with nothing held out to stop on. Set "
                "early_stopping=False, and judge the model on held-out data "
                "between calls."
            )
        with _rollback_on_error(self):
            return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _fit(self, X, y, sample_weight, incremental, classes=None,
             validation=(None, None, None)):
        fitted = hasattr(self, "coefs_")
        first_call = not fitted or not (incremental or self.warm_start)
        # What the rows hold (on a Dask cluster: blocks, tasks, scratch
        # memory) is released when the fit ends, whatever the outcome.
        with contextlib.closing(self._training_rows(
                X, y, sample_weight, incremental, classes, first_call)) as rows:
            return self._fit_rows(rows, first_call, incremental, validation)

    def _fit_rows(self, rows, first_call, incremental, validation):
        """The fit on ``rows`` (:class:`_InMemoryRows`, or rows kept
        elsewhere with its interface)."""
        ops, labels = rows.ops, rows.labels
        layout = ParamLayout(rows.n_features, self.hidden_size, labels.size,
                             rows.dtype)
        theta, rng = self._starting_point(layout, first_call, incremental)
        theta = ops.asarray(theta)
        loss = rows.objective(TwoLayerLoss(
            layout, self.reg, self.penalize_bias, self.activation, ops=ops))

        classes_ = _fitted_classes(ops, labels)
        state = {"classes_": classes_, "_rng": rng}
        validation = rows.hold_out(self, validation, rng, incremental)
        X, y, solver_weight = rows.X, rows.y, rows.solver_weight
        callback = _IterationHook(
            self, X, y, {"sample_weight": rows.sample_weight},
            1 if incremental else self.max_iter,
            lambda theta: layout.unpack(_copy_to(ops, theta),
                                        None if ops.is_numpy else ops.xp),
            {"classes_": classes_, "n_outputs_": labels.size},
        )

        # t_ counts the samples seen since the model was started, across
        # warm-started fits and partial_fit calls; invscaling follows it.
        previous_t = 0 if first_call else self.t_
        if self.solver == "lbfgs":
            result = self._run_lbfgs(loss, theta, X, y, solver_weight, validation,
                                     callback)
            state.update(t_=previous_t + result.n_iter * rows.n_samples,
                         _optimizer_state=None, _stopper_state=None)
        else:
            result, solver_state = self._run_stochastic(
                loss, theta, X, y, solver_weight, validation, callback, rng,
                incremental, first_call, previous_t,
            )
            state.update(solver_state, t_=result.samples_seen)

        W1, W2, b1, b2 = layout.unpack(_copy_to(ops, result.theta),
                                       None if ops.is_numpy else ops.xp)
        state.update(
            coefs_=[W1, W2],
            intercepts_=[b1, b2],
            n_outputs_=labels.size,
            n_layers_=3,
            out_activation_="softmax",
        )
        previous_curve = [] if first_call else list(self.loss_curve_)
        curve = previous_curve + list(result.loss_curve)
        if not curve:  # interrupted before the first iteration
            curve = [ops.to_float(loss.loss_gradient(
                ops.asarray(result.theta), X, y, solver_weight)[0])]
        # n_iter_ counts this fit's iterations, as MLPClassifier's does, so
        # that n_iter_ == max_iter says the budget ran out; partial_fit counts
        # on, one epoch per call.
        counts_on = incremental and not first_call
        state.update(
            loss_curve_=curve,
            loss_=curve[-1],
            best_loss_=min(curve),
            n_iter_=(self.n_iter_ if counts_on else 0) + result.n_iter,
        )
        if validation is not None:
            state.update(
                validation_scores_=validation["scores"],
                validation_loss_curve_=validation["losses"],
                best_validation_score_=max(validation["scores"], default=None),
            )
        else:
            state.update(validation_scores_=None, validation_loss_curve_=None,
                         best_validation_score_=None)
        self.__dict__.update(state)
        callback.close(state)
        return self

    def _training_rows(self, X, y, sample_weight, incremental, classes, first_call):
        """The validated training data of this call, as :class:`_InMemoryRows`.

        X is validated and used in its own namespace and on its device;
        labels and weights are small and worked out on the host. Only the
        values of a tensor that requires grad are used: no autograd state
        reaches the weights, and no gradient flows back into X.
        """
        X = detached(X)
        ops = ops_for(X)
        if not first_call:
            _check_continues_in_place(self, ops)
        X, y = validate_data(
            self, X, to_host(y), accept_sparse="csr", dtype=_float_dtypes(ops),
            reset=first_call,
        )
        check_classification_targets(y)
        y, labels = self._encode_labels(y, first_call, incremental, classes)
        if not first_call:
            X = _astype(ops, X, self.coefs_[0].dtype)
        sample_weight = self._sample_weight(
            y, labels, to_host(sample_weight), incremental, ops.numpy_dtype(X))
        return _InMemoryRows(ops, X, y, sample_weight, labels)

    def _starting_point(self, layout, first_call, incremental):
        """The host vector training starts from, and the random stream.

        A new model draws its weights from ``random_state``; a continued one
        starts from its fitted weights. The random stream stays in numpy, so
        that a fit on a device is the numpy fit up to rounding.
        """
        if first_call:
            rng = check_random_state(self.random_state)
            return layout.init(rng, self.activation), rng
        if self.coefs_[0].shape[1] != self.hidden_size:
            raise ValueError(
                f"hidden_size={self.hidden_size} differs from the fitted "
                f"model's {self.coefs_[0].shape[1]}: warm_start and "
                "partial_fit need the same architecture. Set "
                "warm_start=False to fit a new model."
            )
        theta = layout.pack(*map(to_host, self.coefs_ + self.intercepts_))
        # A copy, so that a failed call leaves the stored stream untouched.
        rng = (copy.deepcopy(self._rng) if incremental
               else check_random_state(self.random_state))
        return theta, rng

    def _encode_labels(self, y, first_call, incremental, classes):
        """Class indices of ``y``, and the class labels (host arrays)."""
        classes = to_host(classes)
        if not first_call:
            labels = to_host(self.classes_)
            if incremental and classes is not None:
                if not np.array_equal(unique_labels(classes), labels):
                    raise ValueError(
                        f"classes={unique_labels(classes).tolist()} differs from "
                        f"the classes_ {labels.tolist()} of the fitted model. "
                        "Later partial_fit calls may omit classes, and must "
                        "not change them; fit a new model for other classes."
                    )
            elif not incremental and not np.array_equal(unique_labels(y), labels):
                raise ValueError(
                    "warm_start=True continues a model only on y with the same "
                    f"classes: the model has classes_ {labels.tolist()}, y has "
                    f"{unique_labels(y).tolist()}. Set warm_start=False to fit "
                    "a new model."
                )
        elif incremental:
            if classes is None:
                raise ValueError(
                    "classes must be passed on the first call to partial_fit."
                )
            labels = unique_labels(classes)
        else:
            labels = unique_labels(y)
        if labels.size < 2:
            raise ValueError(
                "TwoLayerSoftmaxClassifier needs at least 2 classes, got "
                f"{labels.size} class: {labels.tolist()}."
            )
        return _label_indices(y, labels), labels

    def _sample_weight(self, y, labels, sample_weight, incremental, dtype):
        """Validated sample weights, times the class weights, in X's dtype.

        Worked out on the host (numpy), like the class indices ``y``.
        """
        # y stands in for X: only its length and namespace (numpy) matter.
        sample_weight = _check_sample_weight(
            sample_weight, y, dtype=dtype, ensure_non_negative=True, copy=True,
            **_ALLOW_ZERO_WEIGHTS,
        )
        mass = np.bincount(y, weights=sample_weight, minlength=labels.size)
        per_class = self._class_factors(labels, mass, incremental)
        if per_class is not None:
            sample_weight *= per_class[y].astype(dtype)
        return sample_weight

    def _class_factors(self, labels, mass, incremental):
        """What ``class_weight`` multiplies each class's sample weights by.

        ``mass`` holds the summed sample weight of each class (of all the
        training rows, wherever they are); None without ``class_weight``.
        A whole fit needs positive weight on two classes at least; a
        minibatch (partial_fit) may carry no weight at all.
        """
        if not incremental:
            if not mass.any():
                raise ValueError(
                    "All sample weights are zero: at least one sample needs a "
                    "positive sample_weight."
                )
            if np.count_nonzero(mass) < 2:
                raise ValueError(
                    "TwoLayerSoftmaxClassifier needs samples of at least 2 "
                    "classes with positive weight, but the data has only class "
                    f"{labels[mass > 0].tolist()}."
                )
        if isinstance(self.class_weight, str):  # "balanced"
            # n_samples / (n_classes * count), with the counts weighted by
            # sample_weight so that integer weights stay equivalent to
            # repeated rows. A class without weight keeps 1 (it multiplies 0).
            per_class = np.ones(labels.size)
            present = mass > 0
            per_class[present] = mass.sum() / (present.sum() * mass[present])
            return per_class
        if self.class_weight is not None:
            # A dict needs only the classes (y matters for "balanced" alone).
            return compute_class_weight(self.class_weight, classes=labels, y=labels)
        return None

    def _validation_data(self, X, y, sample_weight, validation, labels, rng,
                         incremental, ops):
        """Validation set and score function, or None without validation.

        ``y`` and ``sample_weight`` are host arrays; the validation arrays
        come back in the namespace and on the device of ``X``.
        """
        plan = self._validation_plan(validation, X.shape[0], incremental)
        if plan is None:
            return None
        X_val, y_val, sw_val = validation
        if plan == "given":
            # Validation data follow X, as y does: moved to its namespace
            # and device where they are elsewhere.
            X_val, y_val = validate_data(
                self, move_to(ops, X_val, "X_val"), to_host(y_val),
                accept_sparse="csr",
                dtype=_float_dtypes(ops), reset=False,
            )
            X_val = _astype(ops, X_val, X.dtype)
            check_classification_targets(y_val)
            y_val = _label_indices(y_val, labels)
            sw_val = _check_sample_weight(to_host(sw_val), y_val,
                                          dtype=ops.numpy_dtype(X),
                                          ensure_non_negative=True)
        else:  # hold out ``plan`` rows
            stratify = self._stratify(y, labels, plan)
            # Split positions on the host; the same draws from rng as
            # splitting the arrays themselves.
            train, val, y, y_val, sample_weight, sw_val = train_test_split(
                np.arange(X.shape[0]), y, sample_weight, test_size=plan,
                random_state=rng, stratify=y if stratify else None,
            )
            X, X_val = (ops.take_rows(X, ops.asarray(rows)) for rows in (train, val))
        _check_validation_weight(sw_val.sum())
        return {"train": (X, y, sample_weight), "X": X_val, "y": ops.asarray(y_val),
                "sw": ops.asarray(sw_val), "scores": [], "losses": []}

    def _validation_plan(self, validation, n_samples, incremental):
        """How a fit on ``n_samples`` rows validates.

        None when it does not, ``"given"`` for a validation set passed as
        ``X_val, y_val``, or else the number of training rows that early
        stopping holds out (too few, and early stopping is switched off with
        a warning).
        """
        X_val, y_val, _ = validation
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val must be passed together.")
        if X_val is not None:
            return "given"
        if not self.early_stopping or incremental:
            return None
        n_val = int(np.ceil(self.validation_fraction * n_samples))
        if n_val < MIN_VALIDATION_SAMPLES:
            warn(
                f"early_stopping is ignored: validation_fraction="
                f"{self.validation_fraction} of {n_samples} samples holds out "
                f"{n_val}, fewer than the {MIN_VALIDATION_SAMPLES} needed for "
                "a meaningful validation score. Raise validation_fraction or "
                "pass X_val and y_val.",
                UserWarning,
            )
            return None
        return n_val

    @staticmethod
    def _stratify(y, labels, n_val):
        """Whether the validation split can be stratified; a warning if not.

        Stratifying needs every class on both sides of the split: two samples
        of each class, and at least one held-out sample per class.
        """
        counts = np.bincount(y, minlength=labels.size)
        single = labels[counts == 1]
        n_present = np.count_nonzero(counts)
        if single.size:
            reason = (f"class{'es' if single.size > 1 else ''} "
                      f"{single.tolist()} {'have' if single.size > 1 else 'has'} "
                      "a single sample, which cannot be on both sides")
        elif n_val < n_present:
            reason = (f"the {n_val} held-out samples cannot hold all "
                      f"{n_present} classes")
        else:
            return True
        warn(
            f"early_stopping holds out an unstratified validation split: {reason}. "
            "The validation score may miss some classes. Pass X_val and y_val "
            "to choose the validation set.",
            UserWarning,
        )
        return False

    def _score_function(self, loss, validation):
        """``score(theta)``: validation accuracy, recording it and the loss."""
        if validation is None:
            return None

        def score(theta):
            val_loss, accuracy = loss.evaluate(
                theta, validation["X"], validation["y"], validation["sw"]
            )
            validation["losses"].append(val_loss)
            validation["scores"].append(accuracy)
            return accuracy

        return score

    def _stopper(self, validation):
        return _solvers.Stopper(self.tol, self.n_iter_no_change,
                                higher_is_better=validation is not None)

    def _run_lbfgs(self, loss, theta, X, y, sample_weight, validation, callback):
        fun, score = loss.loss_gradient, self._score_function(loss, validation)
        ops = loss.ops
        if not ops.is_numpy:
            # scipy keeps its iterate on the host: each evaluation moves theta
            # to the device and the loss and gradient back, nothing else.
            def fun(theta, X, y, sample_weight, grad=None):
                value, g = loss.loss_gradient(ops.asarray(theta), X, y, sample_weight)
                return ops.to_float(value), ops.to_numpy(g)

            if score is not None:
                device_score = score

                def score(theta):
                    return device_score(ops.asarray(theta))

            theta = ops.to_numpy(theta)
        return _solvers.lbfgs(
            fun, theta, X, y, sample_weight,
            max_iter=self.max_iter, max_fun=self.max_fun, tol=self.tol,
            callback=callback, stopper=self._stopper(validation), score=score,
        )

    def _run_stochastic(self, loss, theta, X, y, sample_weight, validation,
                        callback, rng, incremental, first_call, samples_seen):
        optimizer_state = getattr(self, "_optimizer_state", None)
        if (incremental and not first_call and optimizer_state is not None
                and optimizer_state["solver"] == self.solver):
            # New objects from the stored state (its arrays copied), so that a
            # failed call leaves the model as it was.
            optimizer = _solvers.optimizer_from_state(optimizer_state)
            if self._stopper_state["higher_is_better"] == (validation is not None):
                stopper = _solvers.Stopper.from_state(self._stopper_state)
            else:
                # The last fit watched a validation score and this call
                # watches the training loss (or the other way round): the
                # old best and its weights mean nothing here.
                stopper = self._stopper(validation)
        else:
            lr = self.learning_rate_init
            if self.solver == "sgd":
                optimizer = _solvers.SGD(
                    0.02 if lr == "auto" else lr, self.momentum,
                    self.nesterovs_momentum, self.learning_rate, self.power_t,
                )
            else:
                optimizer = _solvers.Adam(
                    0.002 if lr == "auto" else lr, self.beta_1, self.beta_2,
                    self.epsilon, self.learning_rate, self.power_t,
                )
            stopper = self._stopper(validation)
        batch_size = 200 if self.batch_size == "auto" else self.batch_size
        result = _solvers.stochastic(
            loss.data_loss_gradient, theta, X, y, sample_weight,
            optimizer=optimizer, batch_size=batch_size, penalty=loss.penalty,
            max_iter=1 if incremental else self.max_iter, rng=rng,
            shuffle=self.shuffle, stopper=stopper,
            score=self._score_function(loss, validation), callback=callback,
            samples_seen=samples_seen, warn_on_max_iter=not incremental,
            verbose=bool(self.verbose),
        )
        # Plain dicts of numbers and arrays, which skops loads without being
        # asked to trust a private type.
        return result, {"_optimizer_state": optimizer.state_dict(),
                        "_stopper_state": stopper.state_dict()}

    # -------------------------------------------------------------- prediction
    @property
    def _first_layer(self):
        """W1: the array whose namespace and device predictions must share."""
        return self.coefs_[0]

    def _scores(self, X, method):
        """Output scores (N, C), and the primitives of X's namespace."""
        if not hasattr(self, "coefs_"):  # cheaper than the check when fitted
            check_is_fitted(self)
        X = detached(X)  # predictions carry no autograd history
        check_same_namespace(X, self, attribute="_first_layer", method=method)
        ops = ops_for(X)
        X = validate_data(self, X, accept_sparse="csr", dtype=_float_dtypes(ops),
                          reset=False)
        W1, W2 = self.coefs_
        b1, b2 = self.intercepts_
        if not ops.is_numpy:
            X = _astype(ops, X, W1.dtype)
        return forward(W1, b1, W2, b2, X, self.activation, ops), ops

    def decision_function(self, X):
        """Compute the scores of the output layer, before the softmax.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, the log-odds ``s_1 - s_0`` of ``classes_[1]``,
            positive where it is predicted; otherwise one score per class.
        """
        scores, _ = self._scores(X, "decision_function")
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted labels.
        """
        scores, ops = self._scores(X, "predict")
        indices = ops.xp.argmax(scores, axis=1)
        if ops.is_numpy:
            return self.classes_[indices]
        if isinstance(self.classes_, np.ndarray):  # strings stay on the host
            return self.classes_[ops.to_numpy(indices)]
        return ops.take(self.classes_, indices)

    def predict_proba(self, X):
        """Class probabilities, the softmax of the output scores.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities of the classes in the order of ``classes_``; two
            columns for a binary problem.
        """
        return softmax_inplace(*self._scores(X, "predict_proba"))

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities, computed stably.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities of the classes in the order of ``classes_``.
        """
        return log_softmax(*self._scores(X, "predict_log_proba"))
