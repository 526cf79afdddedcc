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
    python benchmarks/report.py --check   # exit 1 where a page is out of date

tests/test_docs.py runs the check, and also fails on a figure written by
hand anywhere in those pages that the results file does not hold.
"""

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sections  # noqa: E402
from common import RESULTS  # noqa: E402
from dask_cost import cost_model, ops_text  # noqa: E402
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
    """Lines of run.py's own output, as they print."""
    if fmt == "md":
        return "```text\n" + "\n".join(lines) + "\n```"
    return ".. code-block:: text\n\n" + "\n".join(
        ("    " + line).rstrip() for line in lines)


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


def stamp(results, key, fmt, packages=("numpy", "scipy", "scikit-learn")):
    """When, where and with what a section was measured, in one sentence."""
    run = results["runs"][key]
    v = run["versions"]
    pkgs = ", ".join(f"{name} {v[name]}" for name in packages if name in v)
    at = f" at {code(run['commit'], fmt)}" if run.get("commit") else ""
    return (f"Measured {run['date']}{at} with {code(run['command'].strip(), fmt)} on "
            f"{machine(run)}; Python {v['python']}, {pkgs}.")


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
     "on the workers: at most 1.10x the in-memory fit's time"),
    ("dask_one_worker_vs_memory from_array", "the same, blocks sent from an "
     "in-memory array (da.from_array)"),
    ("dask_overhead_vs_round_trip 1 worker(s)", "per-evaluation overhead of the "
     "data-parallel fit, one worker: at most 2x a bare task round trip"),
    ("dask_overhead_vs_round_trip 2 worker(s)", "the same, two workers"),
    ("dask_two_workers_vs_one", "data-parallel fit: two workers at least 1.6x "
     "as fast as one"),
    ("dask_speedup_vs_spark", "an L-BFGS iteration at least 3x as fast as Spark "
     "MLlib's MLP on the same cores"),
    ("dask_cost_scheduler_mib 16 workers", "data-parallel fit, 16 workers: at "
     "most 2 MiB through the scheduler per evaluation (P=814,090)"),
    ("dask_cost_scheduler_cpu_ms 2 workers", "the scheduler's CPU per "
     "evaluation, 2 workers: at most 10 ms"),
    ("dask_cost_scheduler_cpu_ms per added worker", "the scheduler's CPU per "
     "evaluation: at most 1 ms more per added worker (the slope of a straight "
     "line through the measured K)"),
    ("dask_cost_star_vs_tree 2 workers", "2 workers: an evaluation no slower "
     "than the faster of a star and a tree (the default's time over it)"),
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


