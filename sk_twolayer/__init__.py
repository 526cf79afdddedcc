"""sk-twolayer: a two-layer softmax network as a scikit-learn estimator."""

from ._classifier import TwoLayerSoftmaxClassifier
from ._loss import loss_and_gradient
from ._show_versions import show_versions

__version__ = "0.1.0.dev0"

__all__ = [
    "TwoLayerSoftmaxClassifier",
    "loss_and_gradient",
    "show_versions",
    "__version__",
]
