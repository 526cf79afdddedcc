"""The benchmark's sections compute and write what they say, at tiny sizes.

Each test calls one section's ``measure`` in this process, at the smallest
size that still exercises it, and checks what it computes: the schema of
its results, and the section's own invariants (float32 stays float32, the
data-parallel fit is the in-memory one, one task per worker, every ratio
with its spread and its repeats). The statistics and the report's rules
are checked on numbers made up here. One test runs ``benchmarks/run.py`` as
a command; the whole ``--quick`` run of every section end to end is in the
slow tier (``--runslow``).

Nothing here looks at a timing; the measurements belong to the benchmark.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "run.py"
sys.path.insert(0, str(BENCHMARKS))
import common  # noqa: E402
import sections  # noqa: E402


def _cfg(*argv, **sizes):
    """run.py's configuration with --quick, and the sizes given here."""
    cfg = sections.parse_args(["--quick", *argv])
    for name, value in sizes.items():
        setattr(cfg, name, value)
    return cfg


# The smallest network that exercises every path: two batches per epoch.
TINY = dict(n=100, d=6, hidden=4, classes=3, batch=50, repeats=1, fit_repeats=1)


def _in_git_checkout():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCHMARKS,
                              capture_output=True).returncode == 0
    except OSError:
        return False


def _has_spreads(row, *fields):
    """Each ratio of ``fields`` with its spread, around the ratio of medians."""
    for field in fields:
        lo, hi = row[f"{field}_spread"]
        assert lo <= hi, (field, row)


# ------------------------------------------------------------- statistics
def test_a_ratio_is_a_ratio_of_medians_with_the_spread_of_the_pairs():
    # The README once gave "1.33x" where the medians were 1.95 s and 1.93 s:
    # a median of pairwise ratios. The figure is the ratio of the medians.
    ours = [1.95, 1.40, 1.96, 2.40, 1.94]
    theirs = [1.93, 2.10, 1.92, 1.90, 1.94]
    got = common.compared("speedup", theirs, ours)
    assert got["speedup"] == pytest.approx(np.median(theirs) / np.median(ours))
    pairs = np.divide(theirs, ours)
    assert got["speedup_spread"] == pytest.approx(
        [np.percentile(pairs, 25), np.percentile(pairs, 75)])


@pytest.mark.parametrize("value, spread, lower, verdict", [
    (1.5998, [1.55, 1.65], False, "within noise"),   # not "missed" by 0.0002
    (1.70, [1.62, 1.75], False, "met"),
    (1.40, [1.35, 1.58], False, "missed"),
    (1.05, [0.98, 1.10], True, "within noise"),
    (0.90, [0.85, 0.99], True, "met"),
    (1.20, None, False, "spread not recorded"),
    (None, None, False, "not measured"),
])
def test_a_goal_is_met_or_missed_only_by_its_whole_spread(value, spread, lower,
                                                         verdict):
    got = common.goal(value, 1.6 if not lower else 1.0, lower_is_better=lower,
                      spread=spread, repeats=5)
    assert got["verdict"] == verdict
    assert got["met"] == {"met": True, "missed": False}.get(verdict)


def test_a_goal_needs_five_repeats_and_a_measure_that_is_no_timing_none():
    assert common.goal(2.0, 1.6, spread=[1.9, 2.1], repeats=3)["verdict"] == (
        "too few repeats (3 < 5)")
    # A peak of memory or a count is not a timing: its value decides.
    memory = common.goal(0.02, 0.25, lower_is_better=True, exact=True)
    assert memory["verdict"] == "met" and memory["spread"] == [0.02, 0.02]
    note = common.goal(1.8, 1.3, spread=[1.7, 1.9], repeats=5, note="not like for like")
    assert note["verdict"] == "not like for like" and note["met"] is None


def test_alternate_alternates_after_a_warm_up():
    calls = []
    times = common.alternate({"a": lambda: calls.append("a"),
                              "b": lambda: calls.append("b")}, 4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4}


