"""scikit-learn's estimator checks, on the default and on each solver."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_twolayer import TwoLayerSoftmaxClassifier

ESTIMATORS = [
    TwoLayerSoftmaxClassifier(),
    TwoLayerSoftmaxClassifier(solver="lbfgs"),
    TwoLayerSoftmaxClassifier(solver="sgd"),
    TwoLayerSoftmaxClassifier(solver="adam"),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
