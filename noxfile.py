"""CI's steps as nox sessions, each in a fresh virtual environment made from
its own install line. Run one with ``nox -s NAME``, all with ``nox``;
``.ci/run`` runs them all, two at a time (nox's ``--parallel``).

readme       the README's test command, exactly as README.md writes it
             (Python 3.11): the default tier of the tests, the docstring
             examples, and every code block of README.md and docs/ (sybil:
             docs/conftest.py, tests/test_readme.py);
dists        build the sdist and the wheel, and check them (twine check
             --strict, the LICENSE, every module);
oldest       the wheel's default tier on the oldest supported stack: Python
             3.10, .ci/oldest.txt (checked against pyproject.toml's floors);
newest       the wheel's default tier on Python 3.13 with the newest
             releases, array-api-strict and the fast extra (numba);
slow_oldest  the slow tier (tests marked slow, run with --runslow) of the
             Dask tests on the oldest stack's Dask release (the floor);
midrange     the Dask tests, both tiers, on Python 3.12 with a Dask release
             from the middle of the supported range (.ci/midrange.txt);
slow_newest  the whole slow tier on the newest stack: the Dask tests on the
             newest Dask release, and the benchmark scripts end to end;
array_api    the array-API tests with PyTorch's CPU build and
             array-api-strict (Python 3.11);
docs         the documentation command, exactly as README.md writes it: the
             site with its gallery executed, any warning an error (Python
             3.11).

Each stack runs what it can break: the default tier on the readme, oldest
and newest stacks, and the slow tier of the Dask tests once for each Dask
release that CI pins (floor, mid-range, newest). Every session prints its
15 slowest tests (pyproject.toml's --durations=15).

The wheel sessions install the wheel that dists built (nox runs dists
first: ``requires``), and run the tests from a directory outside the
checkout, so that they import the installed wheel, not the working copy.
The sessions that install with uv (nox's ``uv`` backend: ``pip install
"nox[uv]"``) create their environments in seconds; readme and docs run the
documented pip commands, and array_api takes PyTorch from pip (see there).
"""

import contextlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import fcntl
except ImportError:  # not POSIX: no lock, run the sessions one at a time
    fcntl = None

nox.needs_version = ">=2026.10.20"  # --parallel with requires=
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
nox.options.reuse_venv = "no"

# Let Python cache the bytecode of what it imports (__pycache__): some
# machines, CI's included, set PYTHONDONTWRITEBYTECODE. No environment is
# byte-compiled at install (uv does not; for pip, see run_documented), and
# every Dask worker and other subprocess of the tests imports numpy, scipy,
# scikit-learn, pandas and dask anew: with the variable set, each compiled
# them from source again (the oldest and newest suites took 640 and 700 s
# instead of about 400 s, measured for the old .ci/run).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

ROOT = Path(__file__).resolve().parent
README = ROOT / "README.md"

# PyTorch's CPU build exists on CI's machines for Python 3.11 only, and PyPI
# would give the multi-GB CUDA build: torch is installed on 3.11 only (the
# array_api session). Elsewhere the array-API tests run with
# array-api-strict, and PyTorch's skip.
NO_TORCH = ["--allow", "torch is not installed|could not import 'torch'"]

# The Dask tests (the data-parallel fit, Incremental and searches, faults).
DASK_TESTS = ["test_dask_parallel.py", "test_dask.py", "test_dask_faults.py"]

# The versions that make a stack what it is, printed in each session's log.
KEY_VERSIONS = (
    "from importlib import metadata; print(*sorted(f'{d.name}=={d.version}' "
    "for d in metadata.distributions() if d.name.lower().replace('_', '-') in "
    "{'numpy', 'scipy', 'scikit-learn', 'pandas', 'dask', 'distributed', "
    "'dask-ml', 'onnx', 'onnxruntime', 'skl2onnx', 'skops', "
    "'array-api-strict', 'torch'}), sep=', ')")