# ------------------------------------------------------------ the command
def test_run_writes_one_stamp_for_its_sections_and_keeps_the_others(tmp_path):
    # One run of the command: its sections share one stamp (its id, commit
    # and machine) with their own run times and the whole run's, and it
    # keeps what the file held of the others.
    out = tmp_path / "results.json"
    kept = {"n": 1, "d": 1, "hidden": 1, "dtype": "float64", "lbfgs_iter": 1,
            "ours_peak_extra_mib": 1.0, "mlp_peak_extra_mib": 4.0, "ratio": 0.25,
            "data_mib": 0.0, "method": "VmHWM after clear_refs", "detail": {}}
    kept_run = {"date": "2000-01-01", "command": "python benchmarks/run.py",
                "commit": None, "machine": {}, "config": {},
                "versions": {"python": "3"}}
    out.write_text(json.dumps({"runs": {"memory": kept_run}, "memory": kept}))
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only", "roofline,mlp",
                    "--json", str(out)], check=True, capture_output=True,
                   text=True, cwd=BENCHMARKS.parent, timeout=600)
    results = json.loads(out.read_text())
    assert set(results["runs"]) == {"roofline", "vs_mlp", "memory"}
    assert results["memory"] == kept and results["runs"]["memory"] == kept_run
    a, b = results["runs"]["roofline"], results["runs"]["vs_mlp"]
    assert a["id"] == b["id"] and a["sections"] == ["roofline", "vs_mlp"]
    for run in (a, b):
        assert {"date", "command", "commit", "changes", "machine", "versions",
                "config", "seconds", "run_seconds"} <= set(run)
        assert run["seconds"] <= run["run_seconds"]
        assert run["versions"]["numpy"] and "--quick" in run["command"]
    assert "(a) roofline" in results["table"]
    assert "(c) peak extra memory" in results["table"]
    targets = results["targets"]
    assert {"loss_and_gradient_roofline_float64", "memory_ratio_vs_mlp"} <= set(targets)
    assert all({"value", "target", "spread", "verdict"} <= set(v)
               for v in targets.values())
    # --quick makes too few repeats for a verdict.
    assert targets["speedup_vs_mlp_sgd_float64"]["verdict"].startswith("too few")


def test_an_unknown_section_is_refused():
    with pytest.raises(SystemExit):
        sections.parse_args(["--only", "roofline,nonesuch"])


# -------------------------------------------------------- (a) to (e), (f)
def test_roofline_section():
    import roofline

    rows = roofline.measure(_cfg(**TINY, density=0.3))
    assert {(r["dtype"], r["input"], r["path"]) for r in rows} == {
        (dtype, kind, path) for dtype in ("float64", "float32")
        for kind in ("dense", "csr")
        for path in ("loss_and_gradient", "TwoLayerLoss.loss_gradient")
    } | {(dtype, "dense", path) for dtype in ("float64", "float32")
         for path in ("sgd_epoch", "sgd_floor GEMM+gather+upd")}
    for row in rows:
        assert {"bound_s", "ours_s", "roofline_ratio", "bound_gflops"} <= set(row)
        _has_spreads(row, "roofline_ratio")
    epoch = [r for r in rows if r["path"] == "sgd_epoch"]
    for row in epoch:
        _has_spreads(row, "floor_ratio", "ours_vs_floor")
        assert set(row["times_s"]) == {"gemm", "floor", "epoch"}
    assert set(roofline.goals(rows)) == {
        f"{what}_roofline_{dtype}" for what in ("loss_and_gradient", "sgd_epoch")
        for dtype in ("float64", "float32")}


