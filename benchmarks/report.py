"""The pages' benchmark figures, generated from ``benchmarks/results.json``.

Every measured figure that README.md, benchmarks/README.md and the pages
under docs/ publish is written here, from the results file that
``benchmarks/run.py`` fills, section by section. A page marks each
generated part with its name::

    <!-- results: NAME -->            .. results: NAME
    ...                               ...
    <!-- /results -->                 .. /results

(Markdown on the left, reStructuredText on the right; both are comments,
invisible on the rendered page.) After a benchmark run::

    python benchmarks/report.py           # rewrite the generated parts
    python benchmarks/report.py --check   # exit 1 where a page is out of date,
                                          # or a part mixes machines or commits

A published figure comes from one run, on one machine, at one commit: each
generated part draws on some sections of the results file, and ``--check``
fails where those sections were measured on different machines or at
different commits, and says which. Where the package's code
(``sk_twolayer/``) changed since a figure's commit, the page says
"measured at COMMIT, older than the code" (``git diff``; where git cannot
tell, the page keeps what it said).

tests/test_docs.py runs the check, and also fails on a figure written by
hand anywhere in those pages that the results file does not hold.
"""

import argparse
import functools
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sections  # noqa: E402
from common import RESULTS, machine_id, older_than_code, spread_text  # noqa: E402
from dask_cost import (REPORTED_AT, cost_model, ops_text, pinning_text,  # noqa: E402
                       wall_text)
from dask_fit import spark_note  # noqa: E402
from exactness import CONTENDERS  # noqa: E402

ROOT = HERE.parent
PAGES = ["README.md", "benchmarks/README.md", "docs/benchmarks.rst",
         "docs/scaling_out.rst", "docs/scaling_out_design.rst",
         "docs/user_guide/accelerators.rst", "docs/user_guide/solvers.rst"]

MARKERS = {
    "md": (re.compile(r"^<!-- results: ([\w-]+) -->\n(.*?)^<!-- /results -->$",
                      re.M | re.S),
           "<!-- results: {name} -->\n{body}\n<!-- /results -->"),
    "rst": (re.compile(r"^(?P<indent>[ ]*)\.\. results: ([\w-]+)\n(.*?)"
                       r"^(?P=indent)\.\. /results$", re.M | re.S),
            ".. results: {name}\n\n{body}\n\n.. /results"),
}


# ----------------------------------------------------------------- helpers
def _format(path):
    return "md" if str(path).endswith(".md") else "rst"


def table(header, rows, fmt, widths=None):
    """A table: Markdown's pipes, or reStructuredText's list-table."""
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
        return "\n".join(lines)
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append("   :widths: " + " ".join(map(str, widths)))
    lines.append("")
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            lines.append(("   * - " if i == 0 else "     - ") + str(cell)
                         if str(cell) else ("   * -" if i == 0 else "     -"))
    return "\n".join(lines)


def text_block(lines, fmt):
    """Lines of run.py's own output: in Markdown, as they print; in
    reStructuredText, narrow enough for the page's column (a monospace
    block as wide as the longest line would scroll sideways and hide the
    ends of the lines, the commit and the machine): each table as a
    list-table, and the other lines as a line block, which wraps."""
    if fmt == "md":
        return "```text\n" + "\n".join(lines) + "\n```"
    parts, rows, words = [], [], []

    def flush():
        if words:
            parts.append("\n".join("| " + _rst_line(line) for line in words))
            words.clear()
        if rows:
            width = max(map(len, rows))
            parts.append(table(rows[0] + [""] * (width - len(rows[0])),
                               [row + [""] * (width - len(row)) for row in rows[1:]],
                               "rst"))
            rows.clear()

    for line in lines:
        line = line.strip()
        if line.startswith("|"):  # a row of a table as run.py prints it
            if words:
                flush()
            if not re.fullmatch(r"[|\s:-]+", line):  # not the |---| rule
                cells = line.split("|")[1:]
                if cells and not cells[-1].strip():
                    cells = cells[:-1]
                rows.append([_rst_cell(cell.strip()) for cell in cells])
        elif line:
            if rows:
                flush()
            words.append(line)
    flush()
    return "\n\n".join(parts)


# Characters that start or end inline markup in reStructuredText.
_RST_INLINE = re.compile(r"([\\*`|_])")


def _rst_text(text):
    """Plain text, as it reads, in reStructuredText (where "--" would
    otherwise print as a dash)."""
    return _RST_INLINE.sub(r"\\\1", text).replace("--", "-\\-")


def _rst_line(line):
    """A line of run.py's output; the command that it ends with, if any
    ("...: python benchmarks/run.py --only dask"), as code."""
    before, found, command = line.partition("python benchmarks/")
    if not found:
        return _rst_text(line)
    return f"{_rst_text(before)}{code(found + command, 'rst')}"


def _rst_cell(text):
    """A table cell's plain text, which must not start a list either."""
    text = _rst_text(text)
    if re.match(r"([-+*]|\(?[0-9a-zA-Z#]+[.)])(\s|$)", text):
        text = "\\" + text
    return text


def code(text, fmt):
    return f"`{text}`" if fmt == "md" else f"``{text}``"


def machine(run):
    """The machine of a run, in words."""
    m = run["machine"]
    cpu = m.get("lscpu", {})
    blas = m.get("blas")
    words = f"{cpu.get('Model name', 'unknown CPU')}, {cpu.get('CPU(s)', '?')} vCPUs"
    if cpu.get("Hypervisor vendor"):
        words += f" under {cpu['Hypervisor vendor']}"
    if cpu.get("L3 cache"):
        words += f", L3 {cpu['L3 cache'].split(' (')[0]}"
    if cpu.get("simd"):
        words += ", " + "/".join(f.upper() for f in cpu["simd"].split())
    if isinstance(blas, list) and blas:
        # NumPy's BLAS, which does the products, where it is listed.
        lib = next((b for b in blas if "numpy" in str(b.get("filepath"))), blas[0])
        version = ".".join(lib["version"].split(".")[:3])
        words += (f", NumPy's {lib['internal_api']} {version} "
                  f"({lib['architecture']} kernels, {lib['num_threads']} threads)")
    return words


