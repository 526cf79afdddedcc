"""ONNX export of :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`.

Importing this module registers the estimator with skl2onnx, so that
:func:`skl2onnx.to_onnx` converts a fitted model, or a
:class:`~sklearn.pipeline.Pipeline` that ends with one, like any
scikit-learn classifier. :func:`to_onnx` registers and converts in one call.

The package itself never imports this module: skl2onnx and onnx (the
``onnx`` extra) are needed only here.

The graph computes what ``predict`` and ``predict_proba`` compute, from the
public fitted attributes ``coefs_``, ``intercepts_``, ``classes_``,
``activation`` and ``n_features_in_``::

    h = f(X W1 + b1),  s = h W2 + b2,
    label = classes_[argmax(s)],  probabilities = softmax(s)

Its outputs follow skl2onnx's classifiers: a label tensor, then the
probabilities, turned into a list of dictionaries by the default
``zipmap=True`` option (``zipmap=False`` keeps a tensor of shape
``(N, n_classes)``, ``zipmap="columns"`` gives one output per class). A
float32 input (the default) gives a float32 graph; a float64 example or a
``DoubleTensorType`` input gives a float64 graph, which needs
``zipmap=False`` or ``"columns"`` (ONNX's ZipMap takes float32 only). A
DataFrame example gives one input per column, concatenated in the graph.
"""

import numbers

import numpy as np
from onnx import TensorProto
from skl2onnx import to_onnx as _skl2onnx_to_onnx
from skl2onnx import update_registered_converter
# skl2onnx's parser for classifiers, the one update_registered_converter
# installs for any model registered with the zipmap option. Ours calls it
# after checking the model, so the outputs and options match skl2onnx's.
from skl2onnx._parse import _parse_sklearn_classifier
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int32TensorType,
    Int64TensorType,
    StringTensorType,
)
from sklearn.utils.validation import check_is_fitted

from ._classifier import TwoLayerSoftmaxClassifier
from ._loss import ACTIVATIONS, LEAKY_SLOPE

__all__ = ["to_onnx"]

# Name under which skl2onnx knows the estimator (its aliases are the library
# name followed by the class name).
ALIAS = "SkTwoLayerTwoLayerSoftmaxClassifier"

# Options skl2onnx's classifiers share. The parser applies zipmap and
# output_class_labels; nocl=True replaces the labels by the class indices.
OPTIONS = {"zipmap": [True, False, "columns"], "output_class_labels": [False, True],
           "nocl": [False, True]}

# ONNX operators of the activations that have one. leaky_relu is written as
# max(a, slope * a), the formula the estimator uses: ONNX's LeakyRelu takes
# its slope as a float32 attribute, which would cost a double-precision graph
# its precision.
_ONNX_ACTIVATION = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid"}

_NUMERIC_INPUTS = (FloatTensorType, DoubleTensorType, Int64TensorType,
                   Int32TensorType)


def _check_model(model):
    """Raise a clear error for a model the converter cannot translate."""
    check_is_fitted(model)
    if model.activation not in ACTIVATIONS:
        raise ValueError(
            f"Cannot export activation={model.activation!r}: the ONNX converter "
            f"supports {ACTIVATIONS}."
        )
    W1, W2 = model.coefs_
    if W1.shape != (model.n_features_in_, W2.shape[0]) or W2.shape[1] != len(
        model.classes_
    ):
        raise ValueError(
            "The fitted weights do not match n_features_in_ and classes_: "
            f"coefs_ shapes {W1.shape} and {W2.shape}, {model.n_features_in_} "
            f"features, {len(model.classes_)} classes."
        )
    _label_tensor(model.classes_)


def _label_tensor(classes):
    """ONNX element type and contents of the label tensor of ``classes``.

    Integer and boolean labels become int64, the convention of skl2onnx's
    classifiers (so True and False come out as 1 and 0); float labels must
    be whole numbers, which become int64 too. Strings stay strings.
    """
    classes = np.asarray(classes)
    if classes.dtype == np.bool_ or np.issubdtype(classes.dtype, np.integer):
        if classes.size and (classes.max() > np.iinfo(np.int64).max):
            raise ValueError("Class labels do not fit in int64.")
        return TensorProto.INT64, classes.astype(np.int64)
    if np.issubdtype(classes.dtype, np.floating):
        if not np.all(np.isfinite(classes)) or np.any(classes != np.round(classes)):
            raise ValueError(
                "Cannot export float class labels that are not whole numbers "
                f"({classes.tolist()}): ONNX classifiers output int64 or string "
                "labels. Fit on integer or string labels instead."
            )
        return TensorProto.INT64, classes.astype(np.int64)
    if all(isinstance(c, str) for c in classes.tolist()):
        return TensorProto.STRING, np.array([c.encode("utf-8") for c in classes.tolist()],
                                            dtype=object)
    raise ValueError(
        "Cannot export class labels of type "
        f"{sorted({type(c).__name__ for c in classes.tolist()})}: the ONNX "
        "converter supports integer, boolean, whole-number float and string "
        "labels."
    )


