"""Section (f): training on an accelerator.

Run with ``python benchmarks/run.py --only device --device cuda`` (or
``--device cpu`` for a smoke test of the same code with PyTorch's CPU
build). In float32, on the same data, one run measures side by side:

- the full-batch loss and gradient on the device, as a fraction of the
  device's own GEMM time for the same five products (measured in the run);
- 30 L-BFGS iterations of the estimator on the device against the same fit
  on numpy, on this machine's CPUs;
- one SGD epoch (momentum 0.9, Nesterov) at batch 200 and at batch 2048,
  of the estimator on the device against a plain PyTorch loop with the same
  model, batch size and optimizer, and against skorch where it is installed.

Each comparison alternates its contenders, repeat by repeat, and reports
the median of the ratios within a repeat, as the other sections do; every
timing synchronizes the device before its clock starts and stops. On the
CPU (no GPU present) the output says so: the GPU targets then do not apply.
"""

import numpy as np
import sklearn

from common import (MIN_REPEATS, alternate, compared, goal, measured_lines, quietly,
                    seconds, spread_text, torch_sgd_loop)
from sk_twolayer import TwoLayerSoftmaxClassifier
from sk_twolayer._loss import TwoLayerLoss
from sk_twolayer._namespace import ops_for
from sk_twolayer._params import ParamLayout

KEY, NAME, LETTER = "device", "device", "(f)"
# (not in the default run: it is meant for a machine with a GPU)
DEFAULT = False


def add_options(parser):
    parser.add_argument("--device", default="auto",
                        help="PyTorch device of section (f), e.g. cuda or cpu "
                             "(auto: cuda where there is one, else cpu)")
    parser.add_argument("--device-n", type=int, default=None,
                        help="rows of section (f) (float32; default 1,000,000 on "
                             "a GPU, 100,000 on the CPU)")
    parser.add_argument("--device-lbfgs-repeats", type=int, default=MIN_REPEATS,
                        help="alternating repeats of section (f)'s L-BFGS fits "
                             "(on a GPU machine, the NumPy fit of a million "
                             "rows takes minutes)")


QUICK = {"device_n": 2000, "device_lbfgs_repeats": 1}


