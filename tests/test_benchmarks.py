"""Smoke test of benchmarks/run.py: it runs at tiny sizes and writes its JSON.

Nothing here looks at a timing; the measurements belong to the benchmark.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def _run(tmp_path, sections, *more):
    out = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", sections,
         "--json", str(out), *more],
        check=True, capture_output=True, text=True, cwd=SCRIPT.parents[1],
        timeout=600,
    )
    return json.loads(out.read_text())


def test_benchmark_runs_and_writes_json(tmp_path):
    results = _run(tmp_path, "roofline,mlp,memory")
    assert {"runs", "roofline", "vs_mlp", "memory", "targets", "table"} <= set(results)
    # Each section says when, where and with what it was measured.
    assert set(results["runs"]) == {"roofline", "vs_mlp", "memory"}
    for run in results["runs"].values():
        assert {"date", "command", "commit", "machine", "versions",
                "config"} <= set(run)
        assert run["versions"]["numpy"] and "--quick" in run["command"]
    assert {(r["dtype"], r["input"], r["path"]) for r in results["roofline"]} >= {
        (dtype, kind, "loss_and_gradient")
        for dtype in ("float64", "float32") for kind in ("dense", "csr")
    } | {(dtype, "dense", "sgd_epoch") for dtype in ("float64", "float32")}
    for row in results["roofline"]:
        assert {"bound_s", "ours_s", "roofline_ratio"} <= set(row)
    assert {(r["solver"], r["dtype"]) for r in results["vs_mlp"]} == {
        (s, d) for s in ("sgd", "lbfgs") for d in ("float64", "float32")
    }
    for row in results["vs_mlp"]:
        assert {"ours_s", "mlp_s", "speedup", "ours_train_log_loss",
                "mlp_train_log_loss"} <= set(row)
        # float32 end to end is a property, not a timing: check it here too.
        assert row["ours_coef_dtype"] == row["dtype"]
        assert row["ours_proba_dtype"] == row["dtype"]
    assert {"ours_peak_extra_mib", "mlp_peak_extra_mib", "ratio"} <= set(
        results["memory"])
    assert all("value" in v and "target" in v for v in results["targets"].values())


def test_a_run_replaces_only_its_own_sections(tmp_path):
    first = _run(tmp_path, "mlp")
    second = _run(tmp_path, "roofline")  # the same file
    assert set(second["runs"]) == {"vs_mlp", "roofline"}
    assert second["vs_mlp"] == first["vs_mlp"]
    assert second["runs"]["vs_mlp"] == first["runs"]["vs_mlp"]
    assert "(b) fit vs MLPClassifier" in second["table"]
    assert "(a) roofline" in second["table"]


def test_exactness_section(tmp_path):
    # benchmarks/exactness.py at tiny sizes: the in-memory objective at every
    # point of the data-parallel fit, and a row per max_iter and contender.
    pytest.importorskip("distributed")
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, str(SCRIPT.with_name("exactness.py")),
                    "--quick", "--json", str(out)], check=True,
                   capture_output=True, text=True, cwd=SCRIPT.parents[1], timeout=600)
    results = json.loads(out.read_text())
    e = results["exactness"]
    assert set(results["runs"]) == {"exactness"}
    assert e["per_evaluation"]["evaluations"] >= 6
    # Rounding, not another objective.
    assert e["per_evaluation"]["max_rel_loss_gap"] < 1e-12
    assert e["per_evaluation"]["max_rel_grad_gap"] < 1e-12
    assert [(f["max_iter"], f["contender"]) for f in e["fits"]] == [
        (m, c) for m in (3, 6) for c in ("dask", "blas_threads", "row_blocks")]
    assert all(f["n_iter"] == [f["max_iter"]] * 2 and f["max_proba_gap"] < 1e-9
               for f in e["fits"])
    assert "exactness: the data-parallel and the in-memory fit" in results["table"]


def test_benchmark_torch_section(tmp_path):
    pytest.importorskip("torch")
    results = _run(tmp_path, "torch")
    assert results["torch"]["available"]
    assert {(r["dtype"], r["work"].split()[0]) for r in results["torch"]["rows"]} == {
        (d, w) for d in ("float64", "float32") for w in ("full-batch", "SGD")
    }


def test_benchmark_predict_section(tmp_path):
    results = _run(tmp_path, "predict")
    p = results["predict"]
    works = [r["work"] for r in p["rows"]]
    assert works[:3] == ["predict, 1 row", "predict_proba, 1 row",
                         f"predict_proba, {p['batch_rows']} rows"]
    for row in p["rows"]:
        assert {"ours_s", "mlp_s", "speedup"} <= set(row)
    assert "(e) prediction" in results["table"]
    try:
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError:
        assert not p["onnx"]["available"]
        return
    assert p["onnx"]["available"]
    assert works[3:] == ["onnxruntime, 1 row",
                         f"onnxruntime, {p['batch_rows']} rows"]
    # The exported graph computes what the estimator computes.
    assert p["onnx"]["ours_max_proba_diff"] < 1e-5


def test_benchmark_predict_skips_onnx_when_missing(monkeypatch):
    # A None entry in sys.modules makes the import fail as if not installed.
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_run", SCRIPT)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    sessions, reason = run._onnx_sessions(None, None, 4)
    assert sessions is None
    assert "onnxruntime" in reason


def test_benchmark_device_section_on_the_cpu(tmp_path):
    # Section (f) is meant for a GPU; on PyTorch's CPU build the same code
    # runs with --device cpu, which is what this smoke test checks.
    pytest.importorskip("torch")
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "device",
         "--device", "cpu", "--json", str(out)],
        check=True, capture_output=True, text=True, cwd=SCRIPT.parents[1],
        timeout=600,
    )
    # The output says that these are not GPU numbers.
    assert "No GPU: these are PyTorch's CPU kernels" in proc.stdout
    dev = json.loads(out.read_text())["device"]
    assert dev["available"] and dev["device"] == "cpu"
    works = [row["work"] for row in dev["rows"]]
    assert works == ["full-batch loss+gradient", "lbfgs 3 iterations",
                     "SGD 1 epoch, batch 200", "SGD 1 epoch, batch 2048"]
    assert 0 < dev["rows"][0]["fraction_of_gemm_rate"]
    assert all(row["ours_s"] > 0 for row in dev["rows"])


def test_benchmark_dask_section(tmp_path):
    # Section (g) at tiny sizes: the clusters start, every figure is there,
    # and the data-parallel fit is the in-memory one (a check, not a timing).
    pytest.importorskip("distributed")
    results = _run(tmp_path, "dask,dask_scale")
    g = results["dask"]
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
    try:
        import pyspark  # noqa: F401
    except ImportError:
        assert not g["spark"]["available"] and "pyspark" in g["spark"]["reason"]
    else:
        assert g["spark"]["available"] and g["spark"]["per_iteration_s"] > 0
    assert "(g) data-parallel L-BFGS" in results["table"]
    # Section (h): a row for each number of workers and fan-in asked for.
    h = results["dask_scale"]
    assert h["available"]
    assert [(row["workers"], row["fan_in"]) for row in h["table"]] == [(1, 2), (2, 2)]
    assert all(row["repeats"] >= 1 and row["ms_per_iteration"] > 0
               for row in h["table"])
    assert "(h) data-parallel L-BFGS at cluster scale" in results["table"]


def test_benchmark_dask_cost_section(tmp_path, monkeypatch):
    # Section (j) at tiny sizes: a scheduler process and worker processes
    # start, every figure is there, and the counts are those of the design:
    # one graph per evaluation, one task per worker (a star on 1 and 2), no
    # theta through the scheduler (a check of the counters, not a timing).
    pytest.importorskip("distributed")
    results = _run(tmp_path, "dask_cost")
    j = results["dask_cost"]
    assert j["available"]
    assert [row["workers"] for row in j["table"]] == [1, 2]
    for row in j["table"]:
        assert row["graphs"] == 1 and row["tasks"] == row["workers"], row
        assert row["wall_ms"] > 0 and row["scheduler_cpu_ms"] >= 0
    assert "(j) cost of one evaluation" in results["table"]
    # The model is fitted when the results are shown, to the measured rows.
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    from bench_dask_cost import cost_model

    fitted = cost_model(j)
    assert fitted["fitted_on"] == [1, 2]
    assert set(fitted["predictions"]["scheduler_cpu_ms"]) == {"100", "1000"}
def _in_git_checkout():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=SCRIPT.parent,
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_benchmark_jax_section(tmp_path):
    pytest.importorskip("jax")
    # With a git checkout, the section also times the package at a commit.
    before = ["--jax-before", "HEAD"] if _in_git_checkout() else []
    results = _run(tmp_path, "jax", *before)
    jax = results["jax"]
    assert jax["available"] and jax["rounds"] == 1
    assert {(r["solver"], r["dtype"]) for r in jax["rows"]} == {
        (s, d) for s in ("sgd", "adam") for d in ("float32", "float64")}
    sides = ("ours", "jax", "before") if before else ("ours", "jax")
    for row in jax["rows"]:
        (one,) = row["rounds"]
        assert row["time_ratio"] == one["time_ratio"]
        for side in sides:
            assert {f"{side}_s", f"{side}_gemm_s", f"{side}_outside_gemm_s",
                    f"{side}_final_loss"} <= set(one)
        # The same update rule from the same start on the same rows: the
        # loops reach the same loss (a property of the contenders, not a
        # time), ours before and after included.
        for side in sides[1:]:
            assert one["ours_final_loss"] == pytest.approx(one[f"{side}_final_loss"],
                                                           rel=1e-3)
        # tiny sizes: too little work for the compiled kernels
        assert one["ours_kernels"] in (False, None)
    assert "(i) vs JAX" in results["table"]
    goals = {k for k in results["targets"] if k.startswith(("time_vs_jax",
                                                             "outside_gemm"))}
    assert len(goals) == (8 if before else 4)