# The generated part being rendered, as the page had it (where git cannot
# tell whether the code changed since a figure, the page keeps what it said).
_BEFORE = {"text": ""}


@functools.lru_cache(maxsize=None)
def _older(commit):
    return older_than_code(commit)


def stale_note(run):
    """ "measured at COMMIT, older than the code", where ``sk_twolayer/``
    changed since the run's commit; "" where it did not, or where that
    cannot be told and the page did not say so."""
    commit = run.get("commit")
    if not commit:
        return ""
    note = f"measured at {commit}, older than the code"
    older = _older(commit)
    if older is None:
        older = note in _BEFORE["text"]
    return note if older else ""


def run_of(run):
    """What tells one run from another: its id (older files: its date,
    command and commit)."""
    return run.get("id") or (run["date"], run["command"], run.get("commit"))


def identity(run):
    """What a block's runs must share: the machine and the code."""
    return machine_id(run), run.get("commit"), run.get("changes")


def stamp(results, keys, fmt, packages=("numpy", "scipy", "scikit-learn")):
    """When, where and with what sections were measured: one sentence per
    run (one for all of them where they come from one run)."""
    keys = [keys] if isinstance(keys, str) else [k for k in keys
                                                 if k in results["runs"]]
    groups = {}
    for key in keys:
        groups.setdefault(run_of(results["runs"][key]), []).append(key)
    sentences = []
    for group in groups.values():
        run = results["runs"][group[0]]
        v = run["versions"]
        pkgs = ", ".join(f"{name} {v[name]}" for name in packages if name in v)
        at = f" at {code(run['commit'], fmt)}" if run.get("commit") else ""
        which = "" if len(groups) == 1 else (
            ("Section " if len(group) == 1 else "Sections ")
            + ", ".join(LETTERS[k] for k in group) + ": m")
        note = stale_note(run)
        sentences.append(
            f"{which or 'M'}easured {run['date']}{at} with "
            f"{code(run['command'].strip(), fmt)} on {machine(run)}; Python "
            f"{v['python']}, {pkgs}." + (f" Figures {note}." if note else ""))
    return " ".join(sentences)


def section_text(results, key):
    """A section as run.py prints it."""
    return sections.table({"runs": results["runs"], key: results[key]}).splitlines()


def gap(value, digits=1):
    """A rounding-level difference: 3e-16, 1.2e-6, or 0.084 when large."""
    if value >= 1e-3:
        return f"{value:.{digits + 1}g}"
    return f"{value:.{digits}e}".replace("e-0", "e-")


def _x(value, digits=2):
    return f"{value:.{digits}f}x"


def _with_spread(shown, row, field):
    """A figure and its spread: "1.05x (1.02-1.08)", "(spread not recorded)"."""
    spread = row.get(f"{field}_spread")
    return f"{shown} ({spread_text(spread) if spread else 'spread not recorded'})"


def _f(value, digits=2):
    return f"{value:.{digits}f}"


# ------------------------------------------------------------------- goals
# What each goal of results.json's "targets" says, in words.
GOALS = [
    ("loss_and_gradient_roofline_float64",
     "full-batch loss and gradient, float64: at least 0.85 of the GEMM bound"),
    ("loss_and_gradient_roofline_float32",
     "full-batch loss and gradient, float32: at least 0.8 of the GEMM bound"),
    ("sgd_epoch_roofline_float64", "SGD epoch (batch 200), float64: at least 0.8 "
     "of the GEMM bound"),
    ("sgd_epoch_roofline_float32", "SGD epoch (batch 200), float32: at least 0.8 "
     "of the GEMM bound"),
    ("speedup_vs_mlp_sgd_float64", "sgd fit, float64: at least 1.3x as fast as "
     "MLPClassifier"),
    ("speedup_vs_mlp_sgd_float32", "sgd fit, float32: at least 1.3x as fast as "
     "MLPClassifier"),
    ("speedup_vs_mlp_lbfgs_float64", "lbfgs fit, float64: at least 1.3x as fast "
     "as MLPClassifier"),
    ("speedup_vs_mlp_lbfgs_float32", "lbfgs fit, float32: at least 1.3x as fast "
     "as MLPClassifier"),
    ("speedup_vs_torch full-batch loss+gradient float64", "full-batch loss and "
     "gradient, float64: at least as fast as PyTorch CPU"),
    ("speedup_vs_torch full-batch loss+gradient float32", "full-batch loss and "
     "gradient, float32: at least as fast as PyTorch CPU"),
    ("speedup_vs_torch SGD 5 epochs, batch 200 float64", "SGD epochs, float64: "
     "at least as fast as PyTorch CPU"),
    ("speedup_vs_torch SGD 5 epochs, batch 200 float32", "SGD epochs, float32: "
     "at least as fast as PyTorch CPU"),
    ("memory_ratio_vs_mlp", "peak extra memory of an lbfgs fit: at most 25% of "
     "MLPClassifier's"),
    ("dask_one_worker_vs_memory", "data-parallel fit on one worker, blocks made "
     "on the workers: at most 1.10x the in-memory fit's time (whole fits, set-up "
     "included)"),
    ("dask_one_worker_vs_memory from_array", "the same, blocks sent from an "
     "in-memory array (da.from_array)"),
    ("dask_overhead_vs_round_trip 1 worker(s)", "per-evaluation overhead of the "
     "data-parallel fit, one worker: at most 2x a bare round trip of the same "
     "kind (a call to a worker)"),
    ("dask_overhead_vs_round_trip 2 worker(s)", "the same, two workers"),
    ("dask_two_workers_vs_one", "data-parallel fit: an L-BFGS iteration on two "
     "workers at least 1.6x as fast as on one"),
    ("dask_two_workers_vs_memory", "data-parallel fit: an L-BFGS iteration on "
     "two workers at least 1.8x as fast as in memory on one BLAS thread"),
    ("dask_speedup_vs_spark", "an L-BFGS iteration at least 3x as fast as Spark "
     "MLlib's MLP on the same cores"),
    ("dask_cost_scheduler_mib 16 workers", "data-parallel fit, 16 workers: at "
     "most 2 MiB through the scheduler per evaluation (P=814,090)"),
    ("dask_cost_scheduler_cpu_ms 2 workers", "the scheduler's CPU per "
     "evaluation, 2 workers: at most 5 ms"),
    ("dask_cost_scheduler_cpu_ms per added worker", "the scheduler's CPU per "
     "evaluation: at most 1 ms more per added worker (the slope of a straight "
     "line through the measured K)"),
    ("dask_cost_star_vs_tree 2 workers", "2 workers: an evaluation no slower "
     "than with the other of a star and a tree (the default's time over the "
     "other's)"),
    ("device full-batch loss+gradient fraction_of_gemm_rate", "on a GPU: "
     "full-batch loss and gradient at least 0.5 of the device's GEMM rate"),
    ("device lbfgs", "on a GPU: L-BFGS at least 20x as fast as NumPy on the "
     "machine's CPUs"),
    ("device SGD 1 epoch, batch 200 speedup_vs_torch", "on a GPU: an SGD epoch "
     "(batch 200) at least as fast as a plain PyTorch loop"),
    ("device SGD 1 epoch, batch 2048 speedup_vs_torch", "on a GPU: the same, "
     "batch 2048"),
    ("time_vs_jax sgd float32", "SGD with Nesterov momentum, 5 epochs at batch "
     "200, float32: at most 1.0x the time of a jitted JAX loop (steady state)"),
    ("time_vs_jax sgd float64", "the same, float64"),
    ("time_vs_jax adam float32", "Adam, 5 epochs at batch 200, float32: at most "
     "1.0x the time of a jitted JAX loop (steady state)"),
    ("time_vs_jax adam float64", "the same, float64"),
    ("outside_gemm_vs_before sgd float32", "SGD, float32: the step's time outside "
     "its two large GEMMs at most half of that at 8c204ab (issue 29)"),
    ("outside_gemm_vs_before sgd float64", "the same, float64"),
    ("outside_gemm_vs_before adam float32", "Adam, float32: the step's time "
     "outside its two large GEMMs at most half of that at 8c204ab"),
    ("outside_gemm_vs_before adam float64", "the same, float64"),
]
GOAL_SECTIONS = {"loss_and": "roofline", "sgd_epoc": "roofline",
                 "speedup_": "vs_mlp", "memory_r": "memory",
                 "dask_cost": "dask_cost", "dask_": "dask",
                 "time_vs_jax": "jax", "outside_gemm": "jax"}


