"""Quick start: train TwoLayerSoftmaxClassifier on digits, print held-out accuracy.

Run with ``python examples/quickstart.py`` after ``pip install .``.
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
model = make_pipeline(StandardScaler(), TwoLayerSoftmaxClassifier(random_state=0))
model.fit(X_train, y_train)
clf = model[-1]
print(f"digits: {X.shape[0]} samples, {X.shape[1]} features, {clf.classes_.size} classes")
print(f"solver={clf.solver}: {clf.n_iter_} iterations, final training loss {clf.loss_:.4f}")
print(f"held-out accuracy: {model.score(X_test, y_test):.4f}")
