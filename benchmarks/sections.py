"""The sections of the benchmark, in order, and what is made of all of them.

Each section is a module of this folder with the same small interface:

- ``KEY`` (its entry in the results file), ``NAME`` (its name for
  ``run.py --only``), ``LETTER`` (its label on the pages), ``DEFAULT``
  (whether a run without ``--only`` measures it; true where absent);
- ``add_options(parser)`` and ``QUICK`` (its options, and their values
  with ``--quick``);
- ``measure(cfg)`` (its figures, what the results file keeps), where
  ``cfg`` is what ``parse_args`` makes of run.py's command line;
- ``text(result, run)`` (its lines of the printed table) and
  ``goals(result)`` (its goals, met or missed).

``run.py`` measures them and ``report.py`` renders them; this module
imports every section, and no section imports it.
"""

import argparse

import dask_cost
import dask_fit
import dask_scale
import exactness
import on_device
import peak_memory
import predict_latency
import roofline
import vs_jax
import vs_mlp
import vs_torch
from common import MIN_REPEATS, RESULTS

SECTIONS = [roofline, vs_mlp, peak_memory, vs_torch, predict_latency, on_device,
            dask_fit, dask_scale, vs_jax, dask_cost, exactness]
BY_KEY = {s.KEY: s for s in SECTIONS}
BY_NAME = {s.NAME: s for s in SECTIONS}


def default_names():
    return [s.NAME for s in SECTIONS if getattr(s, "DEFAULT", True)]


# With --quick: tiny sizes for every section, a smoke test.
QUICK = {"n": 400, "d": 20, "hidden": 16, "classes": 3, "batch": 50, "epochs": 2,
         "lbfgs_iter": 3, "repeats": 2, "fit_repeats": 1}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Side-by-side performance benchmark of sk-twolayer.")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, for a smoke test")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lbfgs-iter", type=int, default=30)
    p.add_argument("--repeats", type=int, default=7,
                   help="alternating repeats for the roofline/torch timings")
    p.add_argument("--fit-repeats", type=int, default=MIN_REPEATS,
                   help="alternating repeats for the fits (a goal needs at "
                        f"least {MIN_REPEATS})")
    for section in SECTIONS:
        section.add_options(p)
    p.add_argument("--only", default=",".join(default_names()),
                   help="comma-separated sections to run, of "
                        f"{','.join(BY_NAME)}; 'all': every one (the full run)")
    p.add_argument("--json", default=None,
                   help="the results file that this run's sections go into "
                        f"(default {RESULTS}; none with --quick)")
    args = p.parse_args(argv)
    if args.only == "all":
        args.only = ",".join(BY_NAME)
    unknown = set(args.only.split(",")) - set(BY_NAME)
    if unknown:
        p.error(f"--only: no section named {', '.join(sorted(unknown))}")
    if args.quick:
        for quick in [QUICK] + [s.QUICK for s in SECTIONS]:
            for name, value in quick.items():
                setattr(args, name, value)
    if args.json is None and not args.quick:
        args.json = str(RESULTS)
    return args


def goals(results):
    """Every goal over the sections that the results hold."""
    met = {}
    for s in SECTIONS:
        if results.get(s.KEY):
            met.update(s.goals(results[s.KEY]))
    return met


def table(results):
    """The text of every section that the results hold, then the goals."""
    lines = []
    for s in SECTIONS:
        if results.get(s.KEY):
            lines += ["", *s.text(results[s.KEY], results["runs"].get(s.KEY))]
    if results.get("targets"):
        lines += ["", "targets (value [spread]: verdict):"]
    for k, v in results.get("targets", {}).items():
        val = "n/a" if v["value"] is None else f"{v['value']:.3f}"
        if v.get("spread") and not v.get("exact"):
            val += f" [{v['spread'][0]:.3f}, {v['spread'][1]:.3f}]"
        op = "<=" if v.get("lower_is_better") else ">="
        lines.append(f"  {k}: {val} ({op} {v['target']}): {v['verdict']}")
    return "\n".join(lines).lstrip("\n")


def summarize(results):
    """The goals and the table over every section of ``results``, into it."""
    results["targets"] = goals(results)
    results["table"] = table(results)
