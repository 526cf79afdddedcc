"""scikit-learn's estimator checks, on the default and on each solver."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_twolayer import TwoLayerSoftmaxClassifier

ESTIMATORS = [
    TwoLayerSoftmaxClassifier(),
    # (the default solver is lbfgs)
    *(TwoLayerSoftmaxClassifier(solver=solver) for solver in ("sgd", "adam")),
    # Early stopping with lbfgs only: with sgd or adam, partial_fit raises a
    # ValueError by design, as MLPClassifier's does, and scikit-learn's checks
    # call partial_fit wherever it exists. Their early-stopping fits are
    # tested in tests/test_classifier.py.
    TwoLayerSoftmaxClassifier(early_stopping=True),
    TwoLayerSoftmaxClassifier(class_weight="balanced"),
    TwoLayerSoftmaxClassifier(solver="sgd", class_weight="balanced"),
    *(TwoLayerSoftmaxClassifier(activation=activation)
      for activation in ("leaky_relu", "tanh", "logistic")),
    TwoLayerSoftmaxClassifier(solver="sgd", learning_rate="adaptive"),
    TwoLayerSoftmaxClassifier(penalize_bias=False),
]


try:  # the data-parallel estimator (the dask extra): on in-memory input it
    # fits as the in-memory one, and passes the same checks
    from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier
except ImportError:  # pragma: no cover - without the dask extra
    pass
else:
    ESTIMATORS.append(DaskTwoLayerSoftmaxClassifier())


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