def goals(results, fmt):
    """Every goal, once, with its measured value and whether it was met."""
    rows = []
    on_gpu = str(results.get("device", {}).get("device", "")).startswith("cuda")
    for key, words in GOALS:
        if key == "device lbfgs":  # its name has the number of iterations
            key = next((k for k in results["targets"]
                        if k.startswith("device lbfgs")), key)
        goal = results["targets"].get(key)
        if key.startswith("device") and not on_gpu:
            rows.append([words, "not measured: no GPU", ""])
            continue
        if goal is None:
            rows.append([words, "not measured", ""])
            continue
        value = goal["value"]
        shown = (f"{100 * value:.1f}%" if key == "memory_ratio_vs_mlp"
                 else _f(value))
        verdict = {True: "met", False: "missed", None: ""}[goal["met"]]
        rows.append([words, f"{shown} ({results['runs'][_goal_section(key)]['date']})",
                     verdict])
    return table(["goal", "measured", ""], rows, fmt, widths=[60, 25, 15])


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
    rows = [
        ["full-batch loss and gradient / GEMM bound"]
        + [_f(_roof(results, d, "loss_and_gradient")["roofline_ratio"]) for d in dtypes],
        [f"SGD epoch (batch {cfg['batch']}) / GEMM bound"]
        + [_f(_roof(results, d, "sgd_epoch")["roofline_ratio"]) for d in dtypes],
        ["SGD floor (GEMMs, row gather, update; no other arithmetic) / GEMM bound"]
        + [_f(_roof(results, d, "sgd_epoch")["floor_ratio"]) for d in dtypes],
        [f"fit speed vs MLPClassifier, sgd {cfg['epochs']} epochs"]
        + [_x(_mlp(results, "sgd", d)["speedup"]) for d in dtypes],
        [f"fit speed vs MLPClassifier, lbfgs {cfg['lbfgs_iter']} iterations"]
        + [_x(_mlp(results, "lbfgs", d)["speedup"]) for d in dtypes],
        [f"speed vs PyTorch CPU, SGD {cfg['epochs']} epochs"]
        + [_x(_torch(results, "SGD", d)["speedup"]) for d in dtypes],
        ["speed vs PyTorch CPU, full-batch loss and gradient"]
        + [_x(_torch(results, "full-batch", d)["speedup"]) for d in dtypes],
        [f"peak extra memory of an lbfgs fit vs MLPClassifier (N={mem['n']}, "
         f"D={mem['d']})", f"{100 * mem['ratio']:.1f}%", ""],
    ]
    run = results["runs"]["roofline"]
    lines = [f"N={cfg['n']}, D={cfg['d']}, H={cfg['hidden']}, C={cfg['classes']}. "
             + stamp(results, "roofline", fmt, ("numpy", "scipy", "scikit-learn",
                                                "torch")), "",
             table(["measurement", "float64", "float32"], rows, fmt)]
    assert all(results["runs"][k] == run for k in ("vs_mlp", "memory", "torch"))
    return "\n".join(lines)


def readme_more(results, fmt):
    """README.md's figures of the other sections, one line each."""
    p = {r["work"]: r for r in results["predict"]["rows"]}
    g = results["dask"]
    rows = [
        ["`predict_proba` on one row vs MLPClassifier",
         _x(p["predict_proba, 1 row"]["speedup"]), "(e)"],
        ["`predict` on one row vs MLPClassifier",
         _x(p["predict, 1 row"]["speedup"]), "(e)"],
        [f"`predict_proba` on {results['predict']['batch_rows']:,} rows vs "
         "MLPClassifier",
         _x(p[f"predict_proba, {results['predict']['batch_rows']} rows"]["speedup"]),
         "(e)"],
        ["data-parallel fit on one Dask worker, time / in-memory fit's",
         _f(g["one_worker"]["time_ratio"]), "(g)"],
        ["data-parallel fit, two workers vs one", _x(g["two_workers"]["speedup"]),
         "(g)"],
    ]
    if g["spark"].get("available"):
        rows.append(["data-parallel L-BFGS iteration vs Spark MLlib's MLP "
                     f"(local[{g['spark']['cores']}])", _x(g["spark"]["speedup"]),
                     "(g)"])
    notes = [f"- {letter} " + stamp(results, key, fmt, packages)
             for letter, key, packages in (
                 ("(e)", "predict", ("numpy", "scikit-learn", "onnxruntime")),
                 ("(g)", "dask", ("numpy", "scikit-learn", "dask", "distributed",
                                  "pyspark")))]
    return "\n".join([table(["measurement", "result", "section"], rows, fmt), "",
                      *notes])


def section(key):
    def render(results, fmt):
        return text_block(section_text(results, key), fmt)
    return render


