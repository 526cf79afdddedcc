"""One model, many machines: data-parallel L-BFGS on a Dask cluster.

:class:`DaskTwoLayerSoftmaxClassifier` is :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`
whose ``fit`` also takes Dask arrays and dataframes. Their row blocks are
checked and prepared once on the workers, and every evaluation of the
objective runs there, through the same loss function as in memory: scipy's
L-BFGS iterate stays on the client, which sends the parameters out once and
receives one loss and one gradient per evaluation. After the fit the
weights are numpy arrays, as after any fit.

The package needs the ``dask`` extra (from a checkout:
``python -m pip install ".[dask]"``) and is imported only when asked for::

    from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier

Its parts, one module each:

- ``_inputs``: the user's collections as row blocks, X, y and weights lined up;
- ``_worker``: what runs on the workers (check, prepare, evaluate, add);
- ``_placement``: which worker holds which block, whether the blocks fit,
  and the plan of an evaluation (a star, or a tree);
- ``_rows``: the fit's rows, step by step, each step named with the module
  that does it;
- ``_objective``: the distributed objective: broadcast, evaluate, reduce,
  one graph per evaluation;
- ``_faults``: the workers as the fit sees them, waiting without hanging,
  retries, and the errors a fit meets on a cluster;
- ``_config``: the settings, in ``dask.config`` under ``sk-twolayer.dask``
  (defaults in ``sk-twolayer.yaml``);
- ``_estimator``: the estimator.
"""

from . import _config  # noqa: F401 (the settings' defaults, into dask.config)
from ._estimator import DaskTwoLayerSoftmaxClassifier

__all__ = ["DaskTwoLayerSoftmaxClassifier"]
