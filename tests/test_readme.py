"""README.md's code blocks, run in order in one namespace, as a reader who
pastes them one after the other would.

docs/conftest.py runs the documentation's code blocks with sybil and says
how; README.md sits above docs/, outside that conftest's reach, so this
module runs its blocks with the same parsers and evaluators. (No conftest.py
sits at the root of the checkout: pytest would put the root on sys.path, and
CI's wheel sessions would import the working copy instead of the wheel.)
"""

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    os.environ.get("SK_TWOLAYER_TEST_INSTALLED") == "1",
    reason="README.md describes the checkout: CI's readme session runs its "
           "blocks, the wheel sessions do not")


def _docs_conftest():
    spec = importlib.util.spec_from_file_location("docs_conftest",
                                                  ROOT / "docs" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOCS = _docs_conftest()
EXAMPLES = (list(DOCS.SYBILS[1].parse(ROOT / "README.md").examples())
            if DOCS.SYBILS else [])


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory):
    """The blocks run in a scratch directory; what they leave open is closed."""
    path = tmp_path_factory.mktemp("readme")
    here = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(here)
        if EXAMPLES:
            DOCS.close_dask(EXAMPLES[0].namespace)


@pytest.mark.skipif(not EXAMPLES, reason="sybil is not installed (the test extra)")
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"line{e.line}")
def test_readme_block(example, readme_dir):
    example.evaluate()
