"""sk_twolayer.show_versions: what a bug report needs, printed."""

import os
import re
import subprocess
import sys
from importlib import metadata

import numpy
import scipy
import sklearn
import threadpoolctl

import sk_twolayer
from sk_twolayer import _show_versions


def _printed(capsys):
    sk_twolayer.show_versions()
    return capsys.readouterr().out


def _value(out, key):
    """Values printed as ``key: value``, in order."""
    return re.findall(rf"^\s*{re.escape(key)}: (.*)$", out, flags=re.MULTILINE)


def test_public_and_exported():
    assert "show_versions" in sk_twolayer.__all__
    assert sk_twolayer.show_versions is _show_versions.show_versions


def test_versions_are_those_of_the_running_packages(capsys):
    out = _printed(capsys)
    assert _value(out, "sk-twolayer") == [sk_twolayer.__version__]
    assert _value(out, "numpy") == [numpy.__version__]
    assert _value(out, "scipy") == [scipy.__version__]
    assert _value(out, "scikit-learn") == [sklearn.__version__]
    assert _value(out, "threadpoolctl") == [threadpoolctl.__version__]
    assert _value(out, "python") == [sys.version.replace("\n", " ")]
    assert _value(out, "executable") == [sys.executable]


def test_blas_section_names_the_libraries_and_their_threads(capsys):
    out = _printed(capsys)
    assert "BLAS and OpenMP (threadpoolctl):" in out
    assert "no BLAS library found" not in out
    # One block per library that threadpoolctl sees, BLAS blocks first, each
    # with the thread count threadpoolctl reports for it.
    expected = sorted(threadpoolctl.threadpool_info(),
                      key=lambda info: info["user_api"] != "blas")
    assert any(info["user_api"] == "blas" for info in expected)
    assert _value(out, "user_api") == [info["user_api"] for info in expected]
    assert _value(out, "num_threads") == [str(info["num_threads"])
                                          for info in expected]
    assert _value(out, "filepath") == [info["filepath"] for info in expected]
    for threads in _value(out, "num_threads"):
        assert int(threads) >= 1


def test_blas_of_a_wheel_is_attributed_to_numpy_or_scipy():
    # numpy's and scipy's wheels ship their BLAS in <package>.libs/; a
    # library outside both packages is attributed to neither.
    numpy_dir = os.path.dirname(os.path.realpath(numpy.__file__))
    scipy_dir = os.path.dirname(os.path.realpath(scipy.__file__))
    numpy_lib = os.path.join(numpy_dir + ".libs", "libopenblas.so")
    scipy_lib = os.path.join(scipy_dir, "linalg", "_fblas.so")
    assert _show_versions._users_of(numpy_lib) == ["numpy"]
    assert _show_versions._users_of(scipy_lib) == ["scipy"]
    assert _show_versions._users_of("/nowhere/libblas.so") == []


def test_no_blas_is_said_plainly(capsys, monkeypatch):
    monkeypatch.setattr(_show_versions, "_threadpools", lambda: [])
    out = _printed(capsys)
    assert "    no BLAS library found" in out


def test_optional_packages_from_metadata(capsys, monkeypatch):
    real_version = metadata.version

    def fake_version(name):
        if name == "torch":
            raise metadata.PackageNotFoundError(name)
        if name == "skl2onnx":
            return "9.8.7"
        return real_version(name)

    monkeypatch.setattr(_show_versions.metadata, "version", fake_version)
    out = _printed(capsys)
    optional = out.split("Optional packages:", 1)[1]
    assert _value(optional, "torch") == ["not installed"]
    assert _value(optional, "skl2onnx") == ["9.8.7"]
    for name in ("dask", "onnxruntime"):
        assert len(_value(optional, name)) == 1


def test_optional_packages_are_not_imported():
    # Run in a fresh interpreter: this test session may have imported them.
    code = (
        "import sys, sk_twolayer\n"
        "sk_twolayer.show_versions()\n"
        "imported = sorted({'torch', 'dask', 'distributed', 'dask_ml',\n"
        "                   'skl2onnx', 'onnxruntime', 'onnx', 'skops'}\n"
        "                  & set(sys.modules))\n"
        "print('IMPORTED', imported)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=True,
                            capture_output=True, text=True)
    assert "IMPORTED []" in result.stdout, result.stdout
