"""Section (i): the minibatch solvers against JAX.

The contender is what a user who knows JAX writes for the same network: a
``jax.value_and_grad`` of the objective and the update rule inside one
``jax.jit``-compiled ``lax.scan`` over the shuffled minibatches of every
epoch. Both sides train the same network from the same initial weights, on
the same rows in the same order (the shuffles of ``RandomState(0)``), with
the same update rule and hyper-parameters:

- SGD, learning rate 0.01, Nesterov momentum 0.9;
- Adam, learning rate 0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-8;

and the objective of ``TwoLayerSoftmaxClassifier``'s defaults: the mean log
loss plus ``reg * ||theta||^2`` with ``reg=1e-4`` on all four parameters.
Ours is the solver loop alone (``_solvers.stochastic`` on
``TwoLayerLoss``), as JAX's is the compiled loop alone: neither counts
input validation. JAX's time is its steady state: the first call, which
compiles, is timed apart and reported as ``jax_compile_s``.

Each side runs in its own process (XLA's thread pool and OpenBLAS's would
otherwise share the cores), started once per round; the parent makes them
take turns, one fit at a time, alternating which goes first, and reports the
median of the per-repeat ratios, ours over JAX's, for each of two rounds
(``--jax-rounds``) of new processes. The goal's figure is the larger of the
rounds' ratios.

With ``--jax-before REF`` a third side runs our solver loop from the
package as it was at the git commit ``REF`` (``git archive`` of
``sk_twolayer/`` into a temporary folder, put first on that process's
path), taking its turn with the other two: the same fits, before and after,
on the same machine in the same minutes.

Beside each fit, each side times the step's two large matrix products alone
for the same number of steps (``Xb @ W1`` (B, D) x (D, H) and ``Xb.T @ dH``
(D, B) x (B, H), on consecutive row blocks). A fit's time minus that GEMM
time is what the step spends outside its large GEMMs: row gather,
activation, softmax, the small products, the penalty, the update and the
loop's own overhead.

Our side asks for the compiled kernels of the ``fast`` extra
(``SK_TWOLAYER_FAST=1`` in its process; they are opt-in), which run where
numba is installed (``sk_twolayer._fast``); the section records whether
they did. The other sections measure the default path, without them.

The JAX side needs ``pip install jax jaxlib`` (the CPU build); without it
the section says so and is skipped.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import (SPREAD_WORDS, TARGETS, compared, goal, measured_lines, parameters,
                    problem, spread_text)

HERE = Path(__file__).resolve().parent
KEY, NAME, LETTER = "jax", "jax", "(i)"
# The commit that the goal on the time outside the GEMMs compares with.
BEFORE = "8c204ab"


def add_options(parser):
    parser.add_argument("--jax-before", metavar="REF", default=BEFORE,
                        help="section (i) also times our solvers at this git commit "
                             f"(default {BEFORE}, the goal's reference; 'none': not)")
    parser.add_argument("--jax-rounds", type=int, default=2,
                        help="rounds of new processes in section (i)")


QUICK = {"jax_rounds": 1}
SOLVERS = ("sgd", "adam")
DTYPES = ("float32", "float64")
REG = 1e-4
SGD_HYPER = {"learning_rate_init": 0.01, "momentum": 0.9, "nesterov": True}
ADAM_HYPER = {"learning_rate_init": 0.001, "beta_1": 0.9, "beta_2": 0.999,
              "epsilon": 1e-8}


def jax_version():
    """The installed jax's version, or None; jax itself is not imported."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("jaxlib")
        return version("jax")
    except PackageNotFoundError:
        return None


# ------------------------------------------------------------- the problem
def _problem(cfg, dtype):
    """The sections' data, initial weights and the rows' order in every epoch."""
    X, y = problem(cfg["n"], cfg["d"], cfg["classes"], np.dtype(dtype))
    layout, theta0 = parameters(cfg["d"], cfg["hidden"], cfg["classes"],
                                np.dtype(dtype))
    # The shuffles of our stochastic(): one RandomState shuffling one order.
    rng, order, perms = np.random.RandomState(0), np.arange(cfg["n"]), []
    for _ in range(cfg["epochs"]):
        rng.shuffle(order)
        perms.append(order.copy())
    return X, y, layout, theta0, np.stack(perms)


