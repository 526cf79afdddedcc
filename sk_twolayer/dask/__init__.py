"""One model, many machines: data-parallel L-BFGS on a Dask cluster.

:class:`DaskTwoLayerSoftmaxClassifier` is :class:`~sk_twolayer.TwoLayerSoftmaxClassifier`
whose ``fit`` also takes Dask arrays and dataframes. Their row blocks are
checked and prepared once on the workers, and every evaluation of the
objective runs there, through the same loss function as in memory: scipy's
L-BFGS iterate stays on the client, which sends the parameters out once and
receives one loss and one gradient per evaluation. After the fit the
weights are numpy arrays, as after any fit.

The package needs the ``dask`` extra (``pip install "sk-twolayer[dask]"``)
and is imported only when asked for::

    from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier

Its parts, one module each:

- ``_inputs``: the user's collections as row blocks, X, y and weights lined up;
- ``_worker``: what runs on the workers (check, prepare, evaluate, add);
- ``_placement``: which worker holds which block, and the tree of an evaluation;
- ``_rows``: the fit's rows: check, place and prepare the blocks;
- ``_objective``: the distributed objective: broadcast, evaluate, reduce;
- ``_faults``: waiting without hanging, retries, and the errors of lost data;
- ``_config``: the settings, in ``dask.config`` under ``sk-twolayer.dask``
  (defaults in ``sk-twolayer.yaml``);
- ``_estimator``: the estimator.
"""

from . import _config  # noqa: F401 (the settings' defaults, into dask.config)
from ._estimator import DaskTwoLayerSoftmaxClassifier

__all__ = ["DaskTwoLayerSoftmaxClassifier"]