def _exported_classes(options, model):
    """``classes_``, or the class indices with the option ``nocl=True``.

    ``options`` is what skl2onnx passes around: a scope or a container.
    """
    if options.get_options(model, dict(nocl=False))["nocl"]:
        return np.arange(len(model.classes_))
    return model.classes_


def _parser(scope, model, inputs, custom_parsers=None):
    """Declare the operator and its outputs (label, probabilities).

    The model is checked first, so that an unsupported one fails with our
    message. The outputs, and the ``zipmap`` and ``output_class_labels``
    options, are then declared by skl2onnx's parser for classifiers: the
    exported graph has the same outputs as every other classifier's.
    """
    _check_model(model)
    zipmap = scope.get_options(model, dict(zipmap=True))["zipmap"]
    if zipmap is True and isinstance(inputs[0].type, DoubleTensorType):
        # ONNX's ZipMap takes float32 only: the graph would not load.
        raise ValueError(
            "A float64 graph cannot use the option zipmap=True: ONNX's ZipMap "
            "operator accepts float32 probabilities only. Pass "
            "options={'zipmap': False} (a probability matrix) or "
            "{'zipmap': 'columns'} (one output per class), or convert with "
            "float32 input."
        )
    return _parse_sklearn_classifier(scope, model, inputs,
                                     custom_parsers=custom_parsers)


def _shape_calculator(operator):
    """Types and shapes of the outputs: labels (N,), probabilities (N, C).

    The input is one matrix of ``n_features_in_`` columns, or several whose
    columns add up to that (a DataFrame converts to one input per column);
    they are concatenated in order.
    """
    model = operator.raw_operator
    widths = []
    for variable in operator.inputs:
        input_type = variable.type
        if not isinstance(input_type, _NUMERIC_INPUTS):
            raise RuntimeError(
                "TwoLayerSoftmaxClassifier's ONNX converter needs numeric input "
                f"tensors, got {type(input_type).__name__} for input "
                f"{variable.onnx_name!r}."
            )
        if len(input_type.shape) != 2:
            raise RuntimeError(
                f"Every input must be a matrix, got shape {list(input_type.shape)} "
                f"for input {variable.onnx_name!r}."
            )
        widths.append(input_type.shape[1])
    if all(isinstance(w, numbers.Integral) for w in widths):
        if sum(widths) != model.n_features_in_:
            raise RuntimeError(
                f"The input has {sum(widths)} features, but the model was fitted "
                f"on {model.n_features_in_}."
            )
    elif len(widths) > 1:
        raise RuntimeError(
            "Several inputs need a known number of columns each, got "
            f"{widths}."
        )
    n_rows = operator.inputs[0].type.shape[0]
    elem, _ = _label_tensor(_exported_classes(operator.scope_inst, model))
    label_type = StringTensorType if elem == TensorProto.STRING else Int64TensorType
    proba_type = DoubleTensorType if _is_double(operator) else FloatTensorType
    operator.outputs[0].type = label_type([n_rows])
    operator.outputs[1].type = proba_type([n_rows, len(model.classes_)])


def _is_double(operator):
    """Whether the graph computes in float64: when every input is float64."""
    return all(isinstance(v.type, DoubleTensorType) for v in operator.inputs)


