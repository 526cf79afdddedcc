"""The documentation's claims: code blocks that run, figures that are measured.

docs/conftest.py and tests/test_readme.py run every code block of docs/ and
README.md with sybil. This module checks what sybil cannot see:

- no code hides where sybil does not look: a literal block (``::``) or an
  unlabelled Markdown fence, or a language sybil does not run;
- every published benchmark figure comes from benchmarks/results.json: the
  generated parts of the pages are what ``benchmarks/report.py`` writes from
  it, and outside them no page states a measured figure that the file lacks.
"""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import report  # noqa: E402


def _conftest():
    """docs/conftest.py, which collects the documentation's blocks."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_conftest",
                                                  ROOT / "docs" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

# The pages that conftest.py collects: not those that the build generates.
GENERATED = ("docs/_build/", "docs/auto_examples/", "docs/generated/",
             "docs/sg_execution_times.rst")
DOC_PAGES = sorted(
    page for page in (p.relative_to(ROOT).as_posix() for p in
                      [ROOT / "README.md", *(ROOT / "docs").glob("*.rst"),
                       *(ROOT / "docs").glob("*/*.rst")])
    if not page.startswith(GENERATED))
# Languages of code blocks: what runs (conftest.py), and what is output.
RUN = {"python", "bash"}
OUTPUT = {"text"}


# ----------------------------------------------------------- code blocks
def _rst_blocks(text):
    """(line, language) of each code block of a reST page, with '::' for a
    literal block."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        directive = re.match(r"\s*\.\. (?:code-block|code|sourcecode)::\s*(\S*)", line)
        if directive:
            yield i + 1, directive.group(1) or "(none)"
        elif (line.rstrip().endswith("::") and not line.lstrip().startswith("..")
              and i + 2 < len(lines) and lines[i + 1].strip() == ""
              and lines[i + 2].startswith((" ", "\t"))):
            yield i + 1, "::"


def _md_blocks(text):
    fence = None
    for i, line in enumerate(text.splitlines()):
        if fence is None and line.startswith("```"):
            fence = line
            yield i + 1, line[3:].strip() or "(none)"
        elif fence is not None and line.startswith("```"):
            fence = None


def test_every_code_block_is_one_that_runs_or_output():
    hidden = []
    for page in DOC_PAGES + ["benchmarks/README.md"]:
        text = (ROOT / page).read_text()
        blocks = _md_blocks(text) if page.endswith(".md") else _rst_blocks(text)
        for line, language in blocks:
            if language not in RUN | OUTPUT:
                hidden.append(f"{page}:{line}: {language}")
    assert not hidden, (
        "code blocks that the doc tests do not run; give each a language that "
        f"runs ({sorted(RUN)}) or 'text' for output: {hidden}")


def test_the_doc_tests_see_every_block_that_runs():
    # What sybil collects (docs/conftest.py) is each page's python and bash
    # blocks, and their skip comments, nothing less.
    conftest = _conftest()
    assert conftest.SYBILS, "sybil is not installed (the test extra)"
    for page in DOC_PAGES:
        text = (ROOT / page).read_text()
        blocks = _md_blocks(text) if page.endswith(".md") else _rst_blocks(text)
        expected = sum(language in RUN for _, language in blocks)
        expected += len(re.findall(r"^(?:\.\. |<!-- )skip: next", text, re.M))
        (sybil,) = [s for s in conftest.SYBILS if s.should_parse(ROOT / page)]
        assert len(list(sybil.parse(ROOT / page).examples())) == expected, page


def test_an_install_line_from_an_index_or_with_a_wrong_extra_fails():
    conftest = _conftest()
    with pytest.raises(AssertionError, match="not published"):
        conftest.check_install(["sk-twolayer[dask]"])
    with pytest.raises(AssertionError, match="declares no extra"):
        conftest.check_install([".[daks]"])
    conftest.check_install(["-q", ".[dask,onnx]", "torch==2.13.0"])


# --------------------------------------------------------------- figures
def test_the_pages_figures_are_the_results_files():
    stale = report.stale_pages()
    assert not stale, (f"{stale}: the generated figures differ from "
                       "benchmarks/results.json; run python benchmarks/report.py")


def test_each_generated_part_of_the_pages_comes_from_one_machine_and_commit():
    mixed = report.mixed_parts()
    assert not mixed, "\n".join(mixed)


