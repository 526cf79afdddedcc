"""Properties of TwoLayerSoftmaxClassifier beyond scikit-learn's common checks."""

import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits, load_iris, make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from sk_twolayer import TwoLayerSoftmaxClassifier

SOLVERS = ["lbfgs", "sgd", "adam"]


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def binary():
    X, y = make_blobs(n_samples=120, centers=2, cluster_std=2.0, random_state=0)
    return StandardScaler().fit_transform(X), np.where(y == 1, "yes", "no")


def _fit_quietly(clf, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(*args, **kwargs)


def _state(clf):
    """Everything a fit leaves behind, copied, for before/after comparisons."""
    return pickle.dumps(clf.__dict__)


# ------------------------------------------------------------------ accuracy
@pytest.mark.parametrize("solver", SOLVERS)
def test_digits_cv_accuracy_with_defaults(solver):
    X, y = load_digits(return_X_y=True)
    model = make_pipeline(
        StandardScaler(), TwoLayerSoftmaxClassifier(solver=solver, random_state=0)
    )
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # defaults converge
        scores = cross_val_score(model, X, y, cv=cv)
    assert scores.mean() >= 0.97


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "logistic"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_every_activation_learns_iris(iris, solver, activation):
    X, y = iris
    clf = _fit_quietly(
        TwoLayerSoftmaxClassifier(solver=solver, activation=activation,
                                  random_state=0), X, y)
    assert clf.score(X, y) > 0.93


def test_pipeline_grid_search_and_cross_validation():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), TwoLayerSoftmaxClassifier(random_state=0))
    grid = GridSearchCV(
        pipe,
        {"twolayersoftmaxclassifier__reg": [1e-4, 1e-1, 10.0],
         "twolayersoftmaxclassifier__hidden_size": [2, 16]},
        cv=3,
    )
    _fit_quietly(grid, X, y)
    # A penalty of 10 shrinks every weight to nothing: it cannot win.
    assert grid.best_params_["twolayersoftmaxclassifier__reg"] != 10.0
    assert grid.best_score_ > 0.9
    worst = grid.cv_results_["mean_test_score"].min()
    assert worst < 0.7  # reg=10 predicts (nearly) one class
    assert cross_val_score(grid.best_estimator_, X, y, cv=3).mean() > 0.9


# ------------------------------------------------------------ output shapes
def test_binary_outputs_follow_sklearn_conventions(binary):
    X, y = binary
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(random_state=0), X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    decision = clf.decision_function(X)
    assert decision.shape == (len(X),)
    np.testing.assert_array_equal(clf.predict(X),
                                  np.where(decision > 0, clf.classes_[1], clf.classes_[0]))
    # The binary decision is the log-odds of classes_[1].
    np.testing.assert_allclose(decision, np.log(proba[:, 1] / proba[:, 0]),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), atol=1e-10)


def test_multiclass_outputs(iris):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(random_state=0), X, y)
    assert clf.decision_function(X).shape == (150, 3)
    assert clf.predict_proba(X).shape == (150, 3)
    assert [w.shape for w in clf.coefs_] == [(4, 100), (100, 3)]
    assert [b.shape for b in clf.intercepts_] == [(100,), (3,)]
    assert clf.n_features_in_ == 4 and clf.n_outputs_ == 3


def test_log_proba_is_finite_for_confident_predictions(iris):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(reg=0.0, random_state=0).fit(X, y)
    log_proba = clf.predict_log_proba(100 * X)  # scores far beyond exp's range
    assert np.all(np.isfinite(log_proba))


@pytest.mark.parametrize("solver", SOLVERS)
def test_float32_stays_float32(iris, solver):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, random_state=0),
                       X.astype(np.float32), y)
    assert all(w.dtype == np.float32 for w in clf.coefs_ + clf.intercepts_)
    assert clf.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert clf.score(X.astype(np.float32), y) > 0.9


