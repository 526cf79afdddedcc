"""Warnings that point at the user's own line, not into the package."""

import sys
import warnings


def _is_internal(frame):
    """Whether ``frame`` belongs to the package or to a wrapper around it.

    Between a user's ``clf.fit(...)`` line and the place a warning is raised
    lie our own modules and the wrappers that decorate them: scikit-learn's
    ``_fit_context`` (a function named ``wrapper`` in ``sklearn.base``),
    numpy's ``errstate`` decorator and ``contextlib``.
    """
    module = frame.f_globals.get("__name__", "")
    return (
        module == "sk_twolayer"
        or module.startswith(("sk_twolayer.", "numpy.", "contextlib"))
        or (module == "sklearn.base" and frame.f_code.co_name == "wrapper")
    )


def warn(message, category=UserWarning):
    """``warnings.warn`` with the stack level of the first frame outside.

    The warning is reported at the line that called into the package: the
    user's ``fit`` or ``partial_fit`` call, or the scikit-learn or Dask
    code that made it (``cross_val_score``, ``GridSearchCV``), as
    scikit-learn's own estimators report theirs.
    """
    frame = sys._getframe(1)
    level = 2  # stacklevel=2 is this function's caller, ``frame``
    while frame.f_back is not None and _is_internal(frame):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