def _gemm_blocks(X, b, steps):
    """Consecutive row blocks of ``X``, one per step (a view each)."""
    n_blocks = X.shape[0] // b
    return [X[(i % n_blocks) * b:(i % n_blocks + 1) * b] for i in range(steps)]


# ---------------------------------------------------------------- our side
class _Ours:
    def __init__(self, cfg, dtype):
        from sk_twolayer import _solvers
        from sk_twolayer._loss import TwoLayerLoss

        self.cfg, self._solvers = cfg, _solvers
        self.X, self.y, layout, self.theta0, _ = _problem(cfg, dtype)
        self.loss = TwoLayerLoss(layout, reg=REG)
        n, b, h = cfg["n"], cfg["batch"], cfg["hidden"]
        self.steps = cfg["epochs"] * -(-n // b)
        W1, _, _, _ = layout.unpack(self.theta0)
        self.W1 = W1
        self.A = np.empty((b, h), dtype=dtype)
        self.G = np.empty_like(W1)
        self.blocks = _gemm_blocks(self.X, b, self.steps)

    def kernels(self):
        """Whether a fit here takes the compiled kernels (None: a package
        from before they existed)."""
        try:
            from sk_twolayer import _fast
        except ImportError:
            return None
        return _fast.for_minibatches(
            self._solvers.ops_for(self.theta0), self.theta0, self.steps) is not None

    def fit(self, solver):
        s = self._solvers
        optimizer = (s.SGD(**SGD_HYPER) if solver == "sgd"
                     else s.Adam(**ADAM_HYPER))
        epochs = self.cfg["epochs"]
        result = s.stochastic(
            self.loss.data_loss_gradient, self.theta0.copy(), self.X, self.y,
            optimizer=optimizer, penalty=self.loss.penalty,
            batch_size=self.cfg["batch"], max_iter=epochs,
            rng=np.random.RandomState(0), stopper=s.Stopper(0.0, epochs + 1),
            warn_on_max_iter=False)
        return result.loss_curve[-1]

    def gemm(self):
        A, G, W1 = self.A, self.G, self.W1
        for Xb in self.blocks:
            np.matmul(Xb, W1, out=A)
            np.matmul(Xb.T, A, out=G)


# ---------------------------------------------------------------- JAX side
def _jax_fit_function(solver, n_steps_per_epoch):
    """The jitted loop: ``fit(params, X, y, perms) -> (params, epoch losses)``.

    ``perms`` holds the rows of each step's minibatch, one step per row.
    """
    import jax
    import jax.numpy as jnp

    def objective(params, Xb, yb):
        W1, W2, b1, b2 = params
        h = jax.nn.relu(Xb @ W1 + b1)
        logp = jax.nn.log_softmax(h @ W2 + b2)
        data = -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))
        return data + REG * sum(jnp.vdot(p, p) for p in params)

    value_and_grad = jax.value_and_grad(objective)
    tree_map = jax.tree_util.tree_map

    def sgd(X, y):
        lr, mu = SGD_HYPER["learning_rate_init"], SGD_HYPER["momentum"]

        def step(carry, idx):
            params, velocity = carry
            loss, g = value_and_grad(params, X[idx], y[idx])
            velocity = tree_map(lambda v, g: mu * v - lr * g, velocity, g)
            # Nesterov, as ours: theta + mu v' - lr g
            params = tree_map(lambda p, v, g: p + mu * v - lr * g,
                              params, velocity, g)
            return (params, velocity), loss

        return step, lambda params: (params, tree_map(jnp.zeros_like, params))

    def adam(X, y):
        lr, b1, b2, eps = (ADAM_HYPER[k] for k in
                           ("learning_rate_init", "beta_1", "beta_2", "epsilon"))

        def step(carry, idx):
            params, m, v, t = carry
            loss, g = value_and_grad(params, X[idx], y[idx])
            t = t + 1
            m = tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
            v = tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
            size = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            params = tree_map(lambda p, m, v: p - size * m / (jnp.sqrt(v) + eps),
                              params, m, v)
            return (params, m, v, t), loss

        def init(params):
            zeros = tree_map(jnp.zeros_like, params)
            return params, zeros, zeros, jnp.zeros((), params[0].dtype)

        return step, init

    make = sgd if solver == "sgd" else adam

    @jax.jit
    def fit(params, X, y, perms):
        step, init = make(X, y)
        carry, losses = jax.lax.scan(step, init(params), perms)
        epoch_losses = losses.reshape(-1, n_steps_per_epoch).mean(axis=1)
        return carry[0], epoch_losses

    return fit