def test_sparse_input_matches_dense(iris):
    X, y = iris
    # A penalty that makes L-BFGS converge, so rounding cannot steer the paths apart.
    dense = TwoLayerSoftmaxClassifier(reg=1e-2, random_state=0).fit(X, y)
    sparse = TwoLayerSoftmaxClassifier(reg=1e-2, random_state=0).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.predict_proba(X), dense.predict_proba(X),
                               rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------- reproducibility
@pytest.mark.parametrize("solver", SOLVERS)
def test_same_random_state_gives_identical_model(iris, solver):
    X, y = iris
    a = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, random_state=3), X, y)
    b = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, random_state=3), X, y)
    c = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, random_state=4), X, y)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


@pytest.mark.parametrize("solver", SOLVERS)
def test_pickle_round_trip(iris, solver):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, random_state=0), X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_lbfgs_loss_curve_never_increases(iris):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(random_state=0, reg=1e-3).fit(X, y)
    curve = np.array(clf.loss_curve_)
    assert len(curve) == clf.n_iter_ > 5
    assert np.all(np.diff(curve) <= 0)
    assert clf.loss_ == curve[-1]


@pytest.mark.parametrize("solver", SOLVERS)
def test_loss_curve_has_one_entry_per_iteration(iris, solver):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, max_iter=7,
                                                 random_state=0), X, y)
    assert clf.n_iter_ == len(clf.loss_curve_) == 7
    assert clf.best_loss_ == min(clf.loss_curve_)


@pytest.mark.parametrize("solver", SOLVERS)
def test_convergence_warning_at_max_iter(iris, solver):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        TwoLayerSoftmaxClassifier(solver=solver, max_iter=2).fit(X, y)


def test_lbfgs_max_fun_limits_evaluations(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="max_fun"):
        clf = TwoLayerSoftmaxClassifier(max_fun=4, random_state=0).fit(X, y)
    assert clf.n_iter_ <= 4


def test_sgd_stops_on_a_loss_plateau(iris):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver="sgd", tol=1.0, n_iter_no_change=3,
                                    random_state=0).fit(X, y)
    # No epoch improves the loss by 1.0, so it stops after 1 + 3 + 1 epochs.
    assert clf.n_iter_ == 5


# ----------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "X, message",
    [
        (np.array([[np.nan, 1.0], [1.0, 2.0]]), "NaN"),
        (np.array([[np.inf, 1.0], [1.0, 2.0]]), "infinity"),
        (np.array([[1 + 1j, 1.0], [1.0, 2.0]]), "[Cc]omplex"),
        (np.empty((0, 2)), "0 sample"),
    ],
)
def test_bad_X_gets_sklearn_errors(X, message):
    with pytest.raises(ValueError, match=message):
        TwoLayerSoftmaxClassifier().fit(X, np.arange(len(X)) % 2)


def test_wrong_n_features_and_unfitted(iris):
    X, y = iris
    with pytest.raises(NotFittedError):
        TwoLayerSoftmaxClassifier().predict(X)
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(random_state=0), X, y)
    with pytest.raises(ValueError, match="X has 3 features"):
        clf.predict(X[:, :3])


def test_single_class_and_zero_weights_are_named(iris):
    X, y = iris
    with pytest.raises(ValueError, match="at least 2 classes"):
        TwoLayerSoftmaxClassifier().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="weight.*zero"):
        TwoLayerSoftmaxClassifier().fit(X, y, sample_weight=np.zeros(len(X)))
    # Weights that leave a single class with mass are a single class too.
    with pytest.raises(ValueError, match="class"):
        TwoLayerSoftmaxClassifier().fit(X, y, sample_weight=(y == 1).astype(float))


@pytest.mark.parametrize("solver, rate", [("sgd", 1e12), ("adam", 1e300)])
def test_divergence_is_an_error_and_keeps_the_previous_model(iris, solver, rate):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, random_state=0), X, y)
    proba = clf.predict_proba(X)
    before = _state(clf.set_params(learning_rate_init=rate, reg=0.0))
    with pytest.raises(ValueError, match="diverged.*learning_rate_init"):
        clf.fit(1e6 * X, y)
    assert _state(clf) == before
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    assert np.isfinite(clf.loss_)
    # A fresh estimator is left unfitted, never with NaN weights.
    fresh = TwoLayerSoftmaxClassifier(solver=solver, learning_rate_init=rate, reg=0.0)
    with pytest.raises(ValueError, match="diverged"):
        fresh.fit(1e6 * X, y)
    assert not hasattr(fresh, "coefs_")


