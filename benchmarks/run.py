"""Side-by-side performance benchmark of sk-twolayer.

Each section is a module of this folder (``sections.py`` lists them):

(a) ``roofline.py``: the loss and gradient, and an SGD epoch, against the
    time of their matrix products alone;
(b) ``vs_mlp.py``: fit time against ``MLPClassifier`` with the same work;
(c) ``peak_memory.py``: peak extra memory of an L-BFGS fit, each estimator
    in its own process;
(d) ``vs_torch.py``: PyTorch CPU on the same network, when installed;
(e) ``predict_latency.py``: prediction latency against ``MLPClassifier``,
    and onnxruntime inference of both exported models;
(f) ``on_device.py`` (``--only device --device cuda``): training on an
    accelerator through scikit-learn's Array API dispatch;
(g) ``dask_fit.py``: data-parallel L-BFGS on a Dask ``LocalCluster``, and
    Spark MLlib's MLP where pyspark is installed;
(h) ``dask_scale.py`` (``--only dask_scale``): the time per iteration of a
    wide model on 1 to 24 workers, for each fan-in of the reduction tree;
(i) ``vs_jax.py``: the minibatch solvers against a jitted JAX loop;
(j) ``dask_cost.py`` (``--only dask_cost``): what one evaluation of the
    data-parallel fit costs the scheduler, on 1 to 64 workers;
and ``exactness.py`` (``--only exactness``): how close the data-parallel
fit comes to the in-memory fit.

Every ratio is the ratio of the medians of the two contenders' times over
repeats in which they run alternately (A, B, B, A, ...) after a warm-up,
because shared machines are noisy, and it comes with its spread (see
``common.py``).

Usage::

    python benchmarks/run.py --only all       # every section: the full run
    python benchmarks/run.py                  # sections a-e, g and i
    python benchmarks/run.py --quick          # tiny sizes, seconds; no file
    python benchmarks/run.py --repeats 9 --json /tmp/results.json
    python benchmarks/run.py --only predict   # prediction latency alone
    python benchmarks/run.py --only device --device cuda  # on a GPU
    python benchmarks/run.py --only jax --jax-before 8c204ab  # section (i)
    python benchmarks/run.py --only exactness

Each run writes the sections it measured into ``benchmarks/results.json``
(``--json``: another file), with the date, command, commit, machine,
versions, configuration and run time of the run, and keeps the other
sections; ``python benchmarks/report.py`` then writes the pages' figures
from it. benchmarks/README.md lists how long each section's last run took.

The dependencies are in the ``benchmarks`` extra:
``pip install ".[benchmarks]"`` (torch is optional; its CPU build installs
with ``pip install torch==2.13.0``; section (e)'s ONNX part needs the
``onnx`` extra).
"""

import os
import sys

# Section (f) trains under scikit-learn's array_api_dispatch, which needs
# scipy's array API support switched on before scipy is first imported (for
# the whole run, where the run has the section).
if "device" in " ".join(sys.argv[1:]) or "all" in sys.argv[1:] \
        or "--only=all" in sys.argv[1:]:
    os.environ.setdefault("SCIPY_ARRAY_API", "1")

import contextlib  # noqa: E402
import time  # noqa: E402

import common  # noqa: E402
import sections  # noqa: E402

def main(argv=None):
    cfg = sections.parse_args(argv)
    only = set(cfg.only.split(","))
    chosen = [s for s in sections.SECTIONS if s.NAME in only]
    command = " ".join(["python benchmarks/run.py",
                        *(sys.argv[1:] if argv is None else argv)])
    # The results file holds every section, each from the latest run that
    # measured it: this run replaces the sections it measures and keeps the
    # others. Its sections share one stamp (its id, commit and machine).
    results = common.read_results(cfg.json)
    stamp = common.run_stamp(cfg, command)
    stamp["sections"] = [s.KEY for s in chosen]
    started = time.perf_counter()
    for section in chosen:
        t0 = time.perf_counter()
        results[section.KEY] = section.measure(cfg)
        run = dict(stamp, seconds=round(time.perf_counter() - t0, 1),
                   machine=dict(stamp["machine"]))
        with contextlib.suppress(OSError):
            run["machine"]["loadavg_at_end"] = os.getloadavg()
        results["runs"][section.KEY] = run
        print(f"[{section.NAME} done in {run['seconds']:.0f} s]", file=sys.stderr)
        if cfg.json:  # (a long run stopped part way keeps what it measured)
            sections.summarize(results)
            common.write_results(results, cfg.json)
    for section in chosen:
        results["runs"][section.KEY]["run_seconds"] = round(
            time.perf_counter() - started, 1)
    sections.summarize(results)
    if cfg.json:
        common.write_results(results, cfg.json)
    print(results["table"])
    if cfg.json:
        print(f"\nwrote {cfg.json}; `python benchmarks/report.py` regenerates "
              "the pages' figures from it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