def sgd_floor(results, fmt):
    """The SGD floor against the bound and our epoch, from section (a)."""
    rows = []
    for dtype in ("float64", "float32"):
        r = _roof(results, dtype, "sgd_epoch")
        rows.append([dtype, _f(r["floor_ratio"]), _f(r["ours_vs_floor"]),
                     _f(r["roofline_ratio"])])
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
        f"Measured by ``benchmarks/exactness.py`` ({results['runs']['exactness']['date']}"
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
    rows = []
    for workers, o in g["overhead"].items():
        rows.append([f"overhead of an evaluation, {workers} worker(s)",
                     f"{o['overhead_s'] * 1e3:.1f} ms, {o['overhead_vs_round_trip']:.2f}x"
                     f" a bare round trip ({o['round_trip_s'] * 1e3:.1f} ms)"])
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
    s = g["spark"]
    if s.get("available"):
        rows.append([f"time per L-BFGS iteration, Spark MLlib {s['version']} "
                     f"(``local[{s['cores']}]``) vs ours on {s['cores']} workers",
                     f"{s['speedup']:.2f}x ({s['per_iteration_s'] * 1e3:.0f} ms / "
                     f"{s['ours_per_iteration_s'] * 1e3:.0f} ms)"])
    rows.append(["same model as in memory: iterations, largest probability gap",
                 f"{g['n_iter'][0]} / {g['n_iter'][1]}, "
                 f"{gap(g['same_model_max_proba_gap'])}"])
    return "\n".join([
        f"N={g['n']:,} rows, D={g['d']}, H={g['hidden']}, C={g['classes']}, "
        f"{g['blocks']} row blocks, {g['iterations']} L-BFGS iterations, worker "
        f"processes with one thread each. "
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


def dask_cost_model(results, fmt):
    """Section (j): the cost of one evaluation against the workers, the fitted
    model, its predictions, and Spark's treeAggregate beside them."""
    j = results["dask_cost"]
    rows = []
    for row in j["table"]:
        rows.append([f"{row['workers']} ({row['topology']})", f"{row['wall_ms']:.0f}",
                     f"{row['scheduler_cpu_ms']:.1f}",
                     f"{row.get('scheduler_cpu_net_ms', float('nan')):.1f}",
                     f"{row['client_cpu_ms']:.1f}",
                     f"{row['tasks']:.1f}", f"{row['graphs']:.0f}",
                     f"{row['messages']:.0f}", f"{row['scheduler_mib']:.2f}",
                     f"{row['busiest_worker_mib']:.1f}"])
    compared = [row for row in j["table"] if "star_wall_ms" in row]
    mib = j["parameters"] * 8 / 2**20
    lines = [
        f"D={j['d']}, H={j['hidden']}, C={j['classes']}: {j['parameters']:,} "
        f"parameters, {mib:.1f} MiB in float64; {j['rows_per_worker']} rows per "
        "worker; the scheduler in its own process, worker processes of one "
        "thread, all on the machine below. Per evaluation, median of "
        f"{j['table'][0]['repeats']} repeats. "
        + stamp(results, "dask_cost", fmt, ("numpy", "dask", "distributed")),
        "",
        table(["workers", "wall ms", "scheduler CPU ms", "less idle", "client CPU ms",
               "tasks",
               "graphs", "messages", "MiB through the scheduler",
               "MiB through the busiest worker"], rows, fmt)]
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
    fitted = cost_model(j)
    m, p = fitted["models"], fitted["predictions"]

    def model(name, unit):
        c = m[name]
        log = f" {c['c']:+.3g} log2 K" if c["c"] else ""
        return (f"{c['a']:.3g} {c['b']:+.3g} K{log} {unit}: "
                f"{p[name]['100']:.3g} at 100 workers, {p[name]['1000']:.3g} at 1,000")

    lines += ["", "Fitted by least squares to the rows of a "
              f"{fitted['topology']} (K = {', '.join(map(str, fitted['fitted_on']))}; "
              "a log2 K term only where it halves the residual with no negative "
              "coefficient), and extrapolated past "
              f"{fitted['max_workers_measured']} workers:", ""]
    fits = [("wall_ms", "ms of wall time"), ("scheduler_cpu_ms", "ms of scheduler CPU"),
            ("scheduler_cpu_net_ms", "ms of scheduler CPU less idle"),
            ("client_cpu_ms", "ms of client CPU"), ("tasks", "tasks"),
            ("messages", "messages to the scheduler"),
            ("scheduler_mib", "MiB through the scheduler")]
    lines += ["* " + model(name, unit) for name, unit in fits]
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
                     f"{one['time_ratio']:.2f}"]
            if before:
                cells.append(f"{one['before_time_ratio']:.2f}")
            cells.append(f"{one['ours_outside_gemm_s'] * us:.0f}")
            if before:
                cells += [f"{one['before_outside_gemm_s'] * us:.0f}",
                          f"{one['outside_vs_before']:.2f}"]
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
        f"alternating repeats each; JAX {r['version']}. "
        + stamp(results, "jax", fmt, ("numpy", "scipy", "jax", "numba")),
        "", table(header, rows, fmt)])


