"""scikit-learn's estimator checks, on the default and on each solver."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_twolayer import TwoLayerSoftmaxClassifier

# The checks fit on tiny data (a few dozen rows) with the default max_iter:
# many of those fits stop at max_iter, and with early_stopping=True most
# hold out too few rows to score. The warnings that say so are right for
# such fits, and test_classifier.py asserts that they are given; here they
# would only bury whatever else the suite prints.
pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore:early_stopping is ignored:UserWarning"),
]

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
    # One activation besides the default ReLU, and no further solver
    # variants: the checks test the estimator's API, which the activation
    # and the learning-rate schedule do not change. Every activation is
    # fitted with every solver in test_classifier.py
    # (test_every_activation_learns_iris), which also tests class_weight
    # with sgd and the adaptive schedule, and every activation's gradient
    # is checked in test_loss.py. (Each configuration here costs about 12 s
    # of a suite that CI runs three times.)
    TwoLayerSoftmaxClassifier(activation="tanh"),
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