def _run(machine, commit):
    return {"id": f"{machine}-{commit}", "date": "2026-12-01", "commit": commit,
            "command": "python benchmarks/run.py", "seconds": 1.0,
            "run_seconds": 2.0, "versions": {"python": "3.11"}, "config": {},
            "machine": {"lscpu": {"Model name": machine, "CPU(s)": "2"}}}


def test_the_check_fails_where_a_part_mixes_machines_or_commits(tmp_path, capsys):
    # A page whose one generated part (the run times) draws on two sections,
    # and a results file where they come from one run, or from two.
    page = tmp_path / "page.md"
    page.write_text("# runs\n\n<!-- results: run-times -->\n<!-- /results -->\n")
    pages = [str(page)]  # (relative to the checkout, or absolute)
    one = {"runs": {"roofline": _run("CPU A", "abc1234"),
                    "vs_mlp": _run("CPU A", "abc1234")}}
    results = tmp_path / "results.json"
    results.write_text(json.dumps(one))
    argv = ["--results", str(results), "--pages", *pages]
    assert report.main(argv) == 0  # (writes the part)
    assert report.main(["--check", *argv]) == 0
    for other in (_run("CPU B", "abc1234"), _run("CPU A", "def5678")):
        two = {"runs": {"roofline": _run("CPU A", "abc1234"), "vs_mlp": other}}
        results.write_text(json.dumps(two))
        report.main(argv)  # (the part as two runs give it: still mixed)
        capsys.readouterr()
        assert report.main(["--check", *argv]) == 1
        out = capsys.readouterr().out
        assert "run-times mixes 2 machines or commits" in out
        machine = other["machine"]["lscpu"]["Model name"]
        assert "(a) on CPU A" in out and f"(b) on {machine}" in out
        assert other["commit"] in out


def test_every_goal_of_the_results_file_is_stated():
    # docs/benchmarks.rst states each goal once, in words, from report.GOALS:
    # a goal that run.py measures but GOALS does not describe would go
    # missing from the page.
    results = json.loads(report.RESULTS.read_text())
    described = [key for key, _ in report.GOALS]
    missing = [key for key in results["targets"]
               if not any(key == d or key.startswith(d + " ") for d in described)]
    assert not missing, f"goals without words in benchmarks/report.py's GOALS: {missing}"


# A measured figure: a number with a unit of time, size, rate or ratio, or a
# number in scientific notation, or a decimal fraction such as 0.82 or 1.49
# (not a version such as 3.11 or 2025.1.0: see _is_version).
FIGURE = re.compile(
    r"(?<![\w.])(?P<num>\d[\d,]*(?:\.\d+)?(?:e-?\d+)?)"
    r"(?:(?P<unit>\s?(?:x\b|×|%|ms\b|µs\b|us\b|s\b|min\b|MiB\b|MB\b|GiB\b|GB\b|"
    r"GFLOP/s|TFLOP/s))|(?=[^\w.]|$))")
VERSION_BEFORE = re.compile(
    r"(python|numpy|scipy|scikit-learn|sklearn|dask|distributed|pyspark|spark|"
    r"torch|pytorch|openblas|onnxruntime|skl2onnx|skops|joblib|dask-ml|java|"
    r"sybil|nox|uv|setuptools|pandas|pyarrow|matplotlib|sphinx|numpydoc|"
    r"version|release|releases|mllib|opset|==|>=|<=)[\s\w`'\"()=,.-]{0,16}$",
    re.I)

# Numbers that are not measurements: settings, tolerances of tests, the
# sizes and constants that a benchmark or the code is defined with.
NOT_MEASURED = {
    "1e-12": "the test suite's tolerance for one evaluation",
    "1e-10": "the fault campaign's tolerance for an evaluation against the in-memory one",
    "1e-4": "the default tol",
    "1e-5": "tolerances of the ONNX tests and the benchmark's ONNX check",
    "1e-9": "tolerance of the float64 ONNX test",
    "1e-6": "largest float32 ONNX difference the tests allow",
    "1e-3": "float32 tolerance of the array-API tests; a reg value",
    "1e-15": "bound on the float64 ONNX difference (tests)",
    "0.9": "momentum",
    "0.01": "learning rate",
    "0.02": "the sgd solver's default learning_rate_init",
    "0.002": "the adam solver's default learning_rate_init",
    "0.1": "a parameter value in a snippet or the text",
    "0.2": "validation_fraction in an example",
    "0.5": "a goal: half the GEMM rate",
    "0.8": "a goal (0.8 of the bound) and Dask's pause threshold (80%)",
    "0.85": "a goal",
    "1.0": "the roofline's definition (1.0 = at the bound)",
    "16": "MiB: the row-block scratch budget",
    "128": "MiB: the task-size default",
    "1": "s: the poll-interval default",
    "30": "s: the no-workers-timeout default",
    "10": "a count",
    "80": "%: Dask's pause threshold",
    "25": "%: the memory goal",
    "20": "times numpy: a goal",
    "3": "times Spark: a goal",
    "2": "times a round trip: a goal",
    "1.3": "times MLPClassifier: a goal",
    "1.6": "times one worker: a goal",
    "1.10": "the one-worker goal",
    "10-30": "run-to-run noise, a range stated with the machine",
    "1.9": "scikit-learn 1.9, a version",
    "1e154": "the square root of the largest float64 (changelog)",
    "6e305": "the loss of a bug report (changelog)",
}