def _jax_gemm_function(steps, b):
    """The step's two large GEMMs, ``steps`` times, compiled by XLA.

    Each step takes the next block of rows, so that nothing is loop-invariant
    for XLA to hoist; the last product is the loop's carry.
    """
    import jax

    @jax.jit
    def gemms(X, W1):
        n_blocks = X.shape[0] // b

        def body(i, G):
            Xb = jax.lax.dynamic_slice_in_dim(X, (i % n_blocks) * b, b)
            return Xb.T @ (Xb @ W1)

        return jax.lax.fori_loop(0, steps, body, jax.numpy.zeros_like(W1))

    return gemms


class _Jax:
    def __init__(self, cfg, dtype):
        import jax

        jax.config.update("jax_enable_x64", dtype == "float64")
        X, y, layout, theta0, perms = _problem(cfg, dtype)
        n, b = cfg["n"], cfg["batch"]
        if n % b:
            raise ValueError(f"the JAX loop needs n ({n}) divisible by the "
                             f"batch ({b})")
        W1, W2, b1, b2 = layout.unpack(theta0)
        put = jax.device_put
        self.params = tuple(put(p.copy()) for p in (W1, W2, b1, b2))
        self.X, self.y = put(X), put(y.astype(np.int32))
        # One row of indices per step: (epochs * n / b, b).
        self.perms = put(perms.astype(np.int32).reshape(-1, b))
        self.steps_per_epoch = n // b
        self.steps = cfg["epochs"] * self.steps_per_epoch
        self._fits = {}
        self._gemm = _jax_gemm_function(self.steps, b)
        self.compile_s = {}

    def fit(self, solver):
        fit = self._fits.get(solver)
        if fit is None:
            fit = self._fits[solver] = _jax_fit_function(
                solver, self.steps_per_epoch)
            t = time.perf_counter()
            fit(self.params, self.X, self.y, self.perms)[1].block_until_ready()
            self.compile_s[solver] = time.perf_counter() - t
        params, losses = fit(self.params, self.X, self.y, self.perms)
        losses.block_until_ready()
        return float(losses[-1])

    def gemm(self):
        self._gemm(self.X, self.params[0]).block_until_ready()


# ------------------------------------------------------------ the worker
def worker(side, cfg):
    """Serve ``fit SOLVER DTYPE`` and ``gemm DTYPE`` lines from stdin.

    Each answer is one JSON line: the seconds of that call and, for a fit,
    the final epoch's loss. One problem per dtype is kept; a worker serves
    one dtype's fits at a time (JAX's x64 switch is global).
    """
    make = _Jax if side == "jax" else _Ours
    problems = {}
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "fit":
            solver, dtype = words[1], words[2]
        else:
            solver, dtype = None, words[1]
        if dtype not in problems:
            problems.clear()
            problems[dtype] = make(cfg, dtype)
        problem = problems[dtype]
        t = time.perf_counter()
        value = problem.fit(solver) if solver else problem.gemm()
        seconds = time.perf_counter() - t
        answer = {"s": seconds, "loss": value}
        if solver and side == "jax":
            answer["compile_s"] = problem.compile_s[solver]
        elif solver:
            answer["kernels"] = problem.kernels()
        print(json.dumps(answer), flush=True)


class _Worker:
    def __init__(self, side, cfg, package=None):
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", side,
             "--config", json.dumps(cfg)]
            + ([] if package is None else ["--package", str(package)]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, SK_TWOLAYER_FAST="1"))

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker died on {command!r} "
                               f"(exit code {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