def _goal_section(key):
    if key.startswith("speedup_vs_torch"):
        return "torch"
    if key.startswith("device"):
        return "device"
    return next(s for p, s in GOAL_SECTIONS.items() if key.startswith(p))


def _goal_sources(results):
    return sorted({_goal_section(k) for k in sections.goals(results)},
                  key=ORDER.index)


def goals(results, fmt):
    """Every goal, once, with its measured value, spread and verdict."""
    rows = []
    targets = sections.goals(results)
    on_gpu = str(results.get("device", {}).get("device", "")).startswith("cuda")
    for key, words in GOALS:
        if key == "device lbfgs":  # its name has the number of iterations
            key = next((k for k in targets if k.startswith("device lbfgs")), key)
        goal = targets.get(key)
        if key.startswith("device") and not on_gpu:
            rows.append([words, "not measured: no GPU", "", ""])
            continue
        if goal is None:
            rows.append([words, "not measured", "", ""])
            continue
        value = goal["value"]
        if key == "memory_ratio_vs_mlp":
            shown = f"{100 * value:.1f}%"
        else:
            shown = "n/a" if value is None else _f(value)
        spread = ("not a timing" if goal.get("exact") else
                  spread_text(goal["spread"]) if goal.get("spread") else "not recorded")
        rows.append([words, shown, spread, goal["verdict"]])
    return "\n".join([
        "Each figure is a ratio of medians over alternating repeats; a goal is "
        "met only where its whole spread (the interquartile range of the "
        "per-repeat ratios) clears it, missed only where the whole spread misses "
        "it, and within noise otherwise. " + stamp(results, _goal_sources(results),
                                                   fmt), "",
        table(["goal", "measured", "spread", "verdict"], rows, fmt,
              widths=[50, 15, 15, 20])])


# --------------------------------------------------------------- fragments
def _roof(results, dtype, path):
    return next(r for r in results["roofline"] if r["dtype"] == dtype
                and r["input"] == "dense" and r["path"] == path)


def _mlp(results, solver, dtype):
    return next(r for r in results["vs_mlp"]
                if r["solver"] == solver and r["dtype"] == dtype)


def _torch(results, work, dtype):
    return next(r for r in results["torch"]["rows"]
                if r["work"].startswith(work) and r["dtype"] == dtype)