def test_vs_mlp_section():
    import vs_mlp

    rows = vs_mlp.measure(_cfg(**TINY, epochs=2, lbfgs_iter=3))
    assert {(r["solver"], r["dtype"]) for r in rows} == {
        (s, d) for s in ("sgd", "lbfgs") for d in ("float64", "float32")}
    for row in rows:
        assert {"ours_s", "mlp_s", "speedup", "ours_train_log_loss",
                "mlp_train_log_loss"} <= set(row)
        _has_spreads(row, "speedup")
        assert len(row["times_s"]["ours"]) == len(row["times_s"]["mlp"]) == 1
        # float32 end to end is a property, not a timing: check it here too.
        assert row["ours_coef_dtype"] == row["dtype"]
        assert row["ours_proba_dtype"] == row["dtype"]
        # The same stopping rule: both ran every epoch or iteration asked for.
        assert row["ours_n_iter"] == row["mlp_n_iter"]
    # Like for like: MLPClassifier keeps float32 in sgd; its lbfgs computes in
    # float64, and the page says so rather than give the goal a verdict.
    by = {(r["solver"], r["dtype"]): r for r in rows}
    assert by["sgd", "float32"]["mlp_coef_dtype"] == "float32"
    assert vs_mlp.unlike(by["sgd", "float32"]) is None
    assert by["lbfgs", "float32"]["mlp_coef_dtype"] == "float64"
    goals = vs_mlp.goals(rows)
    assert goals["speedup_vs_mlp_lbfgs_float32"]["verdict"].startswith(
        "not like for like")
    text = "\n".join(vs_mlp.text(rows, None))
    assert "lbfgs float32: not like for like" in text
    # The final losses side by side, with digits enough to tell them apart.
    assert f"{by['sgd', 'float64']['ours_train_log_loss']:.3g} / " in text


def test_peak_memory_child():
    # What each process of section (c) measures, here in this process.
    import peak_memory

    for which in ("ours", "mlp"):
        got = peak_memory.child(which, 500, 5, 4, 3, "float64", 2)
        assert got["which"] == which and got["peak_extra_mib"] >= 0
        assert got["data_mib"] == pytest.approx((500 * 5 * 8 + 500 * 8) / 2**20)


def test_vs_torch_section():
    pytest.importorskip("torch")
    import vs_torch

    t = vs_torch.measure(_cfg(**TINY, epochs=1))
    assert t["available"]
    assert {(r["dtype"], r["work"].split()[0]) for r in t["rows"]} == {
        (d, w) for d in ("float64", "float32") for w in ("full-batch", "SGD")}
    for row in t["rows"]:
        _has_spreads(row, "speedup")
    assert len(vs_torch.goals(t)) == 4


def test_predict_latency_section():
    import predict_latency

    p = predict_latency.measure(_cfg(repeats=1, hidden=4, predict_rows=50,
                                     predict_calls=2))
    works = [r["work"] for r in p["rows"]]
    assert works[:3] == ["predict, 1 row", "predict_proba, 1 row",
                         "predict_proba, 50 rows"]
    for row in p["rows"]:
        assert {"ours_s", "mlp_s", "speedup", "times_s"} <= set(row)
        _has_spreads(row, "speedup")
    try:
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError:
        assert not p["onnx"]["available"]
        return
    assert p["onnx"]["available"]
    assert works[3:] == ["onnxruntime, 1 row", "onnxruntime, 50 rows"]
    # The exported graph computes what the estimator computes.
    assert p["onnx"]["ours_max_proba_diff"] < 1e-5


def test_benchmark_predict_skips_onnx_when_missing(monkeypatch):
    # A None entry in sys.modules makes the import fail as if not installed.
    import predict_latency

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    sessions, reason = predict_latency.onnx_sessions(None, None, 4)
    assert sessions is None
    assert "onnxruntime" in reason


