"""Section (h): data-parallel L-BFGS at cluster scale.

Run with ``python benchmarks/run.py --only dask_scale`` (not in the default
run): the time per L-BFGS iteration of a wide model on 1 to 24 worker
processes, for each fan-in of the reduction tree.
"""

import time

import numpy as np

from common import DASK_MISSING, dask_data, iqr, measured_lines, quietly

KEY, NAME, LETTER = "dask_scale", "dask_scale", "(h)"
DEFAULT = False


def add_options(parser):
    parser.add_argument("--scale-workers", default="1,2,4,8,16,24",
                        help="numbers of workers of section (h)")
    parser.add_argument("--scale-fan-ins", default="2,4,8,64",
                        help="fan-ins of the reduction tree in section (h)")


QUICK = {"scale_workers": "1,2", "scale_fan_ins": "2"}


def measure(cfg):
    """Time per L-BFGS iteration against the number of workers.

    A wide model (D=784, H=1024, C=10: P = 814,090 parameters, 6.2 MiB in
    float64) on 20 rows per worker, so that compute is negligible and what
    is timed is moving the parameters out and the gradients back. Worker
    processes with one thread each; each figure is the difference of an
    11-iteration and a 1-iteration fit, divided by the iterations between,
    for each fan-in of the reduction tree (``sk-twolayer.dask.fan-in``; a
    fan-in of at least the number of workers less one is a star around the
    root worker), the median over ``--fit-repeats`` repeats in which the
    fan-ins alternate (after a warm-up fit), with its interquartile range
    and the repeats themselves. ``client_cpu_ms`` is the CPU time of this
    process per iteration, which also runs the LocalCluster's scheduler.
    With more workers than cores, the wall time measures the sharing of the
    cores as much as the fit: it is reported, never extrapolated.
    """
    try:
        import dask
        from distributed import Client, LocalCluster

        from sk_twolayer.dask import DaskTwoLayerSoftmaxClassifier
    except ImportError:
        return dict(DASK_MISSING)
    d, h, c, rows = 784, 1024, 10, 20
    if cfg.quick:
        d, h = 20, 16
    params = dict(hidden_size=h, tol=0.0, random_state=0)

    def fit(client, X, y, max_iter):
        clf = DaskTwoLayerSoftmaxClassifier(**params, max_iter=max_iter)
        clf.client = client
        wall, cpu = time.perf_counter(), time.process_time()
        quietly(lambda: clf.fit(X, y))
        return time.perf_counter() - wall, time.process_time() - cpu, clf.n_iter_

    table = []
    for workers in [int(k) for k in cfg.scale_workers.split(",")]:
        # Fan-ins that give the same tree (at least workers - 1) are one.
        fan_ins = {}
        for fan_in in [int(f) for f in cfg.scale_fan_ins.split(",")]:
            fan_ins.setdefault(min(fan_in, max(workers - 1, 1)), fan_in)
        fan_ins = list(fan_ins.values())
        # (with --quick, a smoke test: worker threads, which start at once)
        where = {} if cfg.quick else {"host": "127.0.0.1"}
        with LocalCluster(n_workers=workers, threads_per_worker=1,
                          processes=not cfg.quick, dashboard_address=":0",
                          **where) as cluster, \
                Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(workers)
            X, y = dask_data(workers, rows, d, c)
            X, y = client.persist([X, y])
            fit(client, X, y, 2)  # warm up the workers
            runs = {f: [] for f in fan_ins}
            for repeat in range(cfg.fit_repeats):
                # The fan-ins alternate, in another order each repeat.
                shift = repeat % len(fan_ins)
                for fan_in in fan_ins[shift:] + fan_ins[:shift]:
                    with dask.config.set({"sk-twolayer.dask.fan-in": fan_in}):
                        w1, c1, n1 = fit(client, X, y, 1)
                        w11, c11, n11 = fit(client, X, y, 11)
                    between = max(n11 - n1, 1)
                    runs[fan_in].append(((w11 - w1) / between, (c11 - c1) / between))
            for fan_in, pairs in runs.items():
                walls = [1e3 * w for w, _ in pairs]
                cpus = [1e3 * c for _, c in pairs]
                table.append({
                    "workers": workers, "fan_in": fan_in,
                    "ms_per_iteration": float(np.median(walls)),
                    "ms_per_iteration_spread": iqr(walls),
                    "client_cpu_ms": float(np.median(cpus)),
                    "client_cpu_ms_spread": iqr(cpus),
                    "repeats": len(pairs), "ms_per_iteration_repeats": walls,
                    "client_cpu_ms_repeats": cpus})
    P = d * h + h * c + h + c
    return {"available": True, "d": d, "hidden": h, "classes": c,
            "rows_per_worker": rows, "parameters": P, "table": table}


def goals(result):
    return {}


def text(result, run):
    return [*_table(result), *measured_lines(run)[:1]]


def _table(result):
    if not result or not result.get("available"):
        return [f"(h) Dask at cluster scale: skipped "
                f"({(result or {}).get('reason', 'not run')})"]
    r = result
    fan_ins = sorted({row["fan_in"] for row in r["table"]})
    workers = sorted({row["workers"] for row in r["table"]})
    cell = {(row["workers"], row["fan_in"]): row for row in r["table"]}
    lines = [f"(h) data-parallel L-BFGS at cluster scale: D={r['d']} H={r['hidden']} "
             f"C={r['classes']} (P={r['parameters']}), {r['rows_per_worker']} rows per "
             "worker, worker processes with 1 thread each",
             "    ms per iteration (client+scheduler CPU ms per iteration), by fan-in:",
             "    | workers | " + " | ".join(f"fan-in {f}" for f in fan_ins) + " |",
             "    " + "|---" * (len(fan_ins) + 1) + "|"]
    for k in workers:
        cells = []
        for f in fan_ins:
            row = cell.get((k, f))
            cells.append("" if row is None else
                         f"{row['ms_per_iteration']:.0f} ({row['client_cpu_ms']:.0f})")
        lines.append(f"    | {k} | " + " | ".join(cells) + " |")
    return lines