def readme_performance(results, fmt):
    """README.md's table of the main figures."""
    dtypes = ("float64", "float32")
    cfg = results["runs"]["roofline"]["config"]
    mem = results["memory"]
    def cells(find, field, shown=_f):
        return [_with_spread(shown(find(d)[field]), find(d), field) for d in dtypes]

    def roof(path):
        return lambda d: _roof(results, d, path)

    def mlp(solver):
        return lambda d: _mlp(results, solver, d)

    def torch(work):
        return lambda d: _torch(results, work, d)

    rows = [
        ["full-batch loss and gradient / GEMM bound"]
        + cells(roof("loss_and_gradient"), "roofline_ratio"),
        [f"SGD epoch (batch {cfg['batch']}) / GEMM bound"]
        + cells(roof("sgd_epoch"), "roofline_ratio"),
        ["SGD floor (GEMMs, row gather, update; no other arithmetic) / GEMM bound"]
        + cells(roof("sgd_epoch"), "floor_ratio"),
        [f"fit speed vs MLPClassifier, sgd {cfg['epochs']} epochs"]
        + cells(mlp("sgd"), "speedup", _x),
        [f"fit speed vs MLPClassifier, lbfgs {cfg['lbfgs_iter']} iterations "
         "(MLPClassifier's lbfgs computes in float64 on float32 data)"]
        + cells(mlp("lbfgs"), "speedup", _x),
        *([[f"speed vs PyTorch CPU, SGD {cfg['epochs']} epochs"]
           + cells(torch("SGD"), "speedup", _x),
           ["speed vs PyTorch CPU, full-batch loss and gradient"]
           + cells(torch("full-batch"), "speedup", _x)]
          if results["torch"].get("available") else
          # (PyTorch is optional: a run without it says so, not a figure)
          [["speed vs PyTorch CPU", "not measured: "
            + results["torch"].get("reason", "PyTorch is not installed"), ""]]),
        [f"peak extra memory of an lbfgs fit vs MLPClassifier (N={mem['n']}, "
         f"D={mem['d']})", f"{100 * mem['ratio']:.1f}%", ""],
    ]
    lines = [f"N={cfg['n']}, D={cfg['d']}, H={cfg['hidden']}, C={cfg['classes']}. "
             + stamp(results, README_PERFORMANCE, fmt,
                     ("numpy", "scipy", "scikit-learn", "torch")), "",
             table(["measurement (in brackets: the spread)", "float64", "float32"],
                   rows, fmt)]
    return "\n".join(lines)


def readme_more(results, fmt):
    """README.md's figures of the other sections, one line each."""
    p = {r["work"]: r for r in results["predict"]["rows"]}
    g = results["dask"]
    batch = f"predict_proba, {results['predict']['batch_rows']} rows"
    per_iteration = "per_iteration_s" in g
    rows = [
        ["`predict_proba` on one row vs MLPClassifier",
         _with_spread(_x(p["predict_proba, 1 row"]["speedup"]),
                      p["predict_proba, 1 row"], "speedup"), "(e)"],
        ["`predict` on one row vs MLPClassifier",
         _with_spread(_x(p["predict, 1 row"]["speedup"]), p["predict, 1 row"],
                      "speedup"), "(e)"],
        [f"`predict_proba` on {results['predict']['batch_rows']:,} rows vs "
         "MLPClassifier", _with_spread(_x(p[batch]["speedup"]), p[batch], "speedup"),
         "(e)"],
        ["data-parallel fit on one Dask worker, time / in-memory fit's",
         _with_spread(_f(g["one_worker"]["time_ratio"]), g["one_worker"],
                      "time_ratio"), "(g)"],
        ["data-parallel fit, two workers vs one"
         + (", per L-BFGS iteration" if per_iteration else ""),
         _with_spread(_x(g["two_workers"]["speedup"]), g["two_workers"], "speedup"),
         "(g)"],
    ]
    s = g["spark"]
    if s.get("available"):
        rows.append(["data-parallel L-BFGS iteration vs Spark MLlib's MLP "
                     f"(local[{s['cores']}]"
                     + (", Spark on its Java BLAS fallback" if spark_note(s) else "")
                     + ")", _with_spread(_x(s["speedup"]), s, "speedup"), "(g)"])
    return "\n".join([
        table(["measurement", "result (in brackets: the spread)", "section"], rows,
              fmt), "",
        stamp(results, README_MORE, fmt, ("numpy", "scikit-learn", "onnxruntime",
                                          "dask", "distributed", "pyspark"))])


def section(key):
    def render(results, fmt):
        note = stale_note(results["runs"][key]) if key in results["runs"] else ""
        return text_block(section_text(results, key)
                          + ([f"    {note}"] if note else []), fmt)
    return render


def sgd_floor(results, fmt):
    """The SGD floor against the bound and our epoch, from section (a)."""
    rows = []
    for dtype in ("float64", "float32"):
        r = _roof(results, dtype, "sgd_epoch")
        rows.append([dtype] + [_with_spread(_f(r[field]), r, field) for field in
                               ("floor_ratio", "ours_vs_floor", "roofline_ratio")])
    return table(["dtype", "floor / GEMM bound", "our epoch / floor",
                  "our epoch / GEMM bound"], rows, fmt)


def machine_words(results, fmt):
    return stamp(results, "roofline", fmt, ("numpy", "scipy", "scikit-learn", "torch"))


def exactness_summary(results, fmt):
    """The user guide's sentence on exactness, measured."""
    r = results["exactness"]
    e = r["per_evaluation"]
    longest = max(f["max_iter"] for f in r["fits"])
    short = min(f["max_iter"] for f in r["fits"])
    fits = {(f["max_iter"], f["contender"]): f for f in r["fits"]}
    d_short, d_long = fits[short, "dask"], fits[longest, "dask"]
    return (
        f"Measured by ``python benchmarks/run.py --only exactness`` "
        f"({results['runs']['exactness']['date']}"
        f"; {r['n']:,} rows in {r['blocks']} blocks on {r['workers']} workers): at "
        f"every one of the {e['evaluations']} evaluations of a fit, the loss and "
        f"the gradient were the in-memory ones to a relative "
        f"{gap(e['max_rel_loss_gap'], 0)} and {gap(e['max_rel_grad_gap'], 0)}. "
        f"After {short} iterations the test probabilities of the two fits "
        f"differed by at most {gap(d_short['max_proba_gap'], 0)}; after "
        f"{longest}, by {gap(d_long['max_proba_gap'], 0)}, and "
        f"{d_long['labels_differ']} of {r['test_rows']:,} test labels differed.")