def test_failed_fit_leaves_fitted_model_intact(iris):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(random_state=0), X, y)
    before = _state(clf)
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.fit(X[:, :2], np.zeros(len(X)))  # would also change n_features_in_
    assert _state(clf) == before
    assert clf.n_features_in_ == 4
    assert clf.score(X, y) > 0.9


# ------------------------------------------------------------ partial_fit
def test_partial_fit_matches_fit(iris):
    X, y = iris
    params = dict(solver="sgd", random_state=0, n_iter_no_change=1000, max_iter=30)
    full = _fit_quietly(TwoLayerSoftmaxClassifier(**params), X, y)
    inc = TwoLayerSoftmaxClassifier(**params)
    for _ in range(30):
        inc.partial_fit(X, y, classes=np.unique(y))
    np.testing.assert_allclose(inc.coefs_[0], full.coefs_[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(inc.predict(X), full.predict(X))
    assert inc.n_iter_ == full.n_iter_ == 30
    assert inc.t_ == full.t_ == 30 * len(X)
    np.testing.assert_allclose(inc.loss_curve_, full.loss_curve_, rtol=1e-10)


def test_partial_fit_requires_classes_then_checks_labels(iris):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver="adam", random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])  # a class may be absent
    assert list(clf.classes_) == [0, 1, 2]
    before = _state(clf)
    with pytest.raises(ValueError, match=re.escape("labels [7]")):
        clf.partial_fit(X, np.where(y == 2, 7, y))
    assert _state(clf) == before
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :3], y)
    assert _state(clf) == before


def test_diverging_partial_fit_changes_nothing(iris):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver="sgd", batch_size=10, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    clf.set_params(learning_rate_init=1e12, reg=0.0)
    for _ in range(200):  # one epoch per call, until the loss overflows
        before = _state(clf)
        try:
            clf.partial_fit(1e6 * X, y)
        except ValueError as error:
            assert "diverged" in str(error)
            break
    else:
        pytest.fail("training never diverged")
    # Weights, optimizer state and the random stream are as they were.
    assert _state(clf) == before


def test_partial_fit_accepts_an_all_zero_weight_batch(iris):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver="sgd", momentum=0.0, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    W1 = clf.coefs_[0].copy()
    clf.partial_fit(X, y, sample_weight=np.zeros(len(X)))
    assert np.all(np.isfinite(clf.coefs_[0]))
    # Only the penalty acts: every weight shrinks towards zero.
    assert np.linalg.norm(clf.coefs_[0]) < np.linalg.norm(W1)


def test_partial_fit_availability_is_explained():
    assert not hasattr(TwoLayerSoftmaxClassifier(solver="lbfgs"), "partial_fit")
    # The AttributeError is caused by one that says why.
    with pytest.raises(AttributeError) as excinfo:
        TwoLayerSoftmaxClassifier(solver="lbfgs").partial_fit
    assert "solver='sgd'" in str(excinfo.value.__cause__)
    with pytest.raises(AttributeError) as excinfo:
        TwoLayerSoftmaxClassifier(solver="sgd", class_weight="balanced").partial_fit
    assert "balanced" in str(excinfo.value.__cause__)
    assert hasattr(TwoLayerSoftmaxClassifier(solver="adam"), "partial_fit")
    # Early stopping leaves partial_fit in place, as in MLPClassifier: the
    # call raises a ValueError that says why.
    assert hasattr(TwoLayerSoftmaxClassifier(solver="sgd", early_stopping=True),
                   "partial_fit")