# ------------------------------------------------------------- the section
def _package_at(ref, into):
    """``sk_twolayer/`` as it was at git commit ``ref``, under ``into``."""
    root = HERE.parent
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=root,
                            capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit, "sk_twolayer"], cwd=root,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def _round(sides, packages, config, repeats, pause):
    """One round: new processes, every fit and GEMM loop of each side timed
    ``repeats`` times in turns. Returns {(solver, dtype): {side: ...}}."""
    workers = {name: _Worker("jax" if name == "jax" else "ours", config,
                             packages.get(name)) for name in sides}
    out = {}
    try:
        for dtype in DTYPES:
            # Warm up: data, buffers, compiled kernels and JAX's compilation
            # (timed apart).
            compile_s, kernels = {}, {}
            for solver in SOLVERS:
                for name, worker in workers.items():
                    answer = worker.ask(f"fit {solver} {dtype}")
                    if name == "jax":
                        compile_s[solver] = answer["compile_s"]
                    else:
                        kernels[name] = answer["kernels"]
            for worker in workers.values():
                worker.ask(f"gemm {dtype}")
            for solver in SOLVERS:
                times = {name: [] for name in sides}
                gemm = {name: [] for name in sides}
                losses = {}
                for r in range(repeats):
                    order = list(sides) if r % 2 == 0 else list(sides)[::-1]
                    for name in order:
                        time.sleep(pause)
                        answer = workers[name].ask(f"fit {solver} {dtype}")
                        times[name].append(answer["s"])
                        losses[name] = answer["loss"]
                    for name in order[::-1]:
                        time.sleep(pause)
                        gemm[name].append(workers[name].ask(f"gemm {dtype}")["s"])
                out[solver, dtype] = {
                    "times": times, "gemm": gemm, "losses": losses,
                    "jax_compile_s": compile_s[solver], "kernels": kernels}
    finally:
        for worker in workers.values():
            worker.close()
    return out