def test_benchmark_device_section_on_the_cpu():
    # Section (f) is meant for a GPU; on PyTorch's CPU build the same code
    # runs with --device cpu, which is what this test checks (noxfile.py's
    # array_api session requires it to run).
    pytest.importorskip("torch")
    import on_device

    dev = on_device.measure(_cfg("--device", "cpu", **TINY, device_n=200,
                                 lbfgs_iter=2))
    assert dev["available"] and dev["device"] == "cpu"
    works = [row["work"] for row in dev["rows"]]
    assert works == ["full-batch loss+gradient", "lbfgs 2 iterations",
                     "SGD 1 epoch, batch 200", "SGD 1 epoch, batch 2048"]
    assert 0 < dev["rows"][0]["fraction_of_gemm_rate"]
    assert all(row["ours_s"] > 0 for row in dev["rows"])
    _has_spreads(dev["rows"][0], "fraction_of_gemm_rate")
    _has_spreads(dev["rows"][1], "speedup_vs_numpy")
    # The output says that these are not GPU numbers.
    assert any("No GPU: these are PyTorch's CPU kernels" in line
               for line in on_device.text(dev, None))


# ------------------------------------------------------- (g) to (j), exactness
def test_dask_fit_section():
    # Section (g) at tiny sizes on worker threads: per iteration on 1 and 2
    # workers and in memory, whole fits for both origins of blocks, and the
    # data-parallel fit is the in-memory one (a check, not a timing).
    pytest.importorskip("distributed")
    import dask_fit

    g = dask_fit.measure(_cfg("--dask-spark", "no", dask_n=400, dask_d=6,
                              dask_informative=3, dask_hidden=4, dask_blocks=4,
                              dask_iter=3))
    assert g["available"] and g["iterations"] == 3
    assert g["n_iter"] == [3, 3] and g["same_model_max_proba_gap"] < 1e-6
    names = {"memory", "1 worker(s)"} | ({"2 worker(s)"} if g["cores"] >= 2 else set())
    assert names <= set(g["per_iteration_s"])
    # Each repeat keeps its fits: one of 1 iteration and one of --dask-iter.
    for name in names:
        (run,) = g["runs"][name]
        assert run["short_iter"] == 1 and run["long_iter"] == 3
    (sent,) = g["runs"]["1 worker(s), from_array"]
    assert "short_s" not in sent and sent["long_iter"] == 3
    _has_spreads(g["one_worker"], "time_ratio", "from_array_time_ratio",
                 "per_iteration_ratio")
    if g["cores"] >= 2:
        _has_spreads(g["two_workers"], "speedup", "per_iteration_ratio", "vs_memory")
        assert "dask_two_workers_vs_memory" in dask_fit.goals(g)
    for row in g["overhead"].values():
        assert row["round_trip_s"] > 0 and row["evaluations"] >= 1
        assert row["overhead_vs_round_trip"] == pytest.approx(
            row["overhead_s"] / row["round_trip_s"])
        _has_spreads(row, "overhead_vs_round_trip")
    assert g["scaling"] == [] or g["scaling"][0]["workers"] == 4
    assert not g["spark"]["available"] and "--dask-spark no" in g["spark"]["reason"]
    assert {"dask_one_worker_vs_memory", "dask_one_worker_vs_memory from_array",
            "dask_overhead_vs_round_trip 1 worker(s)"} <= set(dask_fit.goals(g))


class _JVM:
    """Enough of py4j's JVM view for ``spark_blas``: netlib's BLAS classes."""

    def __init__(self, native):
        class Instance:
            def __init__(self, name):
                self.getClass = lambda: type("Class", (), {"getName": lambda s: name})()

        class NativeBLAS:
            @staticmethod
            def getInstance():
                if not native:
                    raise RuntimeError("netlib-blas: JNI_OnLoad: dlopen(libblas.so.3)")
                return Instance("dev.ludovic.netlib.blas.JNIBLAS")

        class BLAS:
            @staticmethod
            def getInstance():
                return Instance("dev.ludovic.netlib.blas.JNIBLAS" if native
                                else "dev.ludovic.netlib.blas.VectorBLAS")

        blas = type("blas", (), {"NativeBLAS": NativeBLAS, "BLAS": BLAS})
        self.dev = type("dev", (), {"ludovic": type("ludovic", (), {
            "netlib": type("netlib", (), {"blas": blas})})})