# ------------------------------------------------------------ warm start
@pytest.mark.parametrize("solver", SOLVERS)
def test_warm_start_continues_from_the_current_weights(iris, solver):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver=solver, warm_start=True, max_iter=10,
                                    random_state=0)
    _fit_quietly(clf, X, y)
    first_curve = list(clf.loss_curve_)
    _fit_quietly(clf, X, y)
    # n_iter_ counts the last fit (as MLPClassifier's); the curve and t_
    # count on over both.
    assert clf.n_iter_ == 10
    assert len(clf.loss_curve_) == 20
    assert clf.t_ == 20 * len(X)
    assert clf.loss_curve_[:10] == first_curve
    # The second fit starts where the first ended, not from scratch.
    assert clf.loss_curve_[10] < 1.1 * first_curve[-1] < 0.9 * first_curve[0]
    assert clf.loss_curve_[-1] < first_curve[-1]


def test_warm_start_rejects_another_architecture(iris):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(warm_start=True, random_state=0),
                       X, y)
    with pytest.raises(ValueError, match="hidden_size"):
        clf.set_params(hidden_size=7).fit(X, y)


# ----------------------------------------------------- schedules and Adam
def test_invscaling_follows_the_samples_seen(iris):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(
        solver="sgd", learning_rate="invscaling", learning_rate_init=0.5,
        power_t=0.25, max_iter=4, random_state=0), X, y)
    assert clf._optimizer_state["learning_rate"] == pytest.approx(
        0.5 / (clf.t_ + 1) ** 0.25)


def test_adaptive_divides_the_rate_on_plateaus(iris):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(
        solver="sgd", learning_rate="adaptive", learning_rate_init=0.01,
        tol=10.0, n_iter_no_change=1, max_iter=100, random_state=0).fit(X, y)
    # Every epoch is a plateau under tol=10: the rate drops by 5 every 2
    # epochs until it is below 1e-6, then training stops.
    assert clf._optimizer_state["learning_rate"] < 1e-6
    assert clf._optimizer_state["learning_rate"] == pytest.approx(0.01 / 5**6)
    assert clf.n_iter_ < 100


@pytest.mark.parametrize("nesterov", [True, False])
def test_momentum_variants_learn(iris, nesterov):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(
        solver="sgd", nesterovs_momentum=nesterov, random_state=0), X, y)
    assert clf.score(X, y) > 0.95


# ------------------------------------------------- early stopping, validation
@pytest.mark.parametrize("solver", SOLVERS)
def test_early_stopping_stops_and_keeps_the_best_weights(solver):
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    X_train, y_train, X_val, y_val = X[:1200], y[:1200], X[1200:], y[1200:]
    clf = TwoLayerSoftmaxClassifier(solver=solver, n_iter_no_change=3, tol=0.0,
                                    max_iter=300, random_state=0)
    clf.fit(X_train, y_train, X_val=X_val, y_val=y_val)
    assert clf.n_iter_ < 300
    assert len(clf.validation_scores_) == len(clf.validation_loss_curve_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # The weights kept are the best ones, not the last ones.
    assert clf.score(X_val, y_val) == pytest.approx(clf.best_validation_score_)
    assert clf.validation_scores_[-1] <= clf.best_validation_score_


def test_early_stopping_holds_out_a_stratified_split(iris):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver="adam", early_stopping=True,
                                    validation_fraction=0.2, random_state=0)
    _fit_quietly(clf, X, y)
    assert clf.validation_scores_ is not None
    assert len(clf.validation_scores_) == clf.n_iter_
    # 20% of 150, stratified: 10 of each class; accuracies are multiples of 1/30.
    assert np.allclose(np.array(clf.validation_scores_) * 30,
                       np.round(np.array(clf.validation_scores_) * 30))
    assert clf.best_validation_score_ > 0.8


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_on_tiny_data_warns_and_trains():
    X, y = make_blobs(n_samples=30, centers=2, random_state=0)
    clf = TwoLayerSoftmaxClassifier(early_stopping=True, random_state=0)
    with pytest.warns(UserWarning, match="early_stopping is ignored"):
        clf.fit(X, y)
    assert clf.validation_scores_ is None
    assert clf.score(X, y) > 0.9


