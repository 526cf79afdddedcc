"""The documentation's code blocks as tests: docs/**/*.rst (and, through
tests/test_readme.py, README.md).

``python -m pytest`` (the README's test command, which CI's readme session
runs) collects every code block of the pages under docs/ with sybil, and
runs each page's blocks in order, in one namespace per page, as a reader who
pastes them one after the other would:

- ``python`` blocks run as written, in a temporary directory of their own
  (what they write stays there), with ``__name__`` set to ``"__main__"`` as
  in a script or an interactive session, so that the blocks under
  ``if __name__ == "__main__":`` run. A page makes the data that it reads
  itself (the Scaling out guide writes its parquet folders in a block).
  Dask clients and clusters that a page leaves open are closed after its
  last block.
- ``bash`` blocks: each command runs from the root of the checkout, with
  this interpreter for ``python``; a ``pip install`` is not run, since it
  would change the environment under test, but checked (it installs from
  the checkout, with extras that pyproject.toml declares).
- A block that cannot run here (a GPU, a cluster's address, a command that
  runs CI itself) follows a ``skip: next "why"`` comment, whose reason
  pytest reports; the page says why in its text too.
- ``text`` blocks are output, not code. Any other language, or a literal
  block (``::``) or unlabelled fence holding code, fails
  tests/test_docs.py, so that nothing escapes these checks unseen.

This file lives in docs/, not at the root of the checkout: pytest puts the
directory of a conftest.py on sys.path, and the checkout's root there would
make the wheel sessions of CI import the working copy instead of the wheel.
The pages that the build generates (auto_examples, generated) are not
collected: the gallery runs in the docs session.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Files under docs/ that pytest must not import or collect.
collect_ignore = ["conf.py", "sg_execution_times.rst"]
collect_ignore_glob = ["_build/*", "auto_examples/*", "generated/*"]

try:
    from sybil import Sybil
    from sybil.parsers import markdown, rest
except ImportError:  # the test extra has sybil; without it, no doc tests
    Sybil = None


# ----------------------------------------------------------- bash blocks
def declared_extras():
    """The extras that pyproject.toml declares."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1]
    section = section.split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+)\s*=\s*\[", section, re.M))


def check_install(words):
    """A documented ``pip install``: what it installs of this package comes
    from the checkout (nothing is published), with declared extras."""
    known = declared_extras()
    for word in words:
        if word.startswith("-"):
            continue
        name, _, extras = word.partition("[")
        extras = {e.strip() for e in extras.rstrip("]").split(",") if e.strip()}
        if name.lower().replace("_", "-") == "sk-twolayer":
            raise AssertionError(
                f"{word!r}: sk-twolayer is not published on any index; install "
                f"it from the checkout: pip install \".[{','.join(sorted(extras))}]\"")
        if name == ".":
            unknown = extras - known
            if unknown:
                raise AssertionError(f"{word!r}: pyproject.toml declares no extra "
                                     f"{sorted(unknown)} (it has {sorted(known)})")


def run_bash_block(example):
    for line in example.parsed.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for command in line.split(" && "):
            words = shlex.split(command)
            if words[:3] == ["python", "-m", "pip"] and words[3:4] == ["install"]:
                check_install(words[4:])
            elif words[0] == "python":
                done = subprocess.run([sys.executable, *words[1:]], cwd=ROOT,
                                      capture_output=True, text=True, timeout=300)
                assert done.returncode == 0, (
                    f"{command!r} exited with {done.returncode}:\n"
                    f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            else:
                raise AssertionError(
                    f"{command!r}: no way to run this here; if it cannot run in "
                    "CI, put a `skip: next \"why\"` comment before its block and "
                    "say why on the page")


# ------------------------------------------------------------ the pages
@pytest.fixture(scope="module")
def docs_workdir(request, tmp_path_factory):
    """Each page runs in an empty directory of its own."""
    page = Path(request.node.path)
    path = tmp_path_factory.mktemp(page.stem)
    here = os.getcwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(here)


def as_main(namespace):
    """The page's blocks run as a script's do, or an interactive session's:
    ``__name__`` is ``"__main__"``."""
    namespace["__name__"] = "__main__"


def close_dask(namespace):
    """Close the clients, then the clusters, that a page left open."""
    kinds = ("distributed.client.Client", "distributed.deploy")
    objects = [v for v in namespace.values()
               if f"{type(v).__module__}.{type(v).__name__}".startswith(kinds)]
    for obj in sorted(objects, key=lambda v: type(v).__name__ != "Client"):
        obj.close()


# One per kind of page: the reST pages here, and README.md, which
# tests/test_readme.py runs with the second.
SYBILS = [] if Sybil is None else [
    Sybil(parsers=[rest.SkipParser(), rest.PythonCodeBlockParser(),
                   rest.CodeBlockParser("bash", run_bash_block)],
          patterns=["*.rst"], fixtures=["docs_workdir"], setup=as_main,
          teardown=close_dask),
    Sybil(parsers=[markdown.SkipParser(), markdown.PythonCodeBlockParser(),
                   markdown.CodeBlockParser("bash", run_bash_block)],
          path=str(ROOT), patterns=["README.md"], excludes=["benchmarks/*"]),
]
if SYBILS:
    pytest_collect_file = SYBILS[0].pytest()
