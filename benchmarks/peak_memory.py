"""Section (c): peak extra memory of an L-BFGS fit, against MLPClassifier.

Each estimator fits in a fresh process (this file, run as a script), which
reports its peak resident memory above the memory it had once the data
existed: Linux's ``VmHWM`` after resetting it through
``/proc/self/clear_refs``.
"""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from common import DTYPES, TARGETS, goal, measured_lines, problem, quietly, time_call

KEY, NAME, LETTER = "memory", "memory", "(c)"


def add_options(parser):
    parser.add_argument("--memory-n", type=int, default=200000)
    parser.add_argument("--memory-d", type=int, default=100)
    parser.add_argument("--memory-iter", type=int, default=10)


QUICK = {"memory_n": 2000, "memory_d": 10, "memory_iter": 2}


def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(which, n, d, h, c, dtype, iters):
    """Run in a fresh process: peak RSS of one L-BFGS fit above the data's."""
    from sklearn.neural_network import MLPClassifier

    from sk_twolayer import TwoLayerSoftmaxClassifier

    X, y = problem(n, d, c, DTYPES[dtype])
    common = dict(solver="lbfgs", max_iter=iters, tol=0.0, random_state=0)
    if which == "ours":
        est = TwoLayerSoftmaxClassifier(hidden_size=h, **common)
    else:
        est = MLPClassifier(hidden_layer_sizes=(h,), **common)
    gc.collect()
    baseline = _rss_kib("VmRSS")
    try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "VmHWM after clear_refs"
    except OSError:  # pragma: no cover
        method = "VmHWM since start (upper bound)"
    t = time_call(lambda: quietly(lambda: est.fit(X, y)))
    peak = _rss_kib("VmHWM")
    return {"which": which, "baseline_mib": baseline / 1024,
            "data_mib": (X.nbytes + y.nbytes) / 2**20,
            "peak_extra_mib": (peak - baseline) / 1024, "fit_s": t,
            "method": method}


def measure(cfg):
    results = {}
    for which in ("ours", "mlp"):
        cmd = [sys.executable, str(Path(__file__).resolve()), which,
               str(cfg.memory_n), str(cfg.memory_d), str(cfg.hidden),
               str(cfg.classes), str(cfg.memory_iter)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env=os.environ.copy())
        results[which] = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "n": cfg.memory_n, "d": cfg.memory_d, "hidden": cfg.hidden,
        "dtype": "float64", "lbfgs_iter": cfg.memory_iter,
        "ours_peak_extra_mib": results["ours"]["peak_extra_mib"],
        "mlp_peak_extra_mib": results["mlp"]["peak_extra_mib"],
        "ratio": (results["ours"]["peak_extra_mib"]
                  / max(results["mlp"]["peak_extra_mib"], 1e-9)),
        "data_mib": results["ours"]["data_mib"],
        "method": results["ours"]["method"],
        "detail": results,
    }


def goals(m):
    # (a peak of resident memory, not a timing: its verdict is its value's)
    return {"memory_ratio_vs_mlp": goal(m["ratio"], TARGETS["memory_ratio_vs_mlp"],
                                        lower_is_better=True, exact=True)}


def text(m, run):
    return [f"(c) peak extra memory of an lbfgs fit, N={m['n']} D={m['d']}"
            f" H={m['hidden']} {m['dtype']} ({m['lbfgs_iter']} iterations;"
            f" data {m['data_mib']:.0f} MiB; {m['method']})",
            *measured_lines(run)[:1],
            f"    ours {m['ours_peak_extra_mib']:.1f} MiB, MLPClassifier "
            f"{m['mlp_peak_extra_mib']:.1f} MiB, ratio {m['ratio']:.3f}"]


if __name__ == "__main__":  # the child: WHICH N D H C ITERATIONS
    which, n, d, h, c, iters = sys.argv[1:7]
    print(json.dumps(child(which, int(n), int(d), int(h), int(c), "float64",
                           int(iters))))