def test_validation_arguments_are_checked(iris):
    X, y = iris
    with pytest.raises(ValueError, match="together"):
        TwoLayerSoftmaxClassifier().fit(X, y, X_val=X)
    with pytest.raises(ValueError, match="features"):
        TwoLayerSoftmaxClassifier().fit(X, y, X_val=X[:, :2], y_val=y)
    with pytest.raises(ValueError, match="not in classes"):
        TwoLayerSoftmaxClassifier().fit(X, y, X_val=X, y_val=y + 5)


# ---------------------------------------------------------------- weights
@pytest.mark.parametrize("solver", SOLVERS)
def test_balanced_class_weight_equals_its_sample_weights(solver):
    X, y = make_blobs(n_samples=[90, 25, 10], cluster_std=2.5, random_state=1)
    params = dict(solver=solver, random_state=0, max_iter=30)
    balanced = _fit_quietly(TwoLayerSoftmaxClassifier(class_weight="balanced", **params),
                            X, y)
    weighted = _fit_quietly(TwoLayerSoftmaxClassifier(**params), X, y,
                            sample_weight=compute_sample_weight("balanced", y))
    np.testing.assert_allclose(balanced.coefs_[0], weighted.coefs_[0], rtol=1e-7,
                               atol=1e-10)
    plain = _fit_quietly(TwoLayerSoftmaxClassifier(**params), X, y)
    assert not np.allclose(balanced.coefs_[0], plain.coefs_[0])


@pytest.mark.parametrize("solver", SOLVERS)
def test_equal_weights_give_exactly_the_unweighted_fit(iris, solver):
    # The weighted mean with equal weights is the plain mean; the solvers are
    # then given no weights at all, so the fits agree to the last bit.
    X, y = iris
    params = dict(solver=solver, hidden_size=8, max_iter=5, random_state=0)
    plain = _fit_quietly(TwoLayerSoftmaxClassifier(**params), X, y)
    for sw in (np.full(len(y), 3.0), None):
        equal = _fit_quietly(TwoLayerSoftmaxClassifier(**params), X, y,
                             sample_weight=sw)
        for got, expected in zip(equal.coefs_ + equal.intercepts_,
                                 plain.coefs_ + plain.intercepts_):
            np.testing.assert_array_equal(got, expected)
        assert equal.loss_curve_ == plain.loss_curve_
    # Unequal weights still count.
    sw = np.ones(len(y))
    sw[0] = 2.0
    weighted = _fit_quietly(TwoLayerSoftmaxClassifier(**params), X, y,
                            sample_weight=sw)
    assert not np.array_equal(weighted.coefs_[0], plain.coefs_[0])


def test_class_weight_dict_shifts_predictions_towards_the_class():
    X, y = make_blobs(n_samples=200, centers=2, cluster_std=4.0, random_state=0)
    plain = _fit_quietly(TwoLayerSoftmaxClassifier(random_state=0), X, y)
    heavy = _fit_quietly(TwoLayerSoftmaxClassifier(class_weight={0: 1.0, 1: 20.0},
                                                   random_state=0), X, y)
    assert (heavy.predict(X) == 1).sum() > (plain.predict(X) == 1).sum()


def test_sample_weights_equal_repeated_rows(iris):
    X, y = iris
    sw = np.random.RandomState(0).randint(0, 3, size=len(y))
    # reg=1e-2 lets L-BFGS converge, so both fits reach the same optimum.
    weighted = TwoLayerSoftmaxClassifier(reg=1e-2, random_state=0).fit(
        X, y, sample_weight=sw)
    repeated = TwoLayerSoftmaxClassifier(reg=1e-2, random_state=0).fit(
        np.repeat(X, sw, axis=0), np.repeat(y, sw))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X),
                               rtol=1e-5, atol=1e-7)