def _converter(scope, operator, container):
    """Write the nodes of the forward pass, the label and the softmax."""
    model = operator.raw_operator
    double = _is_double(operator)
    elem = TensorProto.DOUBLE if double else TensorProto.FLOAT
    dtype = np.float64 if double else np.float32
    W1, W2 = model.coefs_
    b1, b2 = model.intercepts_

    def name(base):
        return scope.get_unique_variable_name(base)

    def node(op_type, inputs, base, **attrs):
        out = name(base)
        container.add_node(op_type, inputs, out,
                           name=scope.get_unique_operator_name(op_type), **attrs)
        return out

    def constant(base, value, elem_type=elem):
        value = np.asarray(value)
        cname = name(base)
        if elem_type != TensorProto.STRING:
            value = value.astype(dtype if elem_type == elem else value.dtype)
        container.add_initializer(cname, elem_type, list(value.shape),
                                  value.ravel().tolist())
        return cname

    columns = []
    for variable in operator.inputs:
        column = variable.full_name
        if not isinstance(variable.type, FloatTensorType if elem == TensorProto.FLOAT
                          else DoubleTensorType):
            column = node("Cast", [column], "cast_input", to=elem)
        columns.append(column)
    X = columns[0] if len(columns) == 1 else node("Concat", columns, "X", axis=1)

    # Hidden layer: f(X W1 + b1)
    pre = node("Add", [node("MatMul", [X, constant("W1", W1)], "XW1"),
                       constant("b1", b1)], "pre_activation")
    if model.activation == "leaky_relu":
        scaled = node("Mul", [pre, constant("leaky_slope", LEAKY_SLOPE)], "slope_a")
        hidden = node("Max", [pre, scaled], "hidden")
    else:
        hidden = node(_ONNX_ACTIVATION[model.activation], [pre], "hidden")

    # Output layer: scores, then the label of the highest score (ArgMax
    # keeps the first of tied scores, as numpy's argmax does) and the
    # softmax of the scores.
    scores = node("Add", [node("MatMul", [hidden, constant("W2", W2)], "hW2"),
                          constant("b2", b2)], "scores")
    index = node("ArgMax", [scores], "argmax", axis=1, keepdims=0)
    label_elem, labels = _label_tensor(_exported_classes(container, model))
    container.add_node("Gather", [constant("classes", labels, label_elem), index],
                       operator.outputs[0].full_name, axis=0,
                       name=scope.get_unique_operator_name("Gather"))
    container.add_node("Softmax", [scores], operator.outputs[1].full_name, axis=1,
                       name=scope.get_unique_operator_name("Softmax"))


def _register():
    update_registered_converter(
        TwoLayerSoftmaxClassifier, ALIAS, _shape_calculator, _converter,
        parser=_parser, options=OPTIONS,
    )


def to_onnx(model, X=None, **kwargs):
    """Convert a fitted model, or a pipeline that contains one, to ONNX.

    Registers :class:`~sk_twolayer.TwoLayerSoftmaxClassifier` with skl2onnx
    (importing :mod:`sk_twolayer.onnx` already does) and calls
    :func:`skl2onnx.to_onnx`. The graph has two outputs, like skl2onnx's
    other classifiers: the predicted labels and the class probabilities.

    Parameters
    ----------
    model : estimator
        A fitted :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`, or a
        fitted scikit-learn estimator that contains one, such as a
        :class:`~sklearn.pipeline.Pipeline`.
    X : array-like of shape (n_samples, n_features), default=None
        Example input: its dtype sets the precision of the graph (float32
        data gives a float32 graph, float64 data a float64 graph). When
        both ``X`` and ``initial_types`` are None, the input is a float32
        matrix named ``"X"`` with ``model.n_features_in_`` columns.
    **kwargs : dict
        Passed to :func:`skl2onnx.to_onnx`: ``initial_types``,
        ``target_opset``, ``options`` and so on. The option ``zipmap``
        (``True`` by default, as for every skl2onnx classifier) turns the
        probabilities into a list of dictionaries; ``{"zipmap": False}``
        keeps them as a matrix of shape (n_samples, n_classes), and
        ``"columns"`` gives one output per class. A float64 graph needs
        one of the latter two: ONNX's ZipMap takes float32 only.

    Returns
    -------
    onx : onnx.ModelProto
        The ONNX model. Integer and boolean labels come out as int64 (True
        as 1), string labels as strings.

    See Also
    --------
    skl2onnx.to_onnx : The conversion function this one calls.
    TwoLayerSoftmaxClassifier.predict_proba : What the graph computes.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from sklearn.datasets import load_iris
    >>> from sk_twolayer import TwoLayerSoftmaxClassifier
    >>> from sk_twolayer.onnx import to_onnx
    >>> X, y = load_iris(return_X_y=True)
    >>> X = X.astype(np.float32)
    >>> clf = TwoLayerSoftmaxClassifier(hidden_size=10, random_state=0).fit(X, y)
    >>> onx = to_onnx(clf, X[:1], options={"zipmap": False})
    >>> sess = ort.InferenceSession(onx.SerializeToString(),
    ...                             providers=["CPUExecutionProvider"])
    >>> [o.name for o in sess.get_outputs()]
    ['label', 'probabilities']
    >>> labels, proba = sess.run(None, {"X": X[:3]})
    >>> labels.tolist()
    [0, 0, 0]
    >>> bool(np.array_equal(labels, clf.predict(X)[:3]))
    True
    >>> bool(np.allclose(proba, clf.predict_proba(X[:3]), atol=1e-5))
    True
    """
    _register()
    if X is None and kwargs.get("initial_types") is None:
        check_is_fitted(model)
        kwargs["initial_types"] = [
            ("X", FloatTensorType([None, model.n_features_in_]))
        ]
    return _skl2onnx_to_onnx(model, X, **kwargs)


_register()