def exactness_table(results, fmt):
    """The design page's table: gaps by max_iter, for each contender."""
    r = results["exactness"]
    header = ["``max_iter``"] + list(CONTENDERS.values())
    rows = []
    for max_iter in sorted({f["max_iter"] for f in r["fits"]}):
        cells = {f["contender"]: f for f in r["fits"] if f["max_iter"] == max_iter}
        rows.append([str(max_iter)] + [
            f"{gap(cells[c]['max_proba_gap'])} ({cells[c]['labels_differ']})"
            for c in CONTENDERS])
    e = r["per_evaluation"]
    return "\n".join([
        f"N={r['n']:,} rows of D={r['d']} features, C={r['classes']} classes, "
        f"H={r['hidden']}, {r['blocks']} row blocks on {r['workers']} worker "
        f"processes; {r['test_rows']:,} test rows. "
        + stamp(results, "exactness", fmt, ("numpy", "scikit-learn", "dask",
                                            "distributed")), "",
        f"Per evaluation ({e['evaluations']} evaluations of the longest "
        f"data-parallel fit): largest relative gap of the loss "
        f"{gap(e['max_rel_loss_gap'])}, of the gradient {gap(e['max_rel_grad_gap'])}.",
        "",
        "Largest gap of a test probability to the in-memory fit (1 BLAS thread, "
        "default row blocks), and in brackets the number of test labels that "
        "differ:", "",
        table(header, rows, fmt)])


def dask_cost(results, fmt):
    """Section (g) as a table, for the design page."""
    g = results["dask"]
    if "per_iteration_s" not in g:
        return _dask_before_per_iteration(results, fmt)
    it, one = g["per_iteration_s"], g["one_worker"]

    def ms(seconds):
        return f"{seconds * 1e3:.0f} ms"

    def spread(row, field):
        return spread_text(row[f"{field}_spread"])

    rows = [["time per L-BFGS iteration, in memory (1 BLAS thread)", ms(it["memory"])]]
    rows += [[f"the same, {name}", ms(v)] for name, v in it.items()
             if name not in ("memory", "spark")]
    rows.append(["one worker / in memory, per iteration",
                 f"{one['per_iteration_ratio']:.2f} "
                 f"({spread(one, 'per_iteration_ratio')})"])
    if "two_workers" in g:
        two = g["two_workers"]
        rows += [["two workers / in memory, per iteration",
                  f"{two['per_iteration_ratio']:.2f} "
                  f"({spread(two, 'per_iteration_ratio')})"],
                 ["two workers vs one, per iteration",
                  f"{two['speedup']:.2f}x ({spread(two, 'speedup')})"]]
    rows += [["whole fit on one worker / in memory (blocks made on the workers)",
              f"{one['time_ratio']:.2f} ({spread(one, 'time_ratio')}; "
              f"{one['dask_s']:.2f} s / {one['memory_s']:.2f} s)"],
             ["the same, blocks sent from an in-memory array (``da.from_array``)",
              f"{one['from_array_time_ratio']:.2f} "
              f"({spread(one, 'from_array_time_ratio')}; {one['from_array_s']:.2f} s)"]]
    for workers, o in g["overhead"].items():
        rows.append([f"overhead of an evaluation, {workers} worker(s)",
                     f"{o['overhead_s'] * 1e3:.1f} ms, "
                     f"{o['overhead_vs_round_trip']:.2f}x "
                     f"({spread(o, 'overhead_vs_round_trip')}) a bare round trip "
                     f"({o['round_trip_s'] * 1e3:.1f} ms)"])
    s = g["spark"]
    if s.get("available"):
        blas = "native BLAS" if s["blas_native"] else "its Java BLAS fallback"
        rows.append([f"time per L-BFGS iteration, Spark MLlib {s['version']} "
                     f"(``local[{s['cores']}]``, {blas}) vs ours on {s['cores']} "
                     "workers",
                     f"{s['speedup']:.2f}x ({spread(s, 'speedup')}; "
                     f"{ms(s['per_iteration_s'])} / {ms(s['ours_per_iteration_s'])})"])
    rows.append(["same model as in memory: iterations, largest probability gap",
                 f"{g['n_iter'][0]} / {g['n_iter'][1]}, "
                 f"{gap(g['same_model_max_proba_gap'])}"])
    lines = [
        f"``make_classification``: N={g['n']:,} rows, D={g['d']} "
        f"({g['informative']} informative), H={g['hidden']}, C={g['classes']}, "
        f"{g['blocks']} row blocks, worker processes with one thread each; "
        f"{g['iterations']}-iteration and 1-iteration fits (``tol=0``), "
        f"{g['repeats']} alternating repeats after a warm-up; ratios of medians, "
        "in brackets the interquartile range of the per-repeat ratios. "
        + stamp(results, "dask", fmt, ("numpy", "dask", "distributed", "pyspark")),
        "", table(["measurement", "result"], rows, fmt, widths=[55, 45])]
    if spark_note(s):
        lines += ["", f"Not like for like: {spark_note(s)}."]
    return "\n".join(lines)


def _dask_before_per_iteration(results, fmt):
    """Section (g) as measured before it timed iterations (no spreads)."""
    g = results["dask"]
    rows = []
    for workers, o in g["overhead"].items():
        rows.append([f"overhead of an evaluation, {workers} worker(s)",
                     f"{o['overhead_s'] * 1e3:.1f} ms, "
                     f"{o['overhead_vs_round_trip']:.2f}x a bare round trip "
                     f"({o['round_trip_s'] * 1e3:.1f} ms)"])
    one = g["one_worker"]
    rows.append(["one worker, time / in-memory fit's (blocks made on the workers)",
                 f"{one['time_ratio']:.2f} ({one['dask_s']:.2f} s / "
                 f"{one['memory_s']:.2f} s)"])
    rows.append(["the same, blocks sent from an in-memory array (``da.from_array``)",
                 f"{one['from_array_time_ratio']:.2f} ({one['from_array_s']:.2f} s)"])
    if "two_workers" in g:
        two = g["two_workers"]
        rows.append(["two workers vs one", f"{two['speedup']:.2f}x "
                     f"({two['two_s']:.2f} s / {two['one_s']:.2f} s)"])
    rows.append(["same model as in memory: iterations, largest probability gap",
                 f"{g['n_iter'][0]} / {g['n_iter'][1]}, "
                 f"{gap(g['same_model_max_proba_gap'])}"])
    return "\n".join([
        f"N={g['n']:,} rows, D={g['d']}, H={g['hidden']}, C={g['classes']}, "
        f"{g['blocks']} row blocks, {g['iterations']} L-BFGS iterations, worker "
        "processes with one thread each; whole fits, median of per-repeat ratios, "
        "spread not recorded. "
        + stamp(results, "dask", fmt, ("numpy", "dask", "distributed", "pyspark")),
        "", table(["measurement", "result"], rows, fmt, widths=[55, 45])])


