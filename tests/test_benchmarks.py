"""The benchmark's sections compute and write what they say, at tiny sizes.

Each test calls one section's ``measure`` in this process, at the smallest
size that still exercises it, and checks what it computes: the schema of
its results, and the section's own invariants (float32 stays float32, the
data-parallel fit is the in-memory one, one task per worker). One test
runs ``benchmarks/run.py`` as a command; the whole ``--quick`` run of every
section end to end is in the slow tier (``--runslow``).

Nothing here looks at a timing; the measurements belong to the benchmark.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "run.py"
sys.path.insert(0, str(BENCHMARKS))
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


# ------------------------------------------------------------ the command
def test_run_writes_its_sections_and_keeps_the_others(tmp_path):
    # One run of the command: it measures the sections asked for, stamps
    # them, and keeps what the file held of the others.
    out = tmp_path / "results.json"
    kept = {"n": 1, "d": 1, "hidden": 1, "dtype": "float64", "lbfgs_iter": 1,
            "ours_peak_extra_mib": 1.0, "mlp_peak_extra_mib": 4.0, "ratio": 0.25,
            "data_mib": 0.0, "method": "VmHWM after clear_refs", "detail": {}}
    kept_run = {"date": "2000-01-01", "command": "python benchmarks/run.py",
                "commit": None, "machine": {}, "config": {},
                "versions": {"python": "3"}}
    out.write_text(json.dumps({"runs": {"memory": kept_run}, "memory": kept}))
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only", "roofline",
                    "--json", str(out)], check=True, capture_output=True,
                   text=True, cwd=BENCHMARKS.parent, timeout=600)
    results = json.loads(out.read_text())
    assert set(results["runs"]) == {"roofline", "memory"}
    assert results["memory"] == kept and results["runs"]["memory"] == kept_run
    run = results["runs"]["roofline"]
    assert {"date", "command", "commit", "machine", "versions", "config",
            "seconds"} <= set(run)
    assert run["versions"]["numpy"] and "--quick" in run["command"]
    assert "(a) roofline" in results["table"]
    assert "(c) peak extra memory" in results["table"]
    assert {"loss_and_gradient_roofline_float64",
            "memory_ratio_vs_mlp"} <= set(results["targets"])
    assert all("value" in v and "target" in v for v in results["targets"].values())


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
    epoch = [r for r in rows if r["path"] == "sgd_epoch"]
    assert all({"floor_s", "floor_ratio", "ours_vs_floor"} <= set(r) for r in epoch)
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
        # float32 end to end is a property, not a timing: check it here too.
        assert row["ours_coef_dtype"] == row["dtype"]
        assert row["ours_proba_dtype"] == row["dtype"]
        # The same stopping rule: both ran every epoch or iteration asked for.
        assert row["ours_n_iter"] == row["mlp_n_iter"]


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
    assert len(vs_torch.goals(t)) == 4


def test_predict_latency_section():
    import predict_latency

    p = predict_latency.measure(_cfg(repeats=1, hidden=4, predict_rows=50,
                                     predict_calls=2))
    works = [r["work"] for r in p["rows"]]
    assert works[:3] == ["predict, 1 row", "predict_proba, 1 row",
                         "predict_proba, 50 rows"]
    for row in p["rows"]:
        assert {"ours_s", "mlp_s", "speedup"} <= set(row)
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
    # The output says that these are not GPU numbers.
    assert any("No GPU: these are PyTorch's CPU kernels" in line
               for line in on_device.text(dev, None))


# ------------------------------------------------------- (g) to (j), exactness
def test_dask_fit_section():
    # Section (g) at tiny sizes on worker threads: every figure is there, and
    # the data-parallel fit is the in-memory one (a check, not a timing).
    pytest.importorskip("distributed")
    import dask_fit

    g = dask_fit.measure(_cfg("--dask-spark", "no", lbfgs_iter=3, dask_n=400,
                              dask_d=5, dask_hidden=4, dask_blocks=4))
    assert g["available"]
    assert g["n_iter"][0] == g["n_iter"][1] and g["same_model_max_proba_gap"] < 1e-6
    for row in g["overhead"].values():
        assert row["round_trip_s"] > 0 and row["evaluations"] >= 1
        assert row["overhead_vs_round_trip"] == pytest.approx(
            row["overhead_s"] / row["round_trip_s"])
    assert g["one_worker"]["time_ratio"] > 0
    assert g["one_worker"]["from_array_time_ratio"] > 0  # both origins of blocks
    if g["cores"] > 2:  # the scaling curve only where there are the cores
        assert [p["workers"] for p in g["scaling"]][0] == 1
    else:
        assert g["scaling"] == []
    assert ("two_workers" in g) == (g["cores"] >= 2)
    assert not g["spark"]["available"]


def test_dask_scale_section():
    # Section (h): a row for each number of workers and fan-in asked for.
    pytest.importorskip("distributed")
    import dask_scale

    h = dask_scale.measure(_cfg())
    assert h["available"]
    assert [(row["workers"], row["fan_in"]) for row in h["table"]] == [(1, 2), (2, 2)]
    assert all(row["repeats"] >= 1 and row["ms_per_iteration"] > 0
               for row in h["table"])


def test_dask_cost_section():
    # Section (j) at the smallest size: a scheduler process and two worker
    # processes, and the counts are those of the design: one graph per
    # evaluation, one task per worker (a star), no theta through the
    # scheduler (a check of the counters, not a timing).
    pytest.importorskip("distributed")
    import dask_cost

    j = dask_cost.measure(_cfg(cost_workers="2", cost_compare=0))
    assert j["available"]
    (row,) = j["table"]
    assert row["workers"] == 2 and row["topology"] == "star"
    assert row["graphs"] == 1 and row["tasks"] == row["workers"], row
    assert row["wall_ms"] > 0 and row["scheduler_cpu_ms"] >= 0
    assert row["scheduler_mib"] < 0.1


def test_dask_cost_model():
    # The model is fitted when the results are shown, to the measured rows.
    import dask_cost

    table = [{"workers": k, "topology": "tree", "tasks": 1.5 * k - 1,
              "messages": 7 * k + 3} for k in (8, 16, 32, 64)]
    fitted = dask_cost.cost_model({"table": table})
    assert fitted["fitted_on"] == [8, 16, 32, 64]
    assert fitted["predictions"]["tasks"]["1000"] == pytest.approx(1499)
    assert fitted["predictions"]["messages"]["100"] == pytest.approx(703)


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


# -------------------------------------------------------------- slow tier
@pytest.mark.slow
def test_every_section_end_to_end(tmp_path):
    # The whole --quick run of every section, as the command runs it.
    out = tmp_path / "results.json"
    before = ["--jax-before", "HEAD"] if _in_git_checkout() else []
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cpu",
         "--only", ",".join(sections.BY_NAME), "--json", str(out), *before],
        check=True, capture_output=True, text=True, cwd=BENCHMARKS.parent,
        timeout=1200)
    results = json.loads(out.read_text())
    measured = {s.KEY for s in sections.SECTIONS}
    assert set(results["runs"]) == measured <= set(results)
    for s in sections.SECTIONS:
        assert s.text(results[s.KEY], results["runs"][s.KEY])[0] in results["table"]
    assert "No GPU: these are PyTorch's CPU kernels" in proc.stdout
    jax = results["jax"]
    if jax["available"]:
        sides = ("ours", "jax", "before") if before else ("ours", "jax")
        for row in jax["rows"]:
            (one,) = row["rounds"]
            assert row["time_ratio"] == one["time_ratio"]
            for side in sides[1:]:
                assert one["ours_final_loss"] == pytest.approx(
                    one[f"{side}_final_loss"], rel=1e-3)
            assert one["ours_kernels"] in (False, None)  # too little work
        goals = {k for k in results["targets"]
                 if k.startswith(("time_vs_jax", "outside_gemm"))}
        assert len(goals) == (8 if before else 4)
    g = results["dask"]
    try:
        import pyspark  # noqa: F401
    except ImportError:
        assert not g["spark"]["available"] and "pyspark" in g["spark"]["reason"]
    else:
        assert g["spark"]["available"]