def _is_version(text, start, num):
    return (num.count(".") > 1 or re.search(r"\d{4}\.\d", num)
            or VERSION_BEFORE.search(text[max(0, start - 40):start]) is not None)


def _outside_generated_and_code(text, fmt):
    """The page's text without its generated parts and its code blocks."""
    pattern = report.MARKERS[fmt][0]
    text = pattern.sub("", text)
    if fmt == "md":
        return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    # reST: drop each code block's directive and indented body.
    out, skipping = [], False
    for line in text.splitlines():
        if re.match(r"\s*\.\. (code-block|code|sourcecode)::", line):
            skipping = True
            continue
        if skipping and (not line.strip() or line.startswith((" ", "\t"))):
            continue
        skipping = False
        out.append(line)
    return "\n".join(out)


def _renderings(results):
    """The ways a page may print each measured number of the results file,
    by what the number is (seconds, a ratio, a gap, MiB). The runs'
    descriptions (machine, configuration) are not measurements."""
    shown = set()

    def add(key, v):
        if isinstance(v, bool):
            return
        if isinstance(v, int):
            shown.update({str(v), f"{v:,}"})
        elif key.endswith("_s"):  # seconds, shown as s, ms or µs
            shown.update({f"{v:.2f}", f"{v:.3f}", f"{v * 1e3:.0f}",
                          f"{v * 1e3:.1f}", f"{v * 1e6:.0f}"})
        elif key.endswith("_ms"):
            shown.update({f"{v:.0f}", f"{v:.1f}"})
        elif "gap" in key:  # rounding-level differences (report.gap)
            shown.update({report.gap(v, 0), report.gap(v, 1), f"{v:.0e}",
                          f"{v:.1e}"})
        elif key.endswith("mib"):
            shown.update({f"{v:.0f}", f"{v:.1f}"})
        else:  # a ratio, a speedup, a fraction: as it is, or as a percentage
            shown.update({f"{v:.2f}", f"{v:.1f}", f"{100 * v:.0f}",
                          f"{100 * v:.1f}"})

    def walk(key, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k, v)
        elif isinstance(value, list):
            for v in value:
                walk(key, v)
        elif isinstance(value, (int, float)):
            add(key, value)

    for key, value in results.items():
        if key not in ("runs", "table", "about"):
            walk(key, value)
    return shown


@pytest.mark.parametrize("page", report.PAGES + ["docs/changelog.rst"])
def test_no_page_states_a_figure_that_the_results_file_lacks(page):
    results = json.loads(report.RESULTS.read_text())
    shown = _renderings(results)
    fmt = report._format(page)
    text = _outside_generated_and_code((ROOT / page).read_text(), fmt)
    unknown = []
    for match in FIGURE.finditer(text):
        num = match.group("num").rstrip(",")
        if not (match.group("unit") or "." in num or "e" in num):
            continue  # a bare integer: a count, a size, a year
        if _is_version(text, match.start(), num) or num in NOT_MEASURED:
            continue
        if num.replace(",", "") in shown or num in shown:
            continue
        line = text.count("\n", 0, match.start()) + 1
        unknown.append(f"{match.group(0).strip()!r} (line {line} of the page "
                       "without its generated parts)")
    assert not unknown, (
        f"{page} states figures that benchmarks/results.json does not hold: "
        f"{unknown}. Generate them from the file (benchmarks/report.py), or, "
        "for a number that is not a measurement, add it to NOT_MEASURED with "
        "the reason.")