def dask_scale(results, fmt):
    """Section (h) as a table, for the design page."""
    h = results["dask_scale"]
    fan_ins = sorted({row["fan_in"] for row in h["table"]})
    cell = {(row["workers"], row["fan_in"]): row for row in h["table"]}
    rows = []
    for k in sorted({row["workers"] for row in h["table"]}):
        rows.append([str(k)] + [
            "" if (k, f) not in cell else
            f"{cell[k, f]['ms_per_iteration']:.0f} ({cell[k, f]['client_cpu_ms']:.0f})"
            for f in fan_ins])
    mib = h["parameters"] * 8 / 2**20
    return "\n".join([
        f"D={h['d']}, H={h['hidden']}, C={h['classes']}: {h['parameters']:,} "
        f"parameters, {mib:.1f} MiB in float64; {h['rows_per_worker']} rows per "
        "worker. Milliseconds per L-BFGS iteration (in brackets, the CPU time of "
        "the client's process, which also runs the scheduler), median of "
        f"{h['table'][0]['repeats']} repeats. "
        + stamp(results, "dask_scale", fmt, ("numpy", "dask", "distributed")),
        "", table(["workers"] + [f"fan-in {f}" for f in fan_ins], rows, fmt)])


def _spark_tree_aggregate(k, P):
    """Per iteration of Spark MLlib's MLP on ``k`` one-core executors, from
    the documented design of ``RDD.treeAggregate(depth=2)`` and
    TorrentBroadcast (not measured): tasks the driver launches, and the
    parameter-sized vectors its process sends and receives."""
    import math

    scale = max(math.ceil(math.sqrt(k)), 2)
    partitions, levels = k, 0
    while partitions > scale + math.ceil(partitions / scale):
        partitions //= scale
        levels += 1
    return {"tasks": k + (partitions if levels else 0), "driver_in": partitions,
            "driver_out": 1, "mib": P * 8 / 2**20}


def dask_transports(results, fmt):
    """The ways to reach the workers, side by side, from section (j)."""
    j = results.get("dask_cost") or {}
    t = j.get("transports")
    if not t:
        return ("Not measured yet: ``python benchmarks/run.py --only dask_cost`` "
                "measures it.")
    mib = j["parameters"] * 8 / 2**20
    words = {"calls": "a call to each worker's RPC",
             "actors": "a call to an actor on each worker",
             "graph": "the task graph it replaced (scatter, a task a worker, gather)"}
    rows = [[words[name], f"{t[name + '_ms']:.1f}"] for name in ("calls", "actors",
                                                              "graph")]
    return "\n\n".join([
        f"One exchange of the parameters ({j['parameters']:,}, {mib:.1f} MiB) with "
        f"each of {t['workers']} worker processes: sent to each, sent back by "
        f"each; milliseconds, median of {t['repeats']} alternating repeats. The "
        "task graph took "
        f"{_with_spread(_x(t['graph_vs_calls']), t, 'graph_vs_calls')} the "
        "calls' time, actors "
        f"{_with_spread(_x(t['actors_vs_calls']), t, 'actors_vs_calls')}. "
        + stamp(results, "dask_cost", fmt),
        table(["way", "ms per exchange"], rows, fmt)])


def _filled_columns(header, rows):
    """The header and rows without the columns that no row fills."""
    keep = [i for i in range(len(header)) if any(row[i] for row in rows)]
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]


