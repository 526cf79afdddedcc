import os

# scikit-learn's array-API estimator check runs only when scipy was imported
# with array-API support on; set it before anything imports scipy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest  # noqa: E402

# The slow tier: tests that need minutes (worker kills at every kill point,
# clusters of many workers, the benchmark scripts end to end, the fault
# campaign). Marked ``@pytest.mark.slow`` and skipped unless pytest is given
# ``--runslow``, as Dask's own suite does; CI runs them in sessions of their
# own (noxfile.py). Each property they assert is also asserted by a test of
# the default tier at a tiny size, wherever that is possible.


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (minutes)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: runs with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def iteration_callback():
    """A scikit-learn ``FitCallback`` class (scikit-learn 1.9 and later) that
    calls ``on_iteration(fitted_estimator, X)`` at the end of each iteration
    or epoch of a fit; a true return value stops the fit."""
    callback = pytest.importorskip("sklearn.callback")

    class OnIteration(callback.FitCallback):
        def __init__(self, on_iteration):
            self.on_iteration = on_iteration

        def setup(self, estimator, context):
            pass

        def on_fit_task_begin(self, estimator, context, *, X=None, y=None,
                              metadata=None, fitted_estimator=None):
            pass

        def on_fit_task_end(self, estimator, context, *, X=None, y=None,
                            metadata=None, fitted_estimator=None):
            # Iterations are the subtasks; the fit itself has no parent.
            if fitted_estimator is not None and context.parent is not None:
                return bool(self.on_iteration(fitted_estimator, X))
            return False

        def teardown(self, estimator, context):
            pass

    return OnIteration