@pytest.mark.parametrize("native", [True, False])
def test_spark_says_which_blas_it_ran(native):
    # Without a system libblas.so.3 Spark's MLP runs a Java BLAS, two to two
    # and a half times slower: the section records it, and a ratio against
    # that fallback is labelled and gives the goal no verdict.
    import dask_fit

    spark = type("Spark", (), {"_jvm": _JVM(native)})()
    blas = dask_fit.spark_blas(spark)
    assert blas["blas_native"] is native
    assert blas["blas"].endswith("JNIBLAS" if native else "VectorBLAS")
    s = {"available": True, **blas, "speedup": 3.5, "speedup_spread": [3.2, 3.8],
         "cores": 2, "version": "4", "per_iteration_s": 0.35,
         "ours_per_iteration_s": 0.1}
    g = {"available": True, "overhead": {}, "repeats": 5, "spark": s,
         "one_worker": {"time_ratio": 1.0, "from_array_time_ratio": 1.0}}
    goal = dask_fit.goals(g)["dask_speedup_vs_spark"]
    if native:
        assert dask_fit.spark_note(s) is None and goal["verdict"] == "met"
    else:
        assert "libopenblas0-pthread" in dask_fit.spark_note(s)
        assert goal["verdict"].startswith("against the Java BLAS fallback")
        assert goal["met"] is None
    assert dask_fit.system_libblas() is None or "libblas.so.3" in \
        dask_fit.system_libblas()


def test_dask_scale_section():
    # Section (h): a row for each number of workers and fan-in asked for.
    pytest.importorskip("distributed")
    import dask_scale

    h = dask_scale.measure(_cfg())
    assert h["available"]
    assert [(row["workers"], row["fan_in"]) for row in h["table"]] == [(1, 2), (2, 2)]
    for row in h["table"]:
        # (a difference of two fits' times: at this size, noise may make it
        # negative; what is checked is that it is measured, not its value)
        assert row["repeats"] >= 1 and np.isfinite(row["ms_per_iteration"])
        assert len(row["ms_per_iteration_repeats"]) == row["repeats"]


@pytest.mark.parametrize("path", ["calls", pytest.param("graph", marks=pytest.mark.slow)])
def test_dask_cost_section(path):
    # Section (j) at the smallest size: a scheduler process on a core of its
    # own and two worker processes, and the counts are those of the design
    # (a check of the counters, not a timing): calls to the workers reach
    # the scheduler not at all; through it, one graph per evaluation, one
    # task per worker (a star), no theta through it.
    pytest.importorskip("distributed")
    import dask_cost

    cores = os.sched_getaffinity(0)
    j = dask_cost.measure(_cfg(cost_workers="2", cost_compare=0, cost_path=path))
    assert j["available"] and j["path"] == path
    (row,) = j["table"]
    assert row["workers"] == 2 and row["topology"] == "star"
    if path == "calls":
        # (messages: the difference of two fits' set-ups, which vary by a
        # few messages (a look more where the blocks are), over ten
        # evaluations; tests/test_dask_parallel.py counts the evaluations'
        # own: none)
        assert row["graphs"] == row["tasks"] == 0 and abs(row["messages"]) < 3, row
    else:
        assert row["graphs"] == 1 and row["tasks"] == row["workers"], row
    # (wall and CPU times per evaluation are differences of two fits' times
    # over ten evaluations: calls take about a millisecond each, so noise can
    # make them negative, and CPU times come in clock ticks of 10 ms; what is
    # checked is that they are measured, not their values)
    assert np.isfinite(row["wall_ms"]) and np.isfinite(row["scheduler_cpu_ms"])
    assert row["scheduler_mib"] < 0.1
    assert 0 < row["busiest_worker_compute_ms"] <= row["workers_compute_ms"]
    assert len(row["per_repeat"]["scheduler_cpu_ms"]) == row["repeats"]
    if len(cores) >= 2:
        pinning = row["pinning"]
        assert pinning["pinned"], pinning
        assert not set(pinning["scheduler_cpus"]) & set(pinning["others_cpus"])
    assert os.sched_getaffinity(0) == cores  # (this process has its cores back)
    # The ways to reach the workers, side by side (at K = 2): every one
    # timed in every repeat, and the ratios to the calls' time kept.
    t = j["transports"]
    assert set(t["ms"]) == {"calls", "actors", "graph"}
    assert all(len(v) == t["repeats"] and min(v) > 0 for v in t["ms"].values())
    assert t["graph_vs_calls"] > 0 and len(t["graph_vs_calls_spread"]) == 2