def measure(cfg):
    try:
        import torch
    except ImportError:
        return {"available": False, "reason": "torch is not installed"}
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return {"available": False, "reason": "no CUDA device"}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    n = cfg.device_n or (1_000_000 if device.type == "cuda" else 100_000)
    d, h, c = cfg.d, cfg.hidden, cfg.classes
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.integers(0, c, n)
    Xt = torch.asarray(X, device=device)
    yt = torch.asarray(y, device=device)
    rows = []

    # ---- full-batch loss and gradient against the device's GEMM time
    layout = ParamLayout(d, h, c, np.float32)
    theta = layout.init(np.random.RandomState(0))
    with sklearn.config_context(array_api_dispatch=True):
        ops = ops_for(Xt)
        loss = TwoLayerLoss(layout, reg=1e-4, ops=ops)
        theta_t = ops.asarray(theta)
        W1, W2, _, _ = layout.unpack(theta_t, ops.xp)
        A = torch.empty((n, h), device=device)
        S = torch.empty((n, c), device=device)

        def gemms():  # the five products of a forward and backward pass
            torch.matmul(Xt, W1, out=A)
            torch.matmul(A, W2, out=S)
            S.T.matmul(A)  # dW2, transposed, in the layout autograd uses
            S.matmul(W2.T)  # dh
            Xt.T.matmul(A)  # dW1 (A standing in for dh, same shape)

        def ours_full():
            loss.loss_gradient(theta_t, Xt, yt)  # as a fit without weights

        t = alternate({"gemm": gemms, "ours": ours_full}, cfg.repeats, sync=sync)
    flops = 2 * n * (2 * d * h + 3 * h * c)
    t_gemm = float(np.median(t["gemm"]))
    rows.append({"work": "full-batch loss+gradient",
                 "ours_s": float(np.median(t["ours"])), "gemm_s": t_gemm,
                 **compared("fraction_of_gemm_rate", t["gemm"], t["ours"]),
                 "gemm_tflops": flops / t_gemm / 1e12, "repeats": cfg.repeats,
                 "times_s": seconds(t)})

    # ---- 30 L-BFGS iterations: device against numpy on the CPUs
    def lbfgs(Xa, ya):
        clf = TwoLayerSoftmaxClassifier(hidden_size=h, max_iter=cfg.lbfgs_iter,
                                        tol=0.0, random_state=0)
        return quietly(lambda: clf.fit(Xa, ya))

    def lbfgs_device():
        with sklearn.config_context(array_api_dispatch=True):
            lbfgs(Xt, yt)

    with sklearn.config_context(array_api_dispatch=True):
        lbfgs(Xt[:1000], yt[:1000])  # warm up, on a slice: the whole fit is long
    lbfgs(X[:1000], y[:1000])
    t = alternate({"device": lbfgs_device, "numpy": lambda: lbfgs(X, y)},
                  cfg.device_lbfgs_repeats, warmup=0, sync=sync)
    rows.append({"work": f"lbfgs {cfg.lbfgs_iter} iterations",
                 "ours_s": float(np.median(t["device"])),
                 "numpy_s": float(np.median(t["numpy"])),
                 **compared("speedup_vs_numpy", t["numpy"], t["device"]),
                 "repeats": cfg.device_lbfgs_repeats, "times_s": seconds(t)})

    # ---- one SGD epoch: ours on the device against a plain PyTorch loop
    for batch in (200, 2048):
        def ours_sgd():
            clf = TwoLayerSoftmaxClassifier(
                hidden_size=h, solver="sgd", batch_size=batch, max_iter=1,
                learning_rate_init=0.01, momentum=0.9, reg=0.0,
                n_iter_no_change=np.inf, random_state=0)
            with sklearn.config_context(array_api_dispatch=True):
                quietly(lambda: clf.fit(Xt, yt))

        def torch_sgd():
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(),
                                        torch.nn.Linear(h, c)).to(device)
            torch_sgd_loop(model, Xt, yt, batch)

        t = alternate({"ours": ours_sgd, "torch": torch_sgd}, cfg.fit_repeats,
                      sync=sync)
        row = {"work": f"SGD 1 epoch, batch {batch}",
               "ours_s": float(np.median(t["ours"])),
               "torch_s": float(np.median(t["torch"])),
               **compared("speedup_vs_torch", t["torch"], t["ours"]),
               "repeats": cfg.fit_repeats, "times_s": seconds(t)}
        try:
            from skorch import NeuralNetClassifier
        except ImportError:
            row["skorch_s"] = None
        else:
            def skorch_sgd():
                net = NeuralNetClassifier(
                    torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(),
                                        torch.nn.Linear(h, c)),
                    criterion=torch.nn.CrossEntropyLoss, max_epochs=1,
                    batch_size=batch, optimizer=torch.optim.SGD, lr=0.01,
                    optimizer__momentum=0.9, optimizer__nesterov=True,
                    train_split=None, device=str(device), verbose=0)
                net.fit(X, y)

            row["skorch_s"] = float(alternate({"skorch": skorch_sgd}, 1, warmup=0,
                                              sync=sync)["skorch"][0])
        rows.append(row)
    return {"available": True, "device": str(device), "torch": torch.__version__,
            "name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                     else "cpu"), "n": n, "rows": rows}


def goals(result):
    met = {}
    for row in result.get("rows", []) if result.get("available") else ():
        for field, target in (("fraction_of_gemm_rate", 0.5),
                              ("speedup_vs_numpy", 20.0),
                              ("speedup_vs_torch", 1.0)):
            if field in row:
                met[f"device {row['work']} {field}"] = goal(
                    row[field], target, spread=row.get(f"{field}_spread"),
                    repeats=row.get("repeats"))
    return met


def text(result, run):
    return [*_table(result), *measured_lines(run)[:1]]


def _table(result):
    if not result or not result.get("available"):
        reason = (result or {}).get("reason", "not run")
        return [f"(f) device: skipped ({reason})"]
    lines = [f"(f) device {result['device']} ({result['name']}), float32, "
             f"N={result['n']}; torch {result['torch']}"]
    if not result["device"].startswith("cuda"):
        lines.append("    No GPU: these are PyTorch's CPU kernels on this machine's "
                     "CPUs, and the GPU targets below do not apply to them.")
    lines.append("    ratio: of medians; spread: interquartile range of the "
                 "per-repeat ratios")
    lines.append("| work                     |  ours s | other s | ratio | spread      "
                 "| ratio is")
    lines.append("|--------------------------|---------|---------|-------|-------------"
                 "|---------")
    for row in result["rows"]:
        if "fraction_of_gemm_rate" in row:
            other, field = row["gemm_s"], "fraction_of_gemm_rate"
            what = f"GEMM time / ours ({row['gemm_tflops']:.2f} TFLOP/s GEMM)"
        elif "speedup_vs_numpy" in row:
            other, field = row["numpy_s"], "speedup_vs_numpy"
            what = "numpy time / ours"
        else:
            other, field = row["torch_s"], "speedup_vs_torch"
            what = "PyTorch loop time / ours"
            if row.get("skorch_s") is not None:
                what += f" (skorch {row['skorch_s']:.3f} s)"
        lines.append(f"| {row['work']:<24} | {row['ours_s']:7.3f} | {other:7.3f} "
                     f"| {row[field]:5.2f} "
                     f"| {spread_text(row.get(field + '_spread')):11} | {what}")
    return lines