def dask_cost_model(results, fmt):
    """Section (j): the cost of one evaluation against the workers, the counts
    extrapolated, the wall time modelled and checked, and Spark's
    treeAggregate beside them."""
    j = results["dask_cost"]

    def cell(row, key, fmt_):
        return format(row[key], fmt_) if key in row else ""

    # Two tables, the times and the counts, each narrow enough for the
    # page's column (one table of both scrolled sideways, hiding columns).
    times, counts = [], []
    for row in j["table"]:
        spread = row.get("scheduler_cpu_ms_spread")
        workers = f"{row['workers']} ({row['topology']})"
        times.append([workers, f"{row['wall_ms']:.0f}",
                      f"{row['scheduler_cpu_ms']:.1f}"
                      + (f" ({spread_text(spread, 1)})" if spread else ""),
                      cell(row, "scheduler_ms_per_message", ".2f"),
                      f"{row.get('scheduler_cpu_net_ms', float('nan')):.1f}",
                      f"{row['client_cpu_ms']:.1f}",
                      cell(row, "busiest_worker_compute_ms", ".1f")])
        counts.append([workers, f"{row['tasks']:.1f}", f"{row['graphs']:.0f}",
                       f"{row['messages']:.0f}", f"{row['scheduler_mib']:.2f}",
                       f"{row['busiest_worker_mib']:.1f}"])
    compared = [row for row in j["table"] if "star_wall_ms" in row]
    mib = j["parameters"] * 8 / 2**20
    fitted = cost_model(j)
    at = {row["workers"]: row for row in j["table"]}
    lines = [
        f"D={j['d']}, H={j['hidden']}, C={j['classes']}: {j['parameters']:,} "
        f"parameters, {mib:.1f} MiB in float64; {j['rows_per_worker']} rows per "
        "worker; the scheduler in its own process, worker processes of one "
        "thread, all on the machine below; "
        + pinning_text(j["table"]) + ". Per evaluation, median of "
        f"{j['table'][0]['repeats']} repeats (in brackets, the interquartile "
        "range). " + stamp(results, "dask_cost", fmt, ("numpy", "dask", "distributed")),
        "",
        table(*_filled_columns(["workers", "wall ms", "scheduler CPU ms",
                                "per message", "less idle", "client CPU ms",
                                "busiest worker compute ms"], times), fmt),
        "",
        table(["workers", "tasks", "graphs", "messages",
               "MiB through the scheduler", "MiB through the busiest worker"],
              counts, fmt),
        "", "The scheduler's CPU per evaluation: " + ", ".join(
            f"{k} workers {at[k]['scheduler_cpu_ms']:.1f} ms" if k in at
            else f"{k} workers not measured" for k in REPORTED_AT) + "."]
    if compared:
        lines += ["", "Star against tree, wall milliseconds per evaluation, the "
                  "two alternating: " + ", ".join(
                      f"{row['workers']} workers {row['star_wall_ms']:.0f} against "
                      f"{row['tree_wall_ms']:.0f}" for row in compared) + "."]
    with_ops = [row for row in j["table"] if row.get("ops")]
    if with_ops:
        lines += ["", "Where the scheduler's messages come from, per evaluation, by "
                  "operation:", ""]
        lines += [f"* {row['workers']} workers ({row['topology']}): "
                  + ops_text(row["ops"]) for row in with_ops]
    m, p = fitted["models"], fitted["predictions"]

    def model(name, unit):
        c = m[name]
        log = f" {c['c']:+.3g} log2 K" if c["c"] else ""
        return (f"{c['a']:.3g} {c['b']:+.3g} K{log} {unit}: "
                f"{p[name]['100']:.3g} at 100 workers, {p[name]['1000']:.3g} at 1,000")

    counts = [("tasks", "tasks"), ("messages", "messages to the scheduler"),
              ("scheduler_mib", "MiB through the scheduler"),
              ("busiest_worker_mib", "MiB through the busiest worker")]
    lines += ["", "Extrapolated, counts only (they do not depend on how many cores "
              "the processes share): fitted by least squares to the rows of a "
              f"{fitted['topology']} (K = {', '.join(map(str, fitted['fitted_on']))}; "
              "a log2 K term only where it halves the residual with no negative "
              f"coefficient), past {fitted['max_workers_measured']} workers:", ""]
    lines += ["* " + model(name, unit) for name, unit in counts if name in m]
    lines += ["", "Wall time is not extrapolated, nor is CPU time measured with more "
              "processes than cores. Modelled: " + wall_text(fitted["wall"]) + "."]
    spark = {k: _spark_tree_aggregate(k, j["parameters"]) for k in (100, 1000)}
    ours = {k: round(p["tasks"][str(k)]) for k in (100, 1000)}
    lines += ["", "Beside Spark MLlib's MLP, computed (not measured) from the "
              "documented design of ``RDD.treeAggregate`` (depth 2) and "
              "TorrentBroadcast, assuming one partition per one-core executor: per "
              "iteration the driver launches a task per partition and one per "
              "partition of the intermediate level, and receives one "
              "parameter-sized vector per intermediate partition:", "",
              table(["per evaluation", "100 workers", "1,000 workers"], [
                  ["tasks the scheduler (ours, fitted) or the driver (Spark) "
                   "launches", f"{ours[100]} / {spark[100]['tasks']}",
                   f"{ours[1000]} / {spark[1000]['tasks']}"],
                  ["parameter vectors into the client (ours, a tree) or the "
                   "driver (Spark)", f"1 / {spark[100]['driver_in']}",
                   f"1 / {spark[1000]['driver_in']}"],
                  [f"MiB into the client or the driver (P={j['parameters']:,})",
                   f"{mib:.1f} / {spark[100]['driver_in'] * mib:.0f}",
                   f"{mib:.1f} / {spark[1000]['driver_in'] * mib:.0f}"],
              ], fmt)]
    return "\n".join(lines)


def jax(results, fmt):
    """Section (i) as a table: each round's ratios and the time outside the
    two large GEMMs per step, before and after, for the solvers page."""
    r = results["jax"]
    steps, before = r["steps"], r.get("before")
    us = 1e6 / steps
    rows = []
    for row in r["rows"]:
        for i, one in enumerate(row["rounds"]):
            cells = [f"{row['solver']}, {row['dtype']}", str(i + 1),
                     _with_spread(f"{one['time_ratio']:.2f}", one, "time_ratio")]
            if before:
                cells.append(f"{one['before_time_ratio']:.2f}")
            cells.append(f"{one['ours_outside_gemm_s'] * us:.0f}")
            if before:
                cells += [f"{one['before_outside_gemm_s'] * us:.0f}",
                          _with_spread(f"{one['outside_vs_before']:.2f}", one,
                                       "outside_vs_before")]
            cells.append(f"{one['jax_outside_gemm_s'] * us:.0f}")
            rows.append(cells)
    header = ["solver, dtype", "run", "time / JAX's"]
    if before:
        header.append(f"at {before}: time / JAX's")
    header.append("outside the GEMMs, µs per step")
    if before:
        header += [f"at {before}", "ratio"]
    header.append("JAX, outside the GEMMs")
    return "\n".join([
        f"{steps} steps ({results['runs']['jax']['config']['epochs']} epochs of "
        f"N={results['runs']['jax']['config']['n']:,} rows at batch "
        f"{results['runs']['jax']['config']['batch']}), each side in its own "
        f"process, {r['rounds']} runs of new processes with {r['repeats']} "
        f"alternating repeats each; ratios of medians, in brackets the "
        f"interquartile range of the per-repeat ratios; JAX {r['version']}. "
        + stamp(results, "jax", fmt, ("numpy", "scipy", "jax", "numba")),
        "", table(header, rows, fmt)])


def device(results, fmt):
    lines = section_text(results, "device")
    return "\n".join([stamp(results, "device", fmt, ("numpy", "torch")), "",
                      text_block(lines, fmt)])


LETTERS = {section.KEY: section.LETTER for section in sections.SECTIONS}
ORDER = [section.KEY for section in sections.SECTIONS]