def _cost_row(k, wall, **more):
    return {"workers": k, "topology": "tree" if k > 4 else "star", "wall_ms": wall,
            "tasks": 1.5 * k - 1, "graphs": 1.0, "messages": 7 * k + 3,
            "scheduler_mib": 0.01 * k, "repeats": 5,
            "busiest_worker_mib": 60.0, "client_cpu_ms": 100.0,
            "scheduler_cpu_ms": 2.0 * k, "busiest_worker_compute_ms": 5.0,
            "workers_compute_ms": 5.0 * k,
            "pinning": {"pinned": True, "scheduler_cpus": [0], "others_cpus": [1]},
            **more}


def test_dask_cost_extrapolates_counts_and_checks_its_wall_model():
    # Only counts go past the largest K; wall time is modelled as serial
    # work plus a constant fitted on the two smallest K, and checked on the
    # others (the held-out error).
    import dask_cost

    table = [_cost_row(k, 120 + 2 * k + 5 * k) for k in (1, 2, 4, 8)]
    table[-1]["wall_ms"] *= 1.5  # (oversubscribed: the model misses it)
    fitted = dask_cost.cost_model({"table": table})
    assert set(fitted["models"]) == set(dask_cost.COUNTED)
    assert not {"wall_ms", "scheduler_cpu_ms", "client_cpu_ms"} & set(fitted["models"])
    assert fitted["predictions"]["tasks"]["1000"] == pytest.approx(1499)
    wall = fitted["wall"]
    assert wall["fitted_on"] == [1, 2]
    (four, eight) = wall["held_out"]
    assert four["error"] == pytest.approx(0, abs=1e-9)
    assert eight["error"] == pytest.approx(1 / 1.5 - 1)
    assert wall["max_abs_error"] == pytest.approx(abs(eight["error"]))
    text = "\n".join(dask_cost.text({"available": True, "d": 1, "hidden": 1,
                                     "classes": 2, "parameters": 5,
                                     "rows_per_worker": 1, "table": table}, None))
    assert "the scheduler's CPU per evaluation: 2 workers 4.0 ms, 4 workers 8.0 ms, " \
        "8 workers 16.0 ms, 16 workers not measured" in text
    assert "held out: 4 workers" in text and "(-33%)" in text


def test_dask_cost_goals_have_spreads():
    import dask_cost

    per_repeat = {"scheduler_cpu_ms": [3.0, 4.0, 4.0, 5.0, 6.0]}
    table = [_cost_row(k, 100, per_repeat={
        "scheduler_cpu_ms": [v * k for v in per_repeat["scheduler_cpu_ms"]]},
        scheduler_cpu_ms_spread=[1.5 * k, 2.5 * k]) for k in (2, 16)]
    goals = dask_cost.goals({"available": True, "table": table})
    assert goals["dask_cost_scheduler_cpu_ms 2 workers"]["verdict"] == "met"
    assert goals["dask_cost_scheduler_mib 16 workers"]["exact"]
    slope = goals["dask_cost_scheduler_cpu_ms per added worker"]
    assert slope["spread"] == pytest.approx([4.0, 5.0])  # (the repeats' slopes)


