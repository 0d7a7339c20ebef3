"""Each client library with its default parallelism against the same client on SharedArrayExecutor.

    python benchmarks/clients.py --quick      # about three minutes on 2 cores
    python benchmarks/clients.py              # more rounds, larger scipy/emcee data

One table, in one run, 2 workers everywhere: for each client and workload, the
median wall time of the client's default, of the same client with SharedArrayExecutor,
and the ratio (default / ours; above 1 means we are faster).

    client        default                          with SharedArrayExecutor
    joblib        backend "loky"                   backend "zerocopy"
    scikit-learn  n_jobs=2 on loky                 n_jobs=2 under parallel_config(backend="zerocopy")
    dask          scheduler "processes", "threads"  scheduler=executor (from_array, and from_shared)
    scipy         workers=ProcessPoolExecutor.map  workers=executor.map (data plain, and shared)
    emcee         pool=ProcessPoolExecutor         pool=executor
    pandas/Arrow  ProcessPoolExecutor.submit       executor.submit

Each pair is timed in turns (who goes first alternates each round) after one warm-up
call each, so that the machine's drift hits both alike; executors and loky's workers
are started before timing, except dask's "processes" scheduler, which starts a pool in
every compute() (what its users get). Process pools use forkserver. Arrow buffers take
the arrays' paths (pickle protocol 5's buffer_callback), so the Arrow rows measure them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import _client_tasks as tasks
import numpy as np

import zerocopy_executor as zc

MB = 1 << 20
WORKERS = 2
RESULTS = Path(__file__).resolve().parent / "results"
Pair = tuple[Callable[[], Any], Callable[[], Any]]


@dataclass
class Row:
    client: str
    workload: str
    default: str
    default_ms: float
    ours_ms: float
    rounds: int

    @property
    def ratio(self) -> float:
        return self.default_ms / self.ours_ms


def in_turns(default: Callable[[], Any], ours: Callable[[], Any], rounds: int) -> tuple[float, float]:
    """Median seconds of each, timed in alternating order after one warm-up call each."""
    default()
    ours()
    times: dict[int, list[float]] = {0: [], 1: []}
    calls = (default, ours)
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            calls[i]()
            times[i].append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


def context() -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context("forkserver")


def start_method(backend: str) -> dict[str, Any]:
    """Our joblib backend on forkserver too (its default is the platform's); loky has its own."""
    return {"mp_context": context()} if backend == "zerocopy" else {}


@contextlib.contextmanager
def executors() -> Iterator[tuple[ProcessPoolExecutor, zc.SharedArrayExecutor]]:
    with (
        ProcessPoolExecutor(WORKERS, mp_context=context()) as ppe,
        zc.SharedArrayExecutor(WORKERS, mp_context=context()) as sae,
    ):
        yield ppe, sae


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[Row] = []

    def record(self, client: str, workload: str, default: str, pair: Pair, rounds: int | None = None) -> None:
        n = rounds or self.args.rounds
        d, o = in_turns(*pair, n)
        row = Row(client, workload, default, d * 1e3, o * 1e3, n)
        self.rows.append(row)
        print(
            f"  {client:12} {workload:58} {default:24} "
            f"{row.default_ms:9.1f} {row.ours_ms:9.1f} {row.ratio:6.1f}x",
            flush=True,
        )

    # joblib and scikit-learn ------------------------------------------------------------------

    def joblib(self) -> None:
        from joblib import Parallel, delayed, parallel_config

        import zerocopy_executor.joblib as zc_joblib

        zc_joblib.register()
        n = self.args.mb * MB // 8
        a = np.random.default_rng(0).random(n)

        def run(backend: str, calls: Any) -> Callable[[], Any]:
            def go() -> Any:
                with parallel_config(backend=backend, n_jobs=WORKERS, **start_method(backend)):
                    return Parallel()(calls())

            return go

        def args_calls() -> Any:
            return (delayed(tasks.total)(a) for _ in range(4))

        def result_calls() -> Any:
            return (delayed(tasks.ones)(n) for _ in range(4))

        mb = self.args.mb
        self.record(
            "joblib",
            f"one {mb} MB array to 4 tasks",
            "loky",
            (run("loky", args_calls), run("zerocopy", args_calls)),
        )
        self.record(
            "joblib",
            f"4 results of {mb} MB",
            "loky",
            (run("loky", result_calls), run("zerocopy", result_calls)),
        )
        self.sklearn(parallel_config)
        zc_joblib.shutdown()

    def sklearn(self, parallel_config: Any) -> None:
        from sklearn.linear_model import Ridge
        from sklearn.model_selection import GridSearchCV, cross_val_score

        rng = np.random.default_rng(1)
        features = 100
        rows = self.args.mb * MB // 8 // features
        X = rng.random((rows, features))
        y = X @ rng.random(features) + rng.normal(0, 0.1, rows)
        mb = X.nbytes // MB

        def under(backend: str, job: Callable[[], Any]) -> Callable[[], Any]:
            def go() -> Any:
                with parallel_config(backend=backend, n_jobs=WORKERS, **start_method(backend)):
                    return job()

            return go

        def cv(data: Any) -> Callable[[], Any]:
            return lambda: cross_val_score(Ridge(), data, y, cv=4, n_jobs=WORKERS)

        def grid(data: Any) -> Callable[[], Any]:
            search = GridSearchCV(Ridge(), {"alpha": [0.1, 1.0, 10.0, 100.0]}, cv=3, n_jobs=WORKERS)
            return lambda: search.fit(data, y)

        shared = zc.share(X)  # the recipe for an X used by many tasks: by reference, never copied
        for label, job in (
            (f"cross_val_score, Ridge, cv=4, {mb} MB X", cv),
            (f"GridSearchCV, 4 alphas x cv=3, {mb} MB X", grid),
        ):
            self.record("scikit-learn", label, "loky", (under("loky", job(X)), under("zerocopy", job(X))))
            self.record(
                "scikit-learn",
                label + ", shared",
                "loky",
                (under("loky", job(X)), under("zerocopy", job(shared))),
            )
        del shared

    # dask ---------------------------------------------------------------------------------------

    def dask(self) -> None:
        import dask
        import dask.array as da

        from zerocopy_executor.dask import from_shared

        n = self.args.mb * MB // 8
        chunk = n // 8
        plain = np.random.default_rng(2).random(n)
        shared = zc.share(plain)
        workload = f"{self.args.mb} MB in 8 chunks, x * 2 + 1 then sum"
        with dask.config.set({"multiprocessing.context": "forkserver"}), executors() as (ppe, sae):
            d = da.from_array(plain, chunks=chunk)
            ds = from_shared(shared, chunks=chunk)
            expr, expr_shared = (d * 2 + 1).sum(), (ds * 2 + 1).sum()

            def with_(scheduler: Any, e: Any = expr) -> Callable[[], Any]:
                kwargs = {"num_workers": WORKERS} if isinstance(scheduler, str) else {}
                return lambda: e.compute(scheduler=scheduler, **kwargs)

            rounds = max(3, self.args.rounds // 2)
            self.record("dask", workload, '"processes"', (with_("processes"), with_(sae)), rounds)
            self.record("dask", workload, '"threads"', (with_("threads"), with_(sae)))
            self.record("dask", workload, "ProcessPoolExecutor", (with_(ppe), with_(sae)))
            self.record(
                "dask",
                workload + ", from_shared",
                '"processes"',
                (with_("processes"), with_(sae, expr_shared)),
                rounds,
            )
            self.record(
                "dask",
                workload + ", from_shared",
                "ProcessPoolExecutor",
                (with_(ppe), with_(sae, expr_shared)),
            )
        del ds, expr_shared, shared

    # scipy and emcee --------------------------------------------------------------------------

    def scipy_emcee(self) -> None:
        import emcee
        from scipy.optimize import differential_evolution

        mb = self.args.data_mb
        plain = np.random.default_rng(3).random(mb * MB // 8)
        shared = zc.share(plain)
        bounds = [(-5.0, 5.0), (-5.0, 5.0)]

        def de(workers: Any, data: Any) -> Callable[[], Any]:
            return lambda: differential_evolution(
                tasks.objective,
                bounds,
                args=(data,),
                workers=workers,
                updating="deferred",
                maxiter=3,
                popsize=5,
                rng=0,
                polish=False,
            )

        start = np.random.default_rng(4).normal(size=(16, 2))

        def mcmc(pool: Any, data: Any) -> Callable[[], Any]:
            def go() -> Any:
                sampler = emcee.EnsembleSampler(16, 2, tasks.log_prob, args=(data,), pool=pool)
                sampler.run_mcmc(start, 5)
                return sampler

            return go

        workload = f"args carry a {mb} MB array"
        with executors() as (ppe, sae):
            self.record(
                "scipy",
                f"differential_evolution, {workload}",
                "ProcessPoolExecutor.map",
                (de(ppe.map, plain), de(sae.map, plain)),
            )
            self.record(
                "scipy",
                f"differential_evolution, {workload}, shared",
                "ProcessPoolExecutor.map",
                (de(ppe.map, plain), de(sae.map, shared)),
            )
            self.record(
                "emcee",
                f"EnsembleSampler, {workload}",
                "ProcessPoolExecutor",
                (mcmc(ppe, plain), mcmc(sae, plain)),
            )
            self.record(
                "emcee",
                f"EnsembleSampler, {workload}, shared",
                "ProcessPoolExecutor",
                (mcmc(ppe, plain), mcmc(sae, shared)),
            )
        del shared

    # pandas and Arrow ---------------------------------------------------------------------------

    def pandas_arrow(self) -> None:
        import pandas as pd
        import pyarrow as pa

        rows = 52 * MB // 8 // 8
        rng = np.random.default_rng(5)
        frame = pd.DataFrame({f"c{i}": rng.random(rows) for i in range(8)})
        table = pa.Table.from_pandas(frame, preserve_index=False)
        mb = frame.memory_usage(index=False).sum() / MB
        with executors() as (ppe, sae):

            def call(ex: Any, fn: Any, obj: Any) -> Callable[[], Any]:
                return lambda: ex.submit(fn, obj).result()

            for label, obj in (
                (f"DataFrame, NumPy columns, {mb:.0f} MB", frame),
                (f"pyarrow Table, {mb:.0f} MB", table),
            ):
                client = "pandas" if label.startswith("DataFrame") else "Arrow"
                self.record(
                    client,
                    f"{label}, as argument",
                    "ProcessPoolExecutor",
                    (call(ppe, tasks.nrows, obj), call(sae, tasks.nrows, obj)),
                )
                self.record(
                    client,
                    f"{label}, echoed back",
                    "ProcessPoolExecutor",
                    (call(ppe, tasks.identity, obj), call(sae, tasks.identity, obj)),
                )


def commit() -> str:
    """The checkout's commit, with "+changes" if the package differs from it."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    root = str(Path(__file__).resolve().parents[1])
    try:
        head = subprocess.run(
            [git, "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            [git, "-C", root, "status", "--porcelain", "--", "zerocopy_executor"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def report(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"clients.py {'--quick ' if args.quick else ''}at {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"commit {commit()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{WORKERS} workers; median ms per call",
        "",
        "| client | workload | default | default ms | SharedArrayExecutor ms | ratio |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.client} | {r.workload} | {r.default} | {r.default_ms:,.1f} | {r.ours_ms:,.1f} "
        f"| {r.ratio:.1f}x |"
        for r in rows
    ]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller scipy/emcee data")
    parser.add_argument(
        "--mb", type=int, default=64, help="array size for joblib, scikit-learn and dask (MB)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="timed calls per system and workload")
    parser.add_argument(
        "--only", default="joblib,dask,scipy,pandas", help="comma-separated: joblib,dask,scipy,pandas"
    )
    parser.add_argument(
        "--no-save", action="store_true", help="print only; write nothing to benchmarks/results"
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (5 if args.quick else 11)
    args.data_mb = 2 if args.quick else 8
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    bench = Bench(args)
    steps = {
        "joblib": bench.joblib,
        "dask": bench.dask,
        "scipy": bench.scipy_emcee,
        "pandas": bench.pandas_arrow,
    }
    print(f"  {'client':12} {'workload':58} {'default':24} {'ms':>9} {'ours ms':>9}  ratio")
    for name in args.only.split(","):
        steps[name]()
    text = report(bench.rows, args)
    print()
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        (RESULTS / f"clients-{stamp}.md").write_text(text + "\n")
        (RESULTS / f"clients-{stamp}.json").write_text(json.dumps([asdict(r) for r in bench.rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