# ----------------------------------------------------------------- helpers
def documented_command(session, marker):
    """The one-line command of README.md's ```bash blocks that contains
    ``marker``: CI runs the command the README shows, not a copy of it."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(),
                        re.M | re.S)
    found = [block.strip() for block in blocks if marker in block]
    if len(found) != 1 or "\n" in found[0]:
        session.error(f"README.md should have one ```bash block with "
                      f"{marker!r}, of one line; found {found}")
    return found[0]


@contextlib.contextmanager
def building_in_the_checkout(session):
    """One session at a time builds the package in the checkout.

    ``pip install .`` (and uv) run setuptools in the checkout, which writes
    build/ and sk_twolayer.egg-info/ there: two sessions installing from the
    checkout at the same time (``nox --parallel``) would trip over each
    other's files.
    """
    if fcntl is None:
        yield
        return
    with open(session.cache_dir / "checkout-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_documented(session, marker):
    """Run README.md's command with ``marker`` in this session's environment,
    part by part as ``&&`` would; the install, under the checkout's lock.

    PIP_COMPILE=0 spares pip byte-compiling every module it installs: 34 of
    the 53 s (CPU: 34 of 49 s) that ``pip install ".[test]"`` took here,
    where compiling the modules that the tests import, as they import them,
    took 7 s. The command itself is as the README writes it.
    """
    for part in documented_command(session, marker).split(" && "):
        if "pip install" in part:
            with building_in_the_checkout(session):
                session.run("bash", "-c", part, external=True,
                            env={"PIP_COMPILE": "0"})
        else:
            session.run("bash", "-c", part, external=True)


def dist_dir(session):
    """Where dists leaves the sdist and the wheel for oldest and newest."""
    return session.cache_dir / "dist"


def built_wheel(session):
    wheels = sorted(dist_dir(session).glob("*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one wheel in {dist_dir(session)}, found "
                      f"{[w.name for w in wheels]}: run `nox -s dists`")
    return wheels[0]


def junit_checked(session, junit, *check_args):
    """check_skips.py on a pytest run's JUnit XML: no array-API test skipped
    without an allowed reason, and each --require matched a passed test."""
    session.run("python", str(ROOT / ".ci" / "check_skips.py"), str(junit),
                *check_args)


def run_tests_on_the_wheel(session, *, check_args, pytest_args=(), tests=None):
    """The whole test suite against the wheel installed in this session.

    Run from the checkout, ``python -m pytest`` puts the checkout on
    sys.path, so it would import sk_twolayer from the working copy, not from
    the wheel: a module left out of the wheel would pass. So pytest runs
    from an empty directory outside the checkout: sys.path gets that
    directory and tests/ (which has no __init__.py), and ``import
    sk_twolayer`` finds the installed wheel. The checkout's tests/ (with its
    conftest.py, which sets SCIPY_ARRAY_API) are given by path; the doctests
    come from the installed modules through --pyargs; -c keeps
    pyproject.toml's pytest settings. SK_TWOLAYER_TEST_INSTALLED=1 switches
    on tests/test_installed_package.py, which fails unless sk_twolayer was
    imported from this environment's site-packages. ``tests`` (paths under
    tests/) runs those modules alone, without the doctests.
    """
    with tempfile.TemporaryDirectory(prefix="sk-twolayer-tests-") as empty:
        junit = Path(empty) / "junit.xml"
        with session.chdir(empty):
            session.run("python", "-c",
                        "import sk_twolayer; sk_twolayer.show_versions()")
            session.run(
                "python", "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
                "--rootdir", str(ROOT), "-rs",
                f"--junitxml={junit}",
                *([str(ROOT / "tests"), "--pyargs", "sk_twolayer"] if tests is None
                  else [str(ROOT / "tests" / t) for t in tests]),
                *pytest_args,
                env={"SK_TWOLAYER_TEST_INSTALLED": "1"})
        junit_checked(session, junit, "--installed", *check_args)


def install_the_wheel(session, *requirements, extras="test"):
    """The wheel with its test extra (or ``extras``), wheels only (CI never
    compiles a dependency; a release without a wheel for this Python fails
    the install instead of building for minutes)."""
    session.install("--only-binary=:all:", f"{built_wheel(session)}[{extras}]",
                    *requirements)
    session.run("python", "-c", KEY_VERSIONS)


def check_oldest_pins(session):
    """.ci/oldest.txt is the declared floors: numpy and scipy at
    pyproject.toml's ``>=``, scikit-learn at its minor, dask and distributed
    at the dask extra's ``>=``."""
    project = nox.project.load_toml(ROOT / "pyproject.toml")["project"]
    pins = dict(re.findall(r"^([\w-]+)==(\S+)$",
                           (ROOT / ".ci" / "oldest.txt").read_text(), re.M))

    def floor(requirement):
        return Version(next(s.version for s in requirement.specifier
                            if s.operator == ">="))

    floors = {r.name: floor(r) for r in map(Requirement,
                                            project["dependencies"])}
    floors.update({r.name: floor(r) for r in map(
        Requirement, project["optional-dependencies"]["dask"])
        if r.name in ("dask", "distributed")})
    wrong = []
    for name, wanted in floors.items():
        pin = Version(pins.get(name, "0"))
        # scikit-learn: its oldest supported minor, at its latest patch.
        same = (pin.release[:2] == wanted.release[:2]
                if name == "scikit-learn" else pin == wanted)
        if not same:
            wrong.append(f"{name}: pyproject.toml >={wanted}, "
                         f".ci/oldest.txt =={pins.get(name)}")
    if wrong:
        session.error("the oldest stack is not the declared floors: "
                      + "; ".join(wrong))
    session.log(f"oldest stack = declared floors: {pins}")


