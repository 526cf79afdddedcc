"""Validate the numpydoc docstrings of every public object of sk_twolayer.

The rules follow what scikit-learn-contrib projects do, adapted to a small
public API:

* Every check of :mod:`numpydoc.validate` applies, except those in
  ``IGNORED_EVERYWHERE``:

  - ``RT02`` -- scikit-learn style names its return values (``y : ndarray``),
    which numpydoc's check for "only the type" rejects;
  - ``GL01`` -- scikit-learn style starts the summary right after the opening
    quotes, which numpydoc flags.

* Methods additionally skip ``ES01`` (extended summary), ``SA01`` (See Also)
  and ``EX01`` (Examples): the class docstring carries the example and the
  cross references, as in scikit-learn.
* Top-level objects (the estimator class and ``loss_and_gradient``) must have
  an Examples section (run by ``--doctest-modules``) and a See Also section.
* ``GL08`` (no docstring) is never ignored, but only public objects are
  collected: private helpers are not part of the API.
"""

import inspect

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

import sk_twolayer  # noqa: E402

IGNORED_EVERYWHERE = {"RT02", "GL01"}
IGNORED_FOR_METHODS = IGNORED_EVERYWHERE | {"ES01", "SA01", "EX01"}


def _public_top_level():
    """Import paths of the public names in ``sk_twolayer.__all__``."""
    return [
        f"sk_twolayer.{name}"
        for name in sk_twolayer.__all__
        if not name.startswith("_")
    ]


def _public_methods(cls, path):
    """Public methods that ``cls`` (at ``path``) defines in sk_twolayer's own code.

    Inherited methods (``score``, ``get_params``...) and the metadata-routing
    helpers that scikit-learn generates (``set_fit_request``...) carry
    scikit-learn's docstrings, not ours.
    """
    names = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        # available_if wraps the method in a descriptor that keeps it as .fn
        func = inspect.unwrap(getattr(value, "fn", value))
        if inspect.isfunction(func) and func.__module__.startswith("sk_twolayer"):
            names.append(f"{path}.{name}")
    return sorted(names)


def _optional_modules():
    """Public classes of the optional modules whose extras are installed."""
    paths = []
    try:
        import sk_twolayer.dask as module
    except ImportError:  # pragma: no cover - without the dask extra
        return paths
    paths += [f"{module.__name__}.{name}" for name in module.__all__]
    return paths


def _resolve(path):
    import importlib

    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


TOP_LEVEL = _public_top_level() + _optional_modules()
METHODS = [
    method
    for path in TOP_LEVEL
    if inspect.isclass(obj := _resolve(path))
    for method in _public_methods(obj, path)
]


def _errors(import_path, ignored):
    result = numpydoc_validate.validate(import_path)
    return [
        f"{code}: {message}"
        for code, message in result["errors"]
        if code not in ignored
    ]


def test_collected_objects_cover_the_public_api():
    # If __all__ or the estimator's methods change, the parametrized tests
    # below must follow; this guards against silently validating nothing.
    assert "sk_twolayer.TwoLayerSoftmaxClassifier" in TOP_LEVEL
    assert "sk_twolayer.loss_and_gradient" in TOP_LEVEL
    expected = {"fit", "partial_fit", "predict", "predict_proba",
                "predict_log_proba", "decision_function"}
    prefix = "sk_twolayer.TwoLayerSoftmaxClassifier."
    collected = {path.rsplit(".", 1)[1] for path in METHODS if path.startswith(prefix)}
    assert expected <= collected, expected - collected
    # Metadata-routing helpers and scikit-learn's own methods are not ours.
    assert not collected & {"score", "get_params", "set_params", "set_fit_request"}
    # The Dask estimator's own methods, where its extra is installed.
    if "sk_twolayer.dask.DaskTwoLayerSoftmaxClassifier" in TOP_LEVEL:
        dask_methods = {path.rsplit(".", 1)[1] for path in METHODS
                        if path.startswith("sk_twolayer.dask.")}
        assert {"to_local", "score", "predict_proba"} <= dask_methods


def test_validator_catches_a_bad_docstring():
    # The ignore lists must not swallow the checks that matter: a function
    # with an undocumented parameter and no Returns section has to fail.
    import types

    module = types.ModuleType("_sk_twolayer_docstring_probe")

    def probe(a, b):
        """do something"""
        return a + b

    probe.__module__ = module.__name__
    module.probe = probe
    import sys

    sys.modules[module.__name__] = module
    try:
        codes = {e.split(":")[0] for e in _errors(f"{module.__name__}.probe",
                                                   IGNORED_FOR_METHODS)}
    finally:
        del sys.modules[module.__name__]
    assert {"PR01", "RT01", "SS03"} <= codes, codes


@pytest.mark.parametrize("import_path", TOP_LEVEL)
def test_top_level_docstring(import_path):
    errors = _errors(import_path, IGNORED_EVERYWHERE)
    assert not errors, f"{import_path}:\n" + "\n".join(errors)


@pytest.mark.parametrize("import_path", METHODS)
def test_method_docstring(import_path):
    errors = _errors(import_path, IGNORED_FOR_METHODS)
    assert not errors, f"{import_path}:\n" + "\n".join(errors)


@pytest.mark.parametrize(
    "import_path",
    ["sk_twolayer.TwoLayerSoftmaxClassifier", "sk_twolayer.loss_and_gradient"]
    + [path for path in TOP_LEVEL if path.startswith("sk_twolayer.dask.")],
)
def test_top_level_docstring_states_the_objective_in_latex(import_path):
    # The objective is written out as display maths in the objects of the
    # model (utilities such as show_versions have none to state).
    obj = _resolve(import_path)
    doc = inspect.getdoc(obj)
    assert ".. math::" in doc
    assert r"\lambda" in doc