# ------------------------------------------------------ progress, callbacks
@pytest.mark.parametrize("solver", SOLVERS)
def test_verbose_prints_every_iteration(iris, solver, capsys):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, verbose=True,
                                                 max_iter=6, random_state=0), X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    if solver != "lbfgs":  # first, which code runs the minibatch steps
        assert lines.pop(0) == "Minibatch steps: NumPy"
    assert len(lines) == clf.n_iter_ == 6
    assert all(line.startswith("Iteration ") for line in lines)
    loss_in_line = float(lines[-1].split("loss = ")[1])
    assert loss_in_line == pytest.approx(clf.loss_curve_[-1], rel=1e-6)


class _Recorder:
    """A FitCallback that records what it sees."""

    def __init__(self, stop_at=None, interrupt_at=None):
        self.begins, self.ends, self.scores = 0, 0, []
        self.stop_at, self.interrupt_at = stop_at, interrupt_at

    def setup(self, estimator, context):
        self.setup_called = True

    def teardown(self, estimator, context):
        self.teardown_called = True

    def on_fit_task_begin(self, estimator, context, *, X=None, y=None,
                          metadata=None, fitted_estimator=None):
        self.begins += 1

    def on_fit_task_end(self, estimator, context, *, X=None, y=None,
                        metadata=None, fitted_estimator=None):
        self.ends += 1
        if fitted_estimator is not None and context.parent is not None:
            self.scores.append(fitted_estimator.score(X, y))
            if len(self.scores) == self.interrupt_at:
                raise KeyboardInterrupt
            return len(self.scores) == self.stop_at
        return False




@pytest.mark.parametrize("solver", SOLVERS)
def test_fit_callback_is_called_once_per_iteration(iris, solver):
    pytest.importorskip("sklearn.callback", reason="needs scikit-learn >= 1.9")
    X, y = iris
    recorder = _Recorder()
    clf = TwoLayerSoftmaxClassifier(solver=solver, max_iter=8, random_state=0)
    _fit_quietly(clf.set_callbacks(recorder), X, y)
    assert clf.n_iter_ == 8
    assert len(recorder.scores) == 8  # one fitted snapshot per iteration
    # The fit task, one subtask per iteration, and the trailing empty one.
    assert recorder.begins == recorder.ends == 8 + 2
    assert recorder.setup_called and recorder.teardown_called
    assert recorder.scores[-1] == clf.score(X, y)


def test_failed_fit_still_tears_callbacks_down(iris):
    pytest.importorskip("sklearn.callback", reason="needs scikit-learn >= 1.9")
    X, y = iris
    recorder = _Recorder()
    clf = TwoLayerSoftmaxClassifier(solver="sgd", learning_rate_init=1e12, reg=0.0)
    with pytest.raises(ValueError, match="diverged"):
        clf.set_callbacks(recorder).fit(1e6 * X, y)
    assert recorder.teardown_called
    assert not hasattr(clf, "coefs_") and not hasattr(clf, "_callback_fit_ctx")


@pytest.mark.parametrize("solver", SOLVERS)
def test_callback_can_stop_training(iris, solver):
    pytest.importorskip("sklearn.callback", reason="needs scikit-learn >= 1.9")
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver=solver, max_iter=50, random_state=0)
    clf.set_callbacks(_Recorder(stop_at=4)).fit(X, y)
    assert clf.n_iter_ == 4


def test_progress_bar_runs(iris):
    callback = pytest.importorskip("sklearn.callback", reason="needs scikit-learn >= 1.9")
    pytest.importorskip("rich")
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver="sgd", max_iter=5, random_state=0)
    _fit_quietly(clf.set_callbacks(callback.ProgressBar()), X, y)
    assert clf.n_iter_ == 5


@pytest.mark.parametrize("solver", SOLVERS)
def test_keyboard_interrupt_keeps_the_weights_so_far(iris, solver):
    pytest.importorskip("sklearn.callback", reason="needs scikit-learn >= 1.9")
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver=solver, max_iter=50, random_state=0)
    clf.set_callbacks(_Recorder(interrupt_at=5))
    with pytest.warns(UserWarning, match="interrupted"):
        clf.fit(X, y)
    assert clf.n_iter_ == 5
    assert all(np.all(np.isfinite(w)) for w in clf.coefs_ + clf.intercepts_)
    assert np.isfinite(clf.loss_)
    assert clf.score(X, y) > 0.6