# ---------------------------------------------------------------- sessions
@nox.session(python="3.11", venv_backend="virtualenv", allow_parallel=True)
def readme(session):
    """The README's test command, as a new user runs it: pip, then pytest
    (whose exit code 5, no tests collected, fails the session). pytest's
    testpaths include docs/, whose code blocks run here, once, and so do
    README.md's (tests/test_readme.py, which the wheel sessions skip)."""
    run_documented(session, '".[test]"')


@nox.session(python="3.11", venv_backend="uv", allow_parallel=True)
def dists(session):
    """Build the sdist and the wheel (the wheel from the sdist) from a copy
    of the checkout's files, tracked and untracked but not ignored; check
    their metadata (twine check --strict also fails on warnings, such as a
    README that would not render on PyPI) and their contents."""
    session.install("build[uv]>=1.2", "twine>=6.1")
    src = Path(session.create_tmp()) / "src"
    shutil.rmtree(src, ignore_errors=True)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True)
    if listed.returncode:
        session.error(f"dists builds from the files that git lists, and git "
                      f"failed: {listed.stderr.strip()}")
    files = listed.stdout
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():  # a tracked file may be deleted
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    dist = dist_dir(session)
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--installer=uv", "--outdir",
                str(dist), str(src))
    session.run("python", "-m", "twine", "check", "--strict",
                *map(str, sorted(dist.iterdir())))

    # Both carry the LICENSE, and the wheel every module of the package
    # (the wheel is built from the sdist, so this covers the sdist too).
    (wheel,), (sdist,) = dist.glob("*.whl"), dist.glob("*.tar.gz")
    wheel_names = zipfile.ZipFile(wheel).namelist()
    sdist_names = tarfile.open(sdist).getnames()
    session.log("\n".join(["wheel:", *wheel_names, "sdist:", *sdist_names]))
    missing = []
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel_names):
        missing.append(f"LICENSE in {wheel.name}")
    if not any(n.count("/") == 1 and n.endswith("/LICENSE")
               for n in sdist_names):
        missing.append(f"LICENSE in {sdist.name}")
    for module in sorted((src / "sk_twolayer").rglob("*.py")):
        if module.relative_to(src).as_posix() not in wheel_names:
            missing.append(f"{module.relative_to(src)} in {wheel.name}")
    if missing:
        session.error("missing: " + ", ".join(missing))


@nox.session(python="3.10", venv_backend="uv", requires=["dists"],
             allow_parallel=True)
def oldest(session):
    """The wheel's tests on the oldest supported stack.

    scikit-learn 1.6 dispatches to the Array API only with SciPy 1.14 or
    newer (and the array-api-compat package), so at the floor, SciPy 1.11,
    no array-API test can run: array-api-strict is not installed, and
    scikit-learn's array-API checks skip.
    """
    check_oldest_pins(session)
    install_the_wheel(session, "-c", str(ROOT / ".ci" / "oldest.txt"))
    run_tests_on_the_wheel(session, check_args=[
        *NO_TORCH,
        "--allow", "array_api_compat is not installed",
        "--allow", "could not import 'array_api_strict'"
                   "|array_api_strict is not installed"])


@nox.session(python="3.13", venv_backend="uv", requires=["dists"],
             allow_parallel=True)
def newest(session):
    """The wheel's default tier on the newest releases, with
    array-api-strict, whose tests must run (and so must the data-parallel
    Dask tests), and with the fast extra, whose compiled kernels' tests must
    run too."""
    install_the_wheel(session, "array-api-strict>=2.3", extras="test,fast")
    run_tests_on_the_wheel(
        session,
        check_args=[*NO_TORCH,
                    "--require", "array_namespace=array_api_strict",
                    "--require", "test_dask_parallel::",
                    "--require", "test_fast::test_compiled_update_rules"])


@nox.session(python="3.10", venv_backend="uv", requires=["dists"],
             allow_parallel=True)
def slow_oldest(session):
    """The slow tier of the Dask tests (every kill point, the fault
    campaign of 30 fits, ...) on the oldest stack's Dask release, the
    floor that pyproject.toml declares."""
    check_oldest_pins(session)
    install_the_wheel(session, "-c", str(ROOT / ".ci" / "oldest.txt"))
    run_tests_on_the_wheel(
        session, tests=DASK_TESTS, pytest_args=["--runslow", "-m", "slow"],
        check_args=["--require", "test_a_randomized_fault_campaign",
                    "--require", "every point"])


@nox.session(python="3.12", venv_backend="uv", requires=["dists"],
             allow_parallel=True)