def device(results, fmt):
    lines = section_text(results, "device")
    return "\n".join([stamp(results, "device", fmt, ("numpy", "torch")), "",
                      text_block(lines, fmt)])


SECTIONS = [("(a)", "roofline"), ("(b)", "vs_mlp"), ("(c)", "memory"),
            ("(d)", "torch"), ("(e)", "predict"), ("(f)", "device"),
            ("(g)", "dask"), ("(h)", "dask_scale"), ("(i)", "jax"),
            ("(j)", "dask_cost"), ("exactness.py", "exactness")]


def run_times(results, fmt):
    """How long each section's last run took, from the results file."""
    rows = []
    for name, key in SECTIONS:
        run = results["runs"].get(key)
        if run is None:
            continue
        seconds = run.get("seconds")
        took = "not recorded" if seconds is None else (
            f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min")
        rows.append([name, code(run["command"].strip(), fmt), took, run["date"]])
    return table(["section", "command", "took", "date"], rows, fmt)


FRAGMENTS = {
    "run-times": run_times,
    "readme-performance": readme_performance,
    "readme-more": readme_more,
    "goals": goals,
    "machine": machine_words,
    "sgd-floor": sgd_floor,
    "exactness-summary": exactness_summary,
    "exactness": exactness_table,
    "dask-cost": dask_cost,
    "dask-scale": dask_scale,
    "dask-cost-model": dask_cost_model,
    "device": device,
    "jax": jax,
    **{f"section-{key}": section(key) for key in
       ("roofline", "vs_mlp", "memory", "torch", "predict", "device", "dask",
        "dask_scale", "jax", "dask_cost", "exactness")},
}


# -------------------------------------------------------------------- pages
def render(text, fmt, results):
    """``text`` with every generated part rendered anew."""
    pattern, template = MARKERS[fmt]

    def fill(match):
        indent = match.groupdict().get("indent") or ""
        name = match.group(2 if fmt == "rst" else 1)
        if name not in FRAGMENTS:
            raise KeyError(f"no generated part named {name!r} (known: "
                           f"{sorted(FRAGMENTS)})")
        try:
            body = FRAGMENTS[name](results, fmt)
        except KeyError as missing:  # a section that no run has written yet
            body = (f"*Not measured yet: benchmarks/results.json has no "
                    f"{missing} section.*")
        text = template.format(name=name, body=body)
        # In a list item, the generated part is indented as its markers are.
        return "\n".join((indent + line) if line else line
                         for line in text.splitlines())

    return pattern.sub(fill, text)


def load(path=RESULTS):
    return json.loads(Path(path).read_text())


def stale_pages(results=None, write=False):
    """The pages whose generated parts differ from what the results give."""
    results = load() if results is None else results
    stale = []
    for page in PAGES:
        path = ROOT / page
        text = path.read_text()
        new = render(text, _format(path), results)
        if new != text:
            stale.append(page)
            if write:
                path.write_text(new)
    return stale


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if a page is out of date")
    args = p.parse_args(argv)
    stale = stale_pages(write=not args.check)
    if args.check and stale:
        print("out of date (run python benchmarks/report.py): " + ", ".join(stale))
        return 1
    print(("rewrote: " + ", ".join(stale)) if stale and not args.check
          else "every page is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