# --------------------------------------- scikit-learn conventions (MLP's)
def test_partial_fit_rejects_other_classes_on_a_later_call(iris):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver="sgd", random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    clf.partial_fit(X, y, classes=[2, 1, 0])  # the same classes, any order
    before = _state(clf)
    with pytest.raises(ValueError, match=re.escape("classes=[0, 1, 2, 3] differs")):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="differs"):
        clf.partial_fit(X, y, classes=[0, 1])
    assert _state(clf) == before


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_with_early_stopping_is_a_value_error_as_in_mlp(iris, solver):
    # scikit-learn's own MLP test: a fit with early stopping, then
    # partial_fit, raises ValueError("partial_fit does not support
    # early_stopping=True"); the method itself stays available.
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, early_stopping=True,
                                                 max_iter=5, random_state=0), X, y)
    assert hasattr(clf, "partial_fit")
    before = _state(clf)
    with pytest.raises(ValueError, match="partial_fit does not support "
                                         "early_stopping=True: one call sees"):
        clf.partial_fit(X, y)
    assert _state(clf) == before
    unfitted = TwoLayerSoftmaxClassifier(solver=solver, early_stopping=True)
    with pytest.raises(ValueError, match="early_stopping=True"):
        unfitted.partial_fit(X, y, classes=[0, 1, 2])
    assert not hasattr(unfitted, "coefs_")


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_after_a_validated_fit_watches_the_training_loss(iris, solver):
    # The fit's stopper watched a validation score (higher is better); the
    # partial_fit calls that follow measure the training loss (lower is
    # better), and must not compare it with the old best score.
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, max_iter=5,
                                                 random_state=0),
                       X, y, X_val=X[::3], y_val=y[::3])
    assert clf._stopper_state["higher_is_better"]
    for _ in range(3):
        clf.partial_fit(X, y)
        state = clf._stopper_state
        assert not state["higher_is_better"]
        # The best value is the lowest training loss of these calls.
        assert -state["best"] == pytest.approx(min(clf.loss_curve_[5:]))
        assert state["best_theta"] is not None
    # And a plain fit followed by partial_fit keeps counting on its stopper.
    plain = _fit_quietly(TwoLayerSoftmaxClassifier(solver=solver, max_iter=5,
                                                   random_state=0), X, y)
    best_before = plain._stopper_state["best"]
    plain.partial_fit(X, y)
    assert plain._stopper_state["best"] >= best_before


@pytest.mark.parametrize("solver", SOLVERS)
def test_warm_start_rejects_other_classes(iris, solver):
    X, y = iris
    clf = _fit_quietly(TwoLayerSoftmaxClassifier(
        solver=solver, warm_start=True, max_iter=5, random_state=0), X, y)
    before = _state(clf)
    for labels in (y[y < 2], np.where(y == 2, 3, y)):  # fewer classes; another
        rows = slice(None) if labels.size == y.size else y < 2
        with pytest.raises(ValueError, match="same classes"):
            clf.fit(X[rows], labels)
        assert _state(clf) == before
    # Without warm_start the same data simply fits a new model.
    clf.set_params(warm_start=False)
    _fit_quietly(clf, X[y < 2], y[y < 2])
    assert clf.classes_.tolist() == [0, 1] and clf.coefs_[1].shape[1] == 2


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_counts_epochs_on_while_a_warm_fit_counts_its_own(iris, solver):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver=solver, random_state=0)
    for _ in range(3):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 3
    clf.set_params(warm_start=True, max_iter=2)
    _fit_quietly(clf, X, y)
    assert clf.n_iter_ == 2 == clf.max_iter  # the budget ran out, and says so
    assert len(clf.loss_curve_) == 5
    assert clf.t_ == 5 * len(X)


