"""Checks that only mean something when CI tests the built wheel.

``.ci/run`` builds the wheel, installs it into a fresh virtual environment and
runs this test suite from a directory outside the checkout, with
``SK_TWOLAYER_TEST_INSTALLED=1``. These tests then make sure that the code
under test is the wheel's and not the working copy's: had the tests imported
``sk_twolayer`` from the checkout, a module missing from the wheel would go
unnoticed. Without the variable (the README's test command) they are skipped.
"""

import os
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

import sk_twolayer

CHECKOUT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    os.environ.get("SK_TWOLAYER_TEST_INSTALLED") != "1",
    reason="set SK_TWOLAYER_TEST_INSTALLED=1 to test an installed wheel",
)


def _package_dir():
    return Path(sk_twolayer.__file__).resolve().parent


def test_package_comes_from_site_packages_not_the_checkout():
    site_packages = {
        Path(sysconfig.get_paths()[key]).resolve()
        for key in ("purelib", "platlib")
    }
    assert _package_dir().parent in site_packages, sk_twolayer.__file__
    assert _package_dir() != CHECKOUT / "sk_twolayer", sk_twolayer.__file__


def test_imported_files_are_the_installed_distributions():
    # An editable install or a stray checkout on sys.path would import
    # files that the distribution's RECORD does not list.
    dist = metadata.distribution("sk-twolayer")
    init = next(f for f in dist.files if f.as_posix() == "sk_twolayer/__init__.py")
    assert Path(dist.locate_file(init)).resolve() == Path(
        sk_twolayer.__file__).resolve()
    assert dist.version == sk_twolayer.__version__


def test_wheel_carries_its_license():
    dist = metadata.distribution("sk-twolayer")
    assert dist.metadata["License-Expression"] == "BSD-3-Clause"
    licenses = [f for f in dist.files if f.name == "LICENSE"]
    assert licenses, "LICENSE is missing from the installed distribution"
    text = Path(dist.locate_file(licenses[0])).read_text(encoding="utf-8")
    assert "Redistribution and use in source and binary forms" in text


def test_conftest_set_up_scipy_array_api_before_scipy_was_imported():
    # tests/conftest.py must still load when the suite runs from outside the
    # checkout: scikit-learn's array-API checks depend on it.
    assert os.environ.get("SCIPY_ARRAY_API") == "1"
    try:
        import scipy._lib._array_api as scipy_array_api
    except ModuleNotFoundError:  # SciPy 1.11 has no array-API support to switch on
        return
    assert getattr(scipy_array_api, "SCIPY_ARRAY_API", True)