def measure(cfg):
    version = jax_version()
    if version is None:
        return {"available": False,
                "reason": "jax is not installed (pip install jax jaxlib)"}
    config = {"n": cfg.n, "d": cfg.d, "hidden": cfg.hidden,
              "classes": cfg.classes, "batch": cfg.batch, "epochs": cfg.epochs}
    repeats, rounds = cfg.fit_repeats, getattr(cfg, "jax_rounds", 2)
    # A pause before each timed call, so that the other processes' idle
    # threads (OpenBLAS's and XLA's spin a while after their work) are asleep.
    pause = 0.0 if cfg.quick else 0.3
    sides, packages = ["ours", "jax"], {}
    before = cfg.jax_before if cfg.jax_before not in (None, "", "none") else None
    missing = None
    tmp = tempfile.mkdtemp(prefix="sk-twolayer-before-")
    try:
        if before:
            try:
                before = _package_at(before, tmp)
            except (OSError, subprocess.CalledProcessError) as error:
                missing = f"the package at {before} is not at hand ({error})"
                before = None
            else:
                sides.append("before")
                packages["before"] = tmp
        results = [_round(sides, packages, config, repeats, pause)
                   for _ in range(rounds)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_steps = cfg.epochs * -(-cfg.n // cfg.batch)
    return {"available": True, "version": version, "steps": n_steps,
            "repeats": repeats, "rounds": rounds, "before": before,
            **({"before_missing": missing} if missing else {}),
            "rows": summarize(results, sides)}


def summarize(results, sides):
    """The rows of the section from its rounds' timings: per round, the
    ratios of the medians with their spreads; per row, the worse round's
    ratio (the goals') and the union of the rounds' spreads.

    A side's time outside its GEMMs is, repeat by repeat, its fit's time
    less its GEMMs' time in the same repeat.
    """
    rows = []
    for solver in SOLVERS:
        for dtype in DTYPES:
            per_round = []
            for res in results:
                got = res[solver, dtype]
                t, g = got["times"], got["gemm"]
                outside = {name: np.subtract(t[name], g[name]) for name in sides}
                one = compared("time_ratio", t["ours"], t["jax"])
                for name in sides:
                    one[f"{name}_s"] = float(np.median(t[name]))
                    one[f"{name}_gemm_s"] = float(np.median(g[name]))
                    one[f"{name}_outside_gemm_s"] = float(np.median(outside[name]))
                    one[f"{name}_times_s"] = [float(v) for v in t[name]]
                    one[f"{name}_gemm_times_s"] = [float(v) for v in g[name]]
                    one[f"{name}_final_loss"] = got["losses"][name]
                one["jax_compile_s"] = got["jax_compile_s"]
                one["ours_kernels"] = got["kernels"]["ours"]
                if "before" in sides:
                    one.update(compared("before_time_ratio", t["before"], t["jax"]))
                    one.update(compared("outside_vs_before", outside["ours"],
                                        outside["before"]))
                per_round.append(one)
            row = {"solver": solver, "dtype": dtype, "rounds": per_round,
                   "ours_kernels": per_round[0]["ours_kernels"]}
            for name in ("time_ratio", "before_time_ratio", "outside_vs_before"):
                if name in per_round[0]:  # the goals: the worse of the rounds
                    row[name] = max(r[name] for r in per_round)
                    row[f"{name}_spread"] = [
                        min(r[f"{name}_spread"][0] for r in per_round),
                        max(r[f"{name}_spread"][1] for r in per_round)]
            rows.append(row)
    return rows


def goals(jax):
    met = {}
    for row in jax.get("rows", []):
        met[f"time_vs_jax {row['solver']} {row['dtype']}"] = goal(
            row["time_ratio"], TARGETS["time_vs_jax"], lower_is_better=True,
            spread=row.get("time_ratio_spread"), repeats=jax.get("repeats"))
        if "outside_vs_before" in row:
            met[f"outside_gemm_vs_before {row['solver']} {row['dtype']}"] = goal(
                row["outside_vs_before"], TARGETS["outside_gemm_vs_before"],
                lower_is_better=True, spread=row.get("outside_vs_before_spread"),
                repeats=jax.get("repeats"))
    return met


def text(result, run):
    return [*_table(result), *measured_lines(run)]


def _table(result):
    if not result.get("available"):
        return [f"(i) JAX: {result['reason']}"]
    steps, before = result["steps"], result.get("before")
    lines = [
        f"(i) vs JAX {result['version']} (jit + lax.scan), separate processes, "
        f"{steps} steps, {result['rounds']} rounds of {result['repeats']} "
        "repeats; ratio = our time / JAX's steady state (goal <= 1.0), of medians",
        f"    {SPREAD_WORDS}; outside = fit time - the step's two large GEMMs "
        "alone, per step in us" + (f"; before = the package at {before}"
                                   if before else ""),
    ]
    if result.get("before_missing"):
        lines.append(f"    before: not timed, {result['before_missing']}")
    head = ["solver", "dtype", "round", "ours s", "JAX s", "ratio", "spread",
            "GEMM us ours/JAX", "outside us ours/JAX"]
    widths = [6, 7, 5, 7, 7, 5, 11, 16, 19]
    if before:
        head += ["before s", "ratio", "outside us", "outside/before", "spread"]
        widths += [8, 5, 10, 14, 11]
    head += ["compile s", "kernels"]
    widths += [9, 7]
    lines.append("| " + " | ".join(f"{h:>{w}}" for h, w in zip(head, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    us = 1e6 / steps
    for row in result["rows"]:
        for i, r in enumerate(row["rounds"]):
            cells = [row["solver"], row["dtype"], i + 1, f"{r['ours_s']:.3f}",
                     f"{r['jax_s']:.3f}", f"{r['time_ratio']:.2f}",
                     spread_text(r.get("time_ratio_spread")),
                     f"{r['ours_gemm_s'] * us:.0f}/{r['jax_gemm_s'] * us:.0f}",
                     f"{r['ours_outside_gemm_s'] * us:.0f}/"
                     f"{r['jax_outside_gemm_s'] * us:.0f}"]
            if before:
                cells += [f"{r['before_s']:.3f}", f"{r['before_time_ratio']:.2f}",
                          f"{r['before_outside_gemm_s'] * us:.0f}",
                          f"{r['outside_vs_before']:.2f}",
                          spread_text(r.get("outside_vs_before_spread"))]
            cells += [f"{r['jax_compile_s']:.2f}",
                      {True: "yes", False: "no", None: "-"}[r["ours_kernels"]]]
            lines.append("| " + " | ".join(f"{str(c):>{w}}" for c, w
                                           in zip(cells, widths)) + " |")
    return lines


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="a worker of section (i)")
    p.add_argument("--worker", choices=("ours", "jax"), required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--package", help="a folder holding the sk_twolayer to time")
    args = p.parse_args()
    sys.path.insert(0, str(HERE.parent))  # run from a checkout
    if args.package:
        sys.path.insert(0, args.package)
    worker(args.worker, json.loads(args.config))