def test_invscaling_counts_on_across_warm_started_fits():
    X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    clf = TwoLayerSoftmaxClassifier(
        solver="sgd", learning_rate="invscaling", learning_rate_init=0.001,
        power_t=0.25, max_iter=1, warm_start=True, random_state=0)
    _fit_quietly(clf, X, y)
    assert clf._optimizer_state["learning_rate"] == pytest.approx(0.001 / 5**0.25)
    _fit_quietly(clf, X, y)
    # t counts the 8 samples of both fits, as in MLPClassifier.
    assert clf.t_ == 8
    assert clf._optimizer_state["learning_rate"] == pytest.approx(0.001 / 9**0.25)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_n_iter_no_change_inf_never_stops_on_a_plateau(iris, solver):
    X, y = iris
    # tol=10 makes every epoch a plateau: a finite patience stops early ...
    params = dict(solver=solver, tol=10.0, max_iter=15, random_state=0)
    assert TwoLayerSoftmaxClassifier(n_iter_no_change=2, **params).fit(X, y).n_iter_ < 15
    # ... np.inf runs the whole budget.
    with pytest.warns(ConvergenceWarning, match="maximum iterations"):
        clf = TwoLayerSoftmaxClassifier(n_iter_no_change=np.inf, **params).fit(X, y)
    assert clf.n_iter_ == 15


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_huge_finite_loss_is_divergence(solver):
    # Features near the float maximum: the loss stays finite (about 1e306)
    # but is divergence in all but name.
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(50, 4)) * 1e307
    y = rng.randint(0, 2, size=50)
    with pytest.raises(ValueError, match="diverged.*StandardScaler"):
        TwoLayerSoftmaxClassifier(solver=solver, max_iter=20, random_state=0).fit(X, y)


def test_early_stopping_warns_naming_a_single_sample_class():
    X, y = make_blobs(n_samples=200, centers=3, random_state=0)
    y = y.astype(str)
    y[0] = "lonely"
    clf = TwoLayerSoftmaxClassifier(solver="adam", early_stopping=True,
                                    max_iter=5, random_state=0)
    with pytest.warns(UserWarning, match=re.escape("class ['lonely'] has a single")):
        _fit_quietly(clf, X, y)
    assert clf.validation_scores_ is not None  # the unstratified split is used


def _warning_sources(action):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    return {(w.category.__name__, w.filename) for w in caught}


def test_warnings_point_at_the_callers_line(iris):
    X, y = iris
    here = __file__
    # ConvergenceWarning from each solver, through fit and partial_fit.
    for solver in SOLVERS:
        clf = TwoLayerSoftmaxClassifier(solver=solver, max_iter=1)
        assert _warning_sources(lambda: clf.fit(X, y)) == {("ConvergenceWarning", here)}
    # The early-stopping warnings.
    # (a fixed split: with some, 300 iterations end without early stopping)
    tiny = TwoLayerSoftmaxClassifier(early_stopping=True, max_iter=300, random_state=0)
    assert _warning_sources(lambda: tiny.fit(X[::5], y[::5])) == {("UserWarning", here)}
    # Through scikit-learn, the warning points at scikit-learn's call of fit,
    # as scikit-learn's own estimators' warnings do.
    from sklearn.model_selection import cross_validate
    sources = _warning_sources(lambda: cross_validate(
        TwoLayerSoftmaxClassifier(max_iter=1), X, y, cv=2, error_score="raise"))
    assert {category for category, _ in sources} == {"ConvergenceWarning"}
    assert all(path.endswith("_validation.py") for _, path in sources)


def test_interrupt_warning_points_at_the_callers_line(iris, monkeypatch):
    X, y = iris
    clf = TwoLayerSoftmaxClassifier(solver="sgd", max_iter=5, random_state=0)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(clf, "_score_function", lambda *a: None)
    from sk_twolayer import _solvers
    monkeypatch.setattr(_solvers.Stopper, "update", interrupt)
    sources = _warning_sources(lambda: clf.fit(X, y))
    assert sources == {("UserWarning", __file__)}
