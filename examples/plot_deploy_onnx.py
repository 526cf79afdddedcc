"""
Deploying with ONNX
===================

This example exports a fitted pipeline -- a
:class:`~sklearn.preprocessing.StandardScaler` followed by
:class:`~sk_twolayer.TwoLayerSoftmaxClassifier` -- to `ONNX
<https://onnx.ai>`_ with :func:`sk_twolayer.onnx.to_onnx`, runs the file in
`onnxruntime <https://onnxruntime.ai>`_, and checks that it predicts the
same labels and probabilities as the pipeline on images it never saw.

The exported file needs neither scikit-learn nor sk-twolayer to run: any
ONNX runtime, from any language, can serve it. It needs the ``onnx`` extra
to be written: ``python -m pip install ".[onnx]"`` from a checkout. See
:doc:`/deploying` for the options and for the other ways to save a model.
"""

# %%
# Fit the pipeline
# ----------------
# The digits in float32, the precision ONNX models are usually served in:
# the pipeline then computes in float32 too.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_twolayer import TwoLayerSoftmaxClassifier
from sk_twolayer.onnx import to_onnx

X, y = load_digits(return_X_y=True)
X = X.astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
model = make_pipeline(
    StandardScaler(),
    TwoLayerSoftmaxClassifier(hidden_size=100, random_state=0),
).fit(X_train, y_train)
print(f"test accuracy of the pipeline: {model.score(X_test, y_test):.3f}")

# %%
# Export to ONNX
# --------------
# The example row ``X_train[:1]`` sets the graph's input: one float32 matrix
# named ``"X"`` with 64 columns. ``zipmap=False`` keeps the probabilities as
# a matrix rather than a list of dictionaries. The scaler becomes ONNX
# operators too: the file holds the whole pipeline.
onx = to_onnx(model, X_train[:1], options={"zipmap": False})
print("operators:", [node.op_type for node in onx.graph.node])

folder = Path(tempfile.mkdtemp())
path = folder / "digits.onnx"
path.write_bytes(onx.SerializeToString())
print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")

# %%
# Run it in onnxruntime
# ---------------------
# This is all the serving side needs: the file and onnxruntime.
sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
print("inputs: ", [(i.name, i.type, i.shape) for i in sess.get_inputs()])
print("outputs:", [(o.name, o.type, o.shape) for o in sess.get_outputs()])
onnx_labels, onnx_proba = sess.run(None, {"X": X_test})
path.unlink()  # the session holds the model; the file was only for the demo
folder.rmdir()

# %%
# Compare with the pipeline
# -------------------------
# The labels must be the same, and the probabilities equal up to the
# rounding of float32 arithmetic done in a different order.
labels = model.predict(X_test)
proba = model.predict_proba(X_test)
diff = np.abs(onnx_proba - proba).max(axis=1)
print(f"identical labels: {np.array_equal(onnx_labels, labels)}")
print(f"largest probability difference: {diff.max():.1e}")
assert np.array_equal(onnx_labels, labels)
assert diff.max() < 1e-5

# %%
# The difference for every test image, against float32's resolution at 1
# (the gap between 1 and the next float32):
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.semilogy(np.maximum(diff, 1e-12), ".", markersize=4,
            label="max |p_onnx - p_model| per image")
ax.axhline(np.finfo(np.float32).eps, color="C1", linestyle="--",
           label="float32 epsilon")
ax.set_xlabel("test image")
ax.set_ylabel("largest difference")
ax.set_title("ONNX against the pipeline, float32")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

# %%
# A double-precision graph
# ------------------------
# A float64 example gives a graph that computes in float64 throughout. Fit
# on float64 data for a float64 model; the graph then matches it to about
# 1e-16. A float64 graph needs ``zipmap=False`` (or ``"columns"``): ONNX's
# ZipMap operator takes float32 only.
X64_train, X64_test = X_train.astype(np.float64), X_test.astype(np.float64)
model64 = make_pipeline(
    StandardScaler(),
    TwoLayerSoftmaxClassifier(hidden_size=100, random_state=0),
).fit(X64_train, y_train)
sess64 = ort.InferenceSession(
    to_onnx(model64, X64_train[:1], options={"zipmap": False}).SerializeToString(),
    providers=["CPUExecutionProvider"],
)
labels64, proba64 = sess64.run(None, {"X": X64_test})
diff64 = np.abs(proba64 - model64.predict_proba(X64_test)).max()
print(f"float64: identical labels {np.array_equal(labels64, model64.predict(X64_test))}, "
      f"largest probability difference {diff64:.1e}")
assert diff64 < 1e-9