def test_exactness_section():
    # The in-memory objective at every point of the data-parallel fit, and a
    # row per max_iter and contender.
    pytest.importorskip("distributed")
    import exactness

    e = exactness.measure(_cfg())
    assert e["per_evaluation"]["evaluations"] >= 6
    # Rounding, not another objective.
    assert e["per_evaluation"]["max_rel_loss_gap"] < 1e-12
    assert e["per_evaluation"]["max_rel_grad_gap"] < 1e-12
    assert [(f["max_iter"], f["contender"]) for f in e["fits"]] == [
        (m, c) for m in (3, 6) for c in ("dask", "blas_threads", "row_blocks")]
    assert all(f["n_iter"] == [f["max_iter"]] * 2 and f["max_proba_gap"] < 1e-9
               for f in e["fits"])


# --------------------------------------------------------------------- (i)
def test_vs_jax_contenders_reach_the_same_loss():
    # The same update rule from the same start on the same rows: our solver
    # loop and the jitted JAX loop reach the same loss (a property of the
    # contenders, not a time).
    pytest.importorskip("jax")
    import vs_jax

    config = {"n": 100, "d": 6, "hidden": 4, "classes": 3, "batch": 50, "epochs": 2}
    for solver in vs_jax.SOLVERS:
        ours = vs_jax._Ours(config, "float64").fit(solver)
        theirs = vs_jax._Jax(config, "float64").fit(solver)
        assert ours == pytest.approx(theirs, rel=1e-6)


def test_vs_jax_rows_from_rounds():
    # Per round, ratios of medians with their spreads; the goal's, the worse
    # round's ratio and the union of the rounds' spreads; the time outside
    # the GEMMs, repeat by repeat.
    import vs_jax

    rounds = []
    for scale in (1.0, 1.2):
        got = {}
        for key in [(s, d) for s in vs_jax.SOLVERS for d in vs_jax.DTYPES]:
            times = {"ours": [scale * t for t in (1.1, 1.2, 1.05, 1.15, 1.3)],
                     "jax": [1.0] * 5, "before": [2.0] * 5}
            gemm = {"ours": [0.5] * 5, "jax": [0.5] * 5, "before": [0.5] * 5}
            got[key] = {"times": times, "gemm": gemm,
                        "losses": {"ours": 1.0, "jax": 1.0, "before": 1.0},
                        "jax_compile_s": 1.0, "kernels": {"ours": False}}
        rounds.append(got)
    rows = vs_jax.summarize(rounds, ["ours", "jax", "before"])
    row = rows[0]
    assert [r["time_ratio"] for r in row["rounds"]] == pytest.approx([1.15, 1.38])
    assert row["time_ratio"] == pytest.approx(1.38)
    assert row["time_ratio_spread"] == pytest.approx(
        [row["rounds"][0]["time_ratio_spread"][0],
         row["rounds"][1]["time_ratio_spread"][1]])
    one = row["rounds"][0]
    assert one["ours_outside_gemm_s"] == pytest.approx(0.65)
    assert one["outside_vs_before"] == pytest.approx(0.65 / 1.5)
    goals = vs_jax.goals({"rows": rows, "repeats": 5})
    assert goals["time_vs_jax sgd float32"]["verdict"] == "missed"
    # (the first round alone clears 0.5; the second, slower, does not)
    assert one["outside_vs_before_spread"][1] <= 0.5
    assert goals["outside_gemm_vs_before sgd float32"]["verdict"] == "within noise"