def midrange(session):
    """The wheel's Dask tests, both tiers, on a Dask release from the
    middle of the range that pyproject.toml allows (.ci/midrange.txt):
    from distributed 2025.10 through 2026.6, Client.scheduler_info() lists
    only the first five workers unless asked for all, an API that changed
    and changed back between the floor and the newest release, which the
    other stacks run. Python 3.12, the middle of the supported Pythons."""
    install_the_wheel(session, "-c", str(ROOT / ".ci" / "midrange.txt"))
    run_tests_on_the_wheel(
        session, tests=DASK_TESTS, pytest_args=["--runslow"],
        check_args=["--require", "test_dask_parallel::",
                    "--require", "test_every_worker_is_seen",
                    "--require", "test_a_randomized_fault_campaign"])


@nox.session(python="3.13", venv_backend="uv", requires=["dists"],
             allow_parallel=True)
def slow_newest(session):
    """The whole slow tier on the newest stack: the Dask tests' on the
    newest Dask release, and the benchmark scripts end to end."""
    install_the_wheel(session, "array-api-strict>=2.3", extras="test,fast")
    run_tests_on_the_wheel(
        session, tests=["."], pytest_args=["--runslow", "-m", "slow"],
        check_args=["--require", "test_a_randomized_fault_campaign",
                    "--require", "every point"])


@nox.session(python="3.11", venv_backend="uv", allow_parallel=True)
def array_api(session):
    """The array-API tests for real, not as skips.

    The README's command skips them where PyTorch is absent (it is
    optional). Here the environment gets array-api-strict and PyTorch's CPU
    build, then runs the tests that need them: scikit-learn's array-API
    estimator checks (in test_common), ours, and the accelerator benchmark's
    smoke test on the CPU; check_skips.py fails the session if any of them
    skipped, and asks that tests on both namespaces passed.

    PyTorch comes from pip: ``torch==2.13.0``, the CPU build that lies on
    CI's machines, where pip's configuration finds it (uv does not look
    there, and PyPI's torch is the multi-GB CUDA build, which this session
    refuses). Elsewhere, point pip at a CPU build of that release.
    """
    with building_in_the_checkout(session):
        # --refresh-package: uv would reuse a wheel of the checkout that it
        # built before, as long as pyproject.toml is unchanged.
        session.install("--refresh-package", "sk-twolayer", ".[test]",
                        "array-api-strict>=2.3", "pip")
    session.run("python", "-m", "pip", "install", "--no-compile",
                "torch==2.13.0")
    session.run("python", "-c", "import sys, torch; sys.exit("
                "torch.version.cuda and f'torch {torch.__version__} is a "
                "CUDA build, not the CPU build')")
    session.run("python", "-c", KEY_VERSIONS)
    with tempfile.TemporaryDirectory(prefix="sk-twolayer-tests-") as tmp:
        junit = Path(tmp) / "array_api.xml"
        session.run("python", "-m", "pytest", "-rs", f"--junitxml={junit}",
                    "tests/test_array_api.py", "tests/test_common.py",
                    "-k", "array_api or device_section",
                    "tests/test_benchmarks.py::"
                    "test_benchmark_device_section_on_the_cpu")
        junit_checked(session, junit,
                      "--require", "test_array_api::.*torch",
                      "--require", "test_array_api::.*array_api_strict",
                      "--require", "array_namespace=torch",
                      "--require", "array_namespace=array_api_strict",
                      "--require", "test_benchmark_device_section_on_the_cpu")


@nox.session(python="3.11", venv_backend="virtualenv", allow_parallel=True)
def docs(session):
    """The README's documentation command, in an environment that has only
    the docs extra: Sphinx builds the site and executes every example of the
    gallery, and any warning fails (-W).

    What an earlier build left is removed first: sphinx-gallery does not
    run an example again whose output it has, so the gallery is executed
    here on every run, and the session checks that each example ran.
    """
    for built in ("docs/_build", "docs/auto_examples", "docs/generated"):
        shutil.rmtree(ROOT / built, ignore_errors=True)
    (ROOT / "docs" / "sg_execution_times.rst").unlink(missing_ok=True)
    run_documented(session, "sphinx")
    # sphinx-gallery's table of the examples it ran, with their times.
    ran = dict(re.findall(r"``\.\./examples/(plot_\w+\.py)``\)\n\s+- ([\d:.]+)",
                          (ROOT / "docs" / "sg_execution_times.rst").read_text()))
    session.log(f"the gallery executed {len(ran)} examples: {ran}")
    not_run = sorted({p.name for p in (ROOT / "examples").glob("plot_*.py")}
                     - set(ran))
    if not_run:
        session.error(f"the gallery did not execute {not_run}")
