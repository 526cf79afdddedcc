"""What a bug report needs: versions, platform, and the BLAS with its threads.

The speed of a fit is decided by the BLAS that numpy and scipy call and by
how many threads it runs, so those are printed next to the versions. Optional
packages are looked up in the installed distributions' metadata and never
imported: printing the version of PyTorch must not cost an import of PyTorch.
"""

import os
import platform
import sys
from importlib import metadata

# Required at run time (pyproject.toml's dependencies), plus threadpoolctl,
# which scikit-learn requires and which reports the BLAS below.
_REQUIRED = ("numpy", "scipy", "scikit-learn", "threadpoolctl")

# The distributions behind the optional extras (dask, onnx), the test and docs
# extras' serialization packages, and PyTorch, which benchmarks/run.py uses.
_OPTIONAL = (
    "dask",
    "distributed",
    "dask-ml",
    "torch",
    "skl2onnx",
    "onnxruntime",
    "onnx",
    "skops",
    "numba",
)

from . import _fast

NOT_INSTALLED = "not installed"


def _installed_version(distribution):
    """Version of an installed distribution, or ``NOT_INSTALLED``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def _system_info():
    return {
        "python": sys.version.replace("\n", " "),
        "executable": sys.executable,
        "machine": platform.platform(),
        "CPUs": str(os.cpu_count()),
    }


def _required_versions():
    # These modules are imported already by sk_twolayer itself: report the
    # version of the copy that is running, not only what the metadata says.
    import numpy
    import scipy
    import sklearn
    import threadpoolctl

    from . import __version__

    return {
        "sk-twolayer": __version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "threadpoolctl": threadpoolctl.__version__,
    }


def _optional_versions():
    return {name: _installed_version(name) for name in _OPTIONAL}


def _users_of(filepath):
    """Which of numpy and scipy ship the library at ``filepath``.

    Wheels put a package's shared libraries in the package or in a sibling
    ``<name>.libs`` folder; a library elsewhere (a conda or system BLAS) may
    serve both, so nothing is claimed for it.
    """
    import numpy
    import scipy

    users = []
    real = os.path.realpath(filepath)
    for module in (numpy, scipy):
        package_dir = os.path.dirname(os.path.realpath(module.__file__))
        for folder in (package_dir, package_dir + ".libs"):
            if real.startswith(folder + os.sep):
                users.append(module.__name__)
                break
    return users


def _threadpools():
    """threadpoolctl's view of the loaded BLAS and OpenMP libraries."""
    # scipy loads its own BLAS with scipy.linalg; import it so that the BLAS
    # shows up even if nothing has touched scipy.linalg yet.
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    pools = []
    for info in threadpool_info():
        entry = {
            "user_api": info.get("user_api"),
            "internal_api": info.get("internal_api"),
            "version": info.get("version"),
            "num_threads": info.get("num_threads"),
            "threading_layer": info.get("threading_layer"),
            "architecture": info.get("architecture"),
            "filepath": info.get("filepath"),
        }
        entry["used_by"] = _users_of(entry["filepath"] or "")
        pools.append(entry)
    return pools


def _format_section(title, items):
    width = max(len(key) for key in items)
    lines = [f"{title}:"]
    lines += [f"    {key:>{width}}: {value}" for key, value in items.items()]
    return lines


def _format_threadpools(pools):
    lines = ["BLAS and OpenMP (threadpoolctl):"]
    if not any(pool["user_api"] == "blas" for pool in pools):
        lines.append("    no BLAS library found")
    # BLAS libraries first: they decide our speed.
    for pool in sorted(pools, key=lambda pool: pool["user_api"] != "blas"):
        details = {
            "user_api": pool["user_api"],
            "internal_api": pool["internal_api"],
            "version": pool["version"],
            "num_threads": pool["num_threads"],
        }
        if pool["user_api"] == "blas":
            details["threading_layer"] = pool["threading_layer"]
            details["architecture"] = pool["architecture"]
            details["used_by"] = (
                " and ".join(pool["used_by"]) or "unknown (see filepath)"
            )
        details["filepath"] = pool["filepath"]
        if lines[-1] != lines[0]:
            lines.append("")
        lines += _format_section("", details)[1:]
    return lines


def show_versions():
    """Print versions, platform and BLAS threads, for a bug report.

    Paste the output into a bug report. It gives the versions of
    sk-twolayer, Python, numpy, scipy, scikit-learn and threadpoolctl; each
    BLAS (and OpenMP) library loaded in this process, with the number of
    threads it runs and whether numpy or scipy ships it; and which optional
    packages are installed, and whether the compiled kernels of the
    minibatch steps (the ``fast`` extra) are asked for and in use. Optional
    packages are found from the installed distributions' metadata and are
    not imported.

    See Also
    --------
    sklearn.show_versions : The same report for scikit-learn alone.
    threadpoolctl.threadpool_limits : Change the number of BLAS threads.

    Examples
    --------
    >>> import sk_twolayer
    >>> sk_twolayer.show_versions()  # doctest: +ELLIPSIS
    System:
    ...
    Python dependencies:
        sk-twolayer: ...
              numpy: ...
    ...
    BLAS and OpenMP (threadpoolctl):
    ...
    Optional packages:
    ...
    Compiled kernels of the minibatch steps:
        kernels: ...
    """
    lines = _format_section("System", _system_info())
    lines.append("")
    lines += _format_section("Python dependencies", _required_versions())
    lines.append("")
    lines += _format_threadpools(_threadpools())
    lines.append("")
    lines += _format_section("Optional packages", _optional_versions())
    lines.append("")
    lines += _format_section("Compiled kernels of the minibatch steps",
                             {"kernels": _fast.status()})
    print("\n".join(lines))