# ------------------------------------------------------------------ report
def test_a_figure_older_than_the_code_says_so(monkeypatch):
    # Where sk_twolayer/ changed since a figure's commit, its part of the
    # page says so; where it did not, nothing; without git, what it said.
    if not _in_git_checkout():
        pytest.skip("needs a git checkout")
    import report

    log = subprocess.run(["git", "log", "-2", "--format=%h", "--", "sk_twolayer/"],
                         cwd=BENCHMARKS.parent, capture_output=True,
                         text=True).stdout.split()
    if len(log) < 2:
        pytest.skip("needs two commits that change sk_twolayer/")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCHMARKS,
                          capture_output=True, text=True).stdout.strip()
    assert common.older_than_code(log[1]) is True
    assert common.older_than_code(head) is False
    assert common.older_than_code("0000000") is None
    assert report.stale_note({"commit": log[1]}) == (
        f"measured at {log[1]}, older than the code")
    assert report.stale_note({"commit": head}) == ""
    # Without git (or without the commit), the page keeps what it said.
    monkeypatch.setattr(report, "_older", lambda commit: None)
    monkeypatch.setitem(report._BEFORE, "text",
                        f"... measured at {head}, older than the code ...")
    assert report.stale_note({"commit": head}) != ""
    monkeypatch.setitem(report._BEFORE, "text", "")
    assert report.stale_note({"commit": head}) == ""


def test_the_report_renders_a_run_without_the_optional_contenders():
    # A run on a machine without PyTorch, JAX or a GPU (CI's Python 3.13 has
    # no PyTorch) renders every part of the pages, and each part drawn on a
    # missing contender says why instead of a figure.
    import report

    results = json.loads((BENCHMARKS / "results.json").read_text())
    results["torch"] = {"available": False}
    results["jax"] = {"available": False, "reason": "jax is not installed"}
    results["device"] = {"available": False, "reason": "no CUDA device"}
    for name in report.FRAGMENTS:
        for fmt in ("md", "rst"):
            text = report.FRAGMENTS[name][0](results, fmt)
            assert isinstance(text, str) and text, name
    assert "jax is not installed" in report.FRAGMENTS["jax"][0](results, "rst")
    page = report.FRAGMENTS["readme-performance"][0](results, "md")
    assert "vs PyTorch CPU | not measured: PyTorch is not installed" in page


# -------------------------------------------------------------- slow tier
@pytest.mark.slow
def test_every_section_end_to_end(tmp_path):
    # The whole --quick run of every section, as the command runs it: one
    # stamp for all, every section's text in the table.
    out = tmp_path / "results.json"
    before = ["--jax-before", "HEAD" if _in_git_checkout() else "none"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cpu",
         "--only", ",".join(sections.BY_NAME), "--json", str(out), *before],
        check=True, capture_output=True, text=True, cwd=BENCHMARKS.parent,
        timeout=1200)
    results = json.loads(out.read_text())
    measured = {s.KEY for s in sections.SECTIONS}
    assert set(results["runs"]) == measured <= set(results)
    assert len({run["id"] for run in results["runs"].values()}) == 1
    for s in sections.SECTIONS:
        assert s.text(results[s.KEY], results["runs"][s.KEY])[0] in results["table"]
    if importlib.util.find_spec("torch") is not None:  # (PyTorch is optional)
        assert "No GPU: these are PyTorch's CPU kernels" in proc.stdout
    jax = results["jax"]
    if jax["available"]:
        sides = ("ours", "jax", "before") if before[1] != "none" else ("ours", "jax")
        for row in jax["rows"]:
            (one,) = row["rounds"]
            assert row["time_ratio"] == one["time_ratio"]
            for side in sides[1:]:
                assert one["ours_final_loss"] == pytest.approx(
                    one[f"{side}_final_loss"], rel=1e-3)
            assert one["ours_kernels"] in (False, None)  # too little work
        goals = {k for k in results["targets"]
                 if k.startswith(("time_vs_jax", "outside_gemm"))}
        assert len(goals) == (8 if len(sides) == 3 else 4)
    g = results["dask"]
    try:
        import pyspark  # noqa: F401
    except ImportError:
        assert not g["spark"]["available"] and "pyspark" in g["spark"]["reason"]
    else:
        assert g["spark"]["available"] and "blas_native" in g["spark"]
    # The report renders every section of such a file.
    import report

    for name in report.FRAGMENTS:
        for fmt in ("md", "rst"):
            report.FRAGMENTS[name][0](results, fmt)