def _took(seconds):
    if seconds is None:
        return "not recorded"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def run_times(results, fmt):
    """How long each section's last run took, and each whole run."""
    rows, runs = [], {}
    for key in ORDER:
        run = results["runs"].get(key)
        if run is None:
            continue
        rows.append([LETTERS[key], code(run["command"].strip(), fmt),
                     _took(run.get("seconds")), run["date"]])
        runs.setdefault(run_of(run), []).append(key)
    lines = [table(["section", "command", "took", "date"], rows, fmt), ""]
    for keys in runs.values():
        run = results["runs"][keys[0]]
        took = _took(run.get("run_seconds"))
        what = (f"The run of {run['date']} ({code(run['command'].strip(), fmt)}, "
                f"section{'s' if len(keys) > 1 else ''} "
                f"{', '.join(LETTERS[k] for k in keys)})")
        lines.append(("- " if fmt == "md" else "* ")
                     + (f"{what} took {took} in all." if run.get("run_seconds")
                        is not None else f"{what}: its whole time not recorded."))
    return "\n".join(lines)


# The sections each generated part draws on, which must come from one
# machine and one commit ("*": every section of the file).
README_PERFORMANCE = ("roofline", "vs_mlp", "memory", "torch")
README_MORE = ("predict", "dask")
def _or_why_not(render, key):
    """``render``, where section ``key`` was measured; else a sentence that
    says why not (an optional contender not installed, no GPU), as the
    section's own text does."""
    def rendered(results, fmt):
        r = results.get(key) or {}
        if r.get("available", True):
            return render(results, fmt)
        return "Not measured in this run: " + r.get("reason", "not available") + "."
    return rendered


FRAGMENTS = {
    "run-times": (run_times, "*"),
    "readme-performance": (readme_performance, README_PERFORMANCE),
    "readme-more": (readme_more, README_MORE),
    "goals": (goals, _goal_sources),
    "machine": (machine_words, README_PERFORMANCE),
    "sgd-floor": (sgd_floor, ("roofline",)),
    "exactness-summary": (exactness_summary, ("exactness",)),
    "exactness": (exactness_table, ("exactness",)),
    **{name: (_or_why_not(render, key), (key,)) for name, render, key in [
        ("dask-cost", dask_cost, "dask"),
        ("dask-scale", dask_scale, "dask_scale"),
        ("dask-cost-model", dask_cost_model, "dask_cost"),
        ("dask-transports", dask_transports, "dask_cost"),
        ("device", device, "device"),
        ("jax", jax, "jax")]},
    **{f"section-{key}": (section(key), (key,)) for key in ORDER},
}


def sources(name, results):
    """The sections of ``results`` that the generated part ``name`` shows."""
    keys = FRAGMENTS[name][1]
    keys = (list(results["runs"]) if keys == "*" else
            keys(results) if callable(keys) else keys)
    return [k for k in keys if k in results["runs"]]


def mixed(name, results):
    """Where the part ``name`` draws on runs of different machines or
    commits: a sentence that says which; else None."""
    groups = {}
    for key in sources(name, results):
        groups.setdefault(identity(results["runs"][key]), []).append(key)
    if len(groups) < 2:
        return None
    return f"{name} mixes {len(groups)} machines or commits: " + "; ".join(
        f"{', '.join(LETTERS.get(k, k) for k in keys)} on "
        f"{machine(results['runs'][keys[0]])} at "
        f"{results['runs'][keys[0]].get('commit') or 'a commit not recorded'}"
        + (f" (changes {results['runs'][keys[0]]['changes']})"
           if results["runs"][keys[0]].get("changes") else "")
        for keys in groups.values())


# -------------------------------------------------------------------- pages
def render(text, fmt, results, problems=None):
    """``text`` with every generated part rendered anew; each part that
    mixes machines or commits adds a sentence to ``problems``."""
    pattern, template = MARKERS[fmt]

    def fill(match):
        indent = match.groupdict().get("indent") or ""
        name = match.group(2 if fmt == "rst" else 1)
        if name not in FRAGMENTS:
            raise KeyError(f"no generated part named {name!r} (known: "
                           f"{sorted(FRAGMENTS)})")
        _BEFORE["text"] = match.group(3 if fmt == "rst" else 2)
        try:
            body = FRAGMENTS[name][0](results, fmt)
        except KeyError as missing:  # a section that no run has written yet
            body = (f"*Not measured yet: benchmarks/results.json has no "
                    f"{missing} section.*")
        else:
            problem = mixed(name, results)
            if problem and problems is not None:
                problems.append(problem)
        text = template.format(name=name, body=body)
        # In a list item, the generated part is indented as its markers are.
        return "\n".join((indent + line) if line else line
                         for line in text.splitlines())

    return pattern.sub(fill, text)


def load(path=RESULTS):
    return json.loads(Path(path).read_text())


def check_pages(results=None, write=False, pages=PAGES):
    """The pages whose generated parts differ from what the results give,
    and each part that mixes machines or commits ("PAGE: sentence")."""
    results = load() if results is None else results
    stale, problems = [], []
    for page in pages:
        path = ROOT / page
        text = path.read_text()
        found = []
        new = render(text, _format(path), results, found)
        problems += [f"{page}: {problem}" for problem in found]
        if new != text:
            stale.append(page)
            if write:
                path.write_text(new)
    return stale, problems


def stale_pages(results=None, write=False, pages=PAGES):
    """The pages whose generated parts differ from what the results give."""
    return check_pages(results, write, pages)[0]


def mixed_parts(results=None, pages=PAGES):
    """Each generated part of the pages that mixes machines or commits."""
    return check_pages(results, False, pages)[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if a page is out of date, or if a "
                        "generated part mixes machines or commits")
    p.add_argument("--results", default=str(RESULTS),
                   help=f"the results file (default {RESULTS})")
    p.add_argument("--pages", nargs="+", default=PAGES,
                   help="the pages, relative to the checkout (default: all)")
    args = p.parse_args(argv)
    stale, problems = check_pages(load(args.results), write=not args.check,
                                  pages=args.pages)
    for problem in problems:
        print(f"mixed runs: {problem}")
    if args.check and stale:
        print("out of date (run python benchmarks/report.py): " + ", ".join(stale))
    if args.check and (stale or problems):
        return 1
    print(("rewrote: " + ", ".join(stale)) if stale and not args.check
          else "every page is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
