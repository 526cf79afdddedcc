"""Section (e): prediction latency against ``MLPClassifier``.

Both estimators have the same shape (digits-sized, D=64, H=``--hidden``,
C=10) and are fitted for 5 L-BFGS iterations on standardized digits;
``predict`` and ``predict_proba`` on one row and on a batch of
``--predict-rows`` generated rows, and onnxruntime inference of both
exported models (skipped when skl2onnx or onnxruntime is missing).
"""

import os

import numpy as np

from common import (SPREAD_WORDS, alternate, compared, measured_lines, quietly,
                    ratio, seconds, spread_text)

KEY, NAME, LETTER = "predict", "predict", "(e)"


def add_options(parser):
    parser.add_argument("--predict-rows", type=int, default=100000,
                        help="rows of the batch prediction timings (section e)")
    parser.add_argument("--predict-calls", type=int, default=200,
                        help="single-row calls per repeat (section e)")


QUICK = {"predict_rows": 2000, "predict_calls": 20}


def _per_call(func, calls):
    """A function that makes ``calls`` calls of ``func``: one timing repeat."""
    def run():
        for _ in range(calls):
            func()
    return run


def _models(cfg):
    """Ours and MLPClassifier with H hidden units, a few iterations on digits.

    Prediction does not depend on how well the weights were trained, only on
    the shapes: D=64 features, H=``--hidden`` units, C=10 classes.
    """
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    from sk_twolayer import TwoLayerSoftmaxClassifier

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    common = dict(solver="lbfgs", max_iter=5, random_state=0)
    ours = TwoLayerSoftmaxClassifier(hidden_size=cfg.hidden, **common)
    mlp = MLPClassifier(hidden_layer_sizes=(cfg.hidden,), **common)
    quietly(lambda: (ours.fit(X, y), mlp.fit(X, y)))
    return X, ours, mlp


def onnx_sessions(ours, mlp, d):
    """onnxruntime sessions of both models' float32 graphs, or a reason."""
    try:
        import onnxruntime
        import skl2onnx
        from skl2onnx.common.data_types import FloatTensorType

        from sk_twolayer.onnx import to_onnx
    except ImportError as exc:
        return None, f"not installed ({exc.name})"
    types = [("X", FloatTensorType([None, d]))]
    graphs = {
        "ours": to_onnx(ours, initial_types=types, options={"zipmap": False}),
        "mlp": skl2onnx.to_onnx(mlp, initial_types=types,
                                options={"zipmap": False}),
    }
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = max(1, os.cpu_count() or 1)
    # Idle threads of onnxruntime spin-wait by default, which would take
    # the cores from whatever runs next in the alternation.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {
        name: onnxruntime.InferenceSession(
            g.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        for name, g in graphs.items()
    }
    info = {"onnxruntime": onnxruntime.__version__,
            "skl2onnx": skl2onnx.__version__,
            "intra_op_threads": opts.intra_op_num_threads}
    return sessions, info


