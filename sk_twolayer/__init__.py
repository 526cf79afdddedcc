"""sk-twolayer: a two-layer softmax network as a scikit-learn estimator."""

from ._classifier import TwoLayerSoftmaxClassifier
from ._loss import loss_and_gradient

__version__ = "0.1.0"

__all__ = ["TwoLayerSoftmaxClassifier", "loss_and_gradient", "__version__"]