def measure(cfg):
    X, ours, mlp = _models(cfg)
    d, calls, reps = X.shape[1], cfg.predict_calls, cfg.repeats
    row = X[:1].copy()
    batch = np.random.default_rng(0).standard_normal((cfg.predict_rows, d))
    rows = []

    def add(work, t, a="ours", b="mlp", per=1):
        rows.append({"work": work, "ours_s": float(np.median(t[a])) / per,
                     "mlp_s": float(np.median(t[b])) / per,
                     **compared("speedup", t[b], t[a]), "repeats": reps,
                     "times_s": seconds(t), "calls_per_repeat": per})

    # Both estimators must agree on what they are timed on.
    assert ours.predict_proba(row).shape == mlp.predict_proba(row).shape
    for method in ("predict", "predict_proba"):
        t = alternate({
            "ours": _per_call(lambda: getattr(ours, method)(row), calls),
            "mlp": _per_call(lambda: getattr(mlp, method)(row), calls),
        }, reps)
        add(f"{method}, 1 row", t, per=calls)
    t = alternate({"ours": lambda: ours.predict_proba(batch),
                   "mlp": lambda: mlp.predict_proba(batch)}, reps)
    add(f"predict_proba, {cfg.predict_rows} rows", t)

    sessions, info = onnx_sessions(ours, mlp, d)
    onnx = {"available": sessions is not None}
    if sessions is None:
        onnx["reason"] = info
    else:
        onnx.update(info)
        row32, batch32 = row.astype(np.float32), batch.astype(np.float32)
        # The exported graph must compute what the estimator computes.
        proba = sessions["ours"].run(None, {"X": batch32[:100]})[1]
        onnx["ours_max_proba_diff"] = float(np.max(np.abs(
            proba - ours.predict_proba(batch32[:100]))))

        def run(name, data):
            sess = sessions[name]
            return lambda: sess.run(None, {"X": data})

        t = alternate({
            "ours": _per_call(run("ours", row32), calls),
            "mlp": _per_call(run("mlp", row32), calls),
            "ours_python": _per_call(lambda: ours.predict_proba(row), calls),
        }, reps)
        add("onnxruntime, 1 row", t, per=calls)
        rows[-1]["ours_python_s"] = float(np.median(t["ours_python"])) / calls
        rows[-1]["onnx_vs_python"] = ratio(t["ours_python"], t["ours"])
        t = alternate({"ours": run("ours", batch32), "mlp": run("mlp", batch32),
                       "ours_python": lambda: ours.predict_proba(batch32)}, reps)
        add(f"onnxruntime, {cfg.predict_rows} rows", t)
        rows[-1]["ours_python_s"] = float(np.median(t["ours_python"]))
        rows[-1]["onnx_vs_python"] = ratio(t["ours_python"], t["ours"])
    return {"data": "digits (standardized)", "d": d, "hidden": cfg.hidden,
            "classes": len(ours.classes_), "dtype": "float64 (ONNX: float32)",
            "calls_per_repeat": calls, "batch_rows": cfg.predict_rows,
            "rows": rows, "onnx": onnx}


def goals(p):
    return {}


def text(p, run):
    lines = [f"(e) prediction, {p['data']} D={p['d']} H={p['hidden']} "
             f"C={p['classes']}, {p['dtype']}; speedup = MLP time / ours, ratio "
             f"of medians; {SPREAD_WORDS}",
             *measured_lines(run)[:1],
             f"| {'work':32} | {'ours ms':>9} | {'MLP ms':>9} "
             f"| {'speedup':>7} | {'spread':11} | {'ours python ms':>14} "
             f"| {'python/onnx':>11} |",
             "|" + "|".join("-" * w for w in (34, 11, 11, 9, 13, 16, 13)) + "|"]
    for r in p["rows"]:
        if "ours_python_s" in r:
            py = (f"{r['ours_python_s'] * 1e3:14.3f} | "
                  f"{r['onnx_vs_python']:11.1f}")
        else:
            py = " " * 14 + " | " + " " * 11
        lines.append(f"| {r['work']:32} | {r['ours_s'] * 1e3:9.3f} | "
                     f"{r['mlp_s'] * 1e3:9.3f} | {r['speedup']:7.2f} | "
                     f"{spread_text(r.get('speedup_spread')):11} | {py} |")
    o = p["onnx"]
    if o["available"]:
        lines.append(f"    onnxruntime {o['onnxruntime']}, skl2onnx "
                     f"{o['skl2onnx']}, {o['intra_op_threads']} threads; "
                     "onnx rows: both exported graphs, float32, zipmap off;")
        lines.append("    'ours python': our predict_proba on the same input, "
                     "python/onnx: its time / our graph's")
    else:
        lines.append(f"    onnx: {o['reason']} (pip install \".[onnx]\")")
    return lines
