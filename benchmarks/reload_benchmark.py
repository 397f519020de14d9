"""Reload under load: new versions of every served table are published while wrk drives the service.

The service (one uvicorn worker, as in ``service_benchmark.py``) serves the tables a pipeline run
published (``pipeline_benchmark.py --keep``) and polls for new versions every
``--reload-interval`` seconds, as in production. wrk asks for personalised lists (cycling
through real users) first for ``--steady-seconds`` (the steady state), then again while a child
process re-publishes the served rows of every table as a new version through the core's
publishing code (same ``as_of``: the newer publication wins, so each new version is served). The
service notices the new versions, loads them in its worker thread and swaps its store.

**Latency per window.** wrk reports one latency distribution per run, so the load is a sequence
of consecutive short wrk runs (``--slice-seconds``, 2 s); ``service/paths.lua`` prints each run's
latency at 1000 evenly spaced quantiles, and a window's percentiles are those of the mixture of
the runs overlapping it, each weighted by its request count. Windows: the steady state; the
*control*, the same publication a day older (recorded, not served: the service loads nothing),
which shows what the publisher and the database alone cost the requests on this machine (in
production the pipeline does not share the service's cores); the *reload window*, from the start of the publication until the last swap plus ``--tail-seconds``;
and *loading*, the runs overlapping the service's own loads (a load's start is its swap time minus
``recsys_store_load_seconds``). Caveat of slicing: the requests in flight when a run ends are not
counted, so a stall that spans a run's end shows only in the next run's first requests.

**Load and CPUs.** By default wrk asks as fast as the service answers (a saturated service:
its p99 is mostly queueing) and every process shares every CPU. ``--rate`` bounds wrk's rate (a
service with headroom, as one is run in production), and ``--service-cpus`` / ``--database-cpus``
pin the service (with its loading child) and wrk to some CPUs, the publisher and every
PostgreSQL process to others: the pipeline and the database on other machines than the service,
as in production, so that what is measured is the service's own reload.

**Swaps and memory.** A watcher polls ``/metrics`` every 0.2 s for the table versions served and
reads the service's ``VmRSS`` from ``/proc``; the kernel's peak (``VmHWM``) is reset before the
reload run (``/proc/PID/clear_refs``), so the peak during the swap is exact, not sampled.

Targets (issue 16): p99 in the reload window ≤ 3× steady p99, 0 errors, peak RSS during the swap
≤ 2× steady RSS.

Usage::

    .venv/bin/python benchmarks/reload_benchmark.py --database-url "$(cat /tmp/pipe_full/database_url)" \\
        --object-store-url /tmp/pipe_full/object_store [--rate 2000 --service-cpus 1 --database-cpus 0]

Appends a Markdown section to ``benchmarks/results/reload.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty
from typing import Any, TypeVar

import numpy as np
import requests
import sqlalchemy as sa
from common import record
from service_benchmark import ROOT, K, sample, service_env, start, store_load_seconds, wrk

from recsys.publishing.catalogue import CATALOGUE
from recsys.publishing.tables import NotPublishedError, read_published

TARGET_P99_RATIO = 3.0
TARGET_RSS_RATIO = 2.0
POLL_SECONDS = 0.2
Result = TypeVar("Result")
VERSION_LINE = re.compile(r'^recsys_table_version\{table="([a-z0-9_]+)"\} ([0-9.e+]+)$')


@dataclass(frozen=True)
class Slice:
    """One short wrk run: wall-clock start and end, and what ``paths.lua`` printed."""

    start: float
    end: float
    result: dict[str, Any]


@dataclass(frozen=True)
class Swap:
    """A new store in service: when the watcher saw it, how long its load took, the versions."""

    seen: float
    load_seconds: float
    versions: dict[str, int]

    @property
    def load_start(self) -> float:
        return self.seen - self.load_seconds


def merged(slices: list[Slice]) -> dict[str, float]:
    """Requests, errors, rate and p50/p95/p99 (ms) of consecutive wrk runs taken together."""
    values = np.concatenate([np.asarray(s.result["quantiles_us"], dtype=np.float64) for s in slices])
    grid = len(slices[0].result["quantiles_us"])
    weights = np.repeat([s.result["requests"] / grid for s in slices], grid)
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    requests_total = sum(s.result["requests"] for s in slices)
    figures = {
        "seconds": sum(s.result["seconds"] for s in slices),
        "requests": requests_total,
        "errors": sum(s.result["errors"] for s in slices),
    }
    figures["rps"] = requests_total / figures["seconds"]
    for p in (50, 95, 99):
        index = min(int(np.searchsorted(cumulative, p / 100 * cumulative[-1])), order.size - 1)
        figures[f"p{p}_ms"] = float(values[order[index]]) / 1000
    return figures


def overlapping(slices: list[Slice], start: float, end: float) -> list[Slice]:
    """The runs that overlap ``[start, end]``."""
    return [s for s in slices if s.end > start and s.start < end]


def proc_status_kib(pid: int, field_name: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


@dataclass
class Watcher:
    """Polls the service every 0.2 s in a thread: its RSS and the table versions it serves."""

    pid: int
    base: str
    rss: list[tuple[float, int]] = field(default_factory=list)
    swaps: list[Swap] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def served_versions(self) -> dict[str, int]:
        text = requests.get(f"{self.base}/metrics", timeout=10).text
        return {m[1]: int(float(m[2])) for line in text.splitlines() if (m := VERSION_LINE.match(line))}

    def start(self) -> None:
        versions = self.served_versions()

        def poll() -> None:
            nonlocal versions
            while not self._stop.wait(POLL_SECONDS):
                self.rss.append((time.time(), proc_status_kib(self.pid, "VmRSS") * 1024))
                try:
                    now = self.served_versions()
                except requests.RequestException:
                    continue  # a slow answer is wrk's to measure; the versions are read next time
                if now != versions:
                    self.swaps.append(Swap(time.time(), store_load_seconds(self.base), now))
                    versions = now

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def rss_between(self, start: float, end: float) -> list[int]:
        return [rss for moment, rss in self.rss if start <= moment <= end]


def republish(
    database_url: str, published: Any, served_by_it: bool = True, cpus: set[int] | None = None
) -> None:
    """Publish the served rows of every published table again as its next version (child process).

    The same ``as_of``: the newer publication of the same moment takes over serving; with
    ``served_by_it`` false, a day older (a backfill: recorded, not served, so the service loads
    nothing: the control run). Puts ``(name, version, seconds since the epoch)`` on the
    ``published`` queue after each table, and ``None`` when done. ``cpus``: the CPUs it runs on.
    """
    if cpus:
        os.sched_setaffinity(0, cpus)
    engine = sa.create_engine(database_url)
    for table in CATALOGUE.values():
        try:
            served, frame = read_published(engine, table.name)
        except NotPublishedError:
            continue
        as_of = served.as_of
        if not served_by_it and as_of is not None:
            as_of -= timedelta(days=1)
        version = table.publish(engine, frame, as_of=as_of)
        published.put((table.name, version.version, time.time()))
    engine.dispose()
    published.put(None)


def drain(queue: Any, process: Any) -> list[tuple[str, int, float]]:
    """What ``republish`` put on ``queue`` until its final ``None``; raises if it died before."""
    items: list[tuple[str, int, float]] = []
    while True:
        try:
            item = queue.get(timeout=1)
        except Empty:
            if not process.is_alive():
                raise RuntimeError(f"the publisher died (exit code {process.exitcode})") from None
            continue
        if item is None:
            return items
        items.append(item)


def publish_in_child(
    database_url: str, served_by_it: bool = True, cpus: set[int] | None = None
) -> tuple[float, float, list[tuple[str, int, float]]]:
    """:func:`republish` in a spawned child: its start and end time, and what it published."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    publisher = context.Process(target=republish, args=(database_url, queue, served_by_it, cpus))
    started = time.time()
    publisher.start()
    published = drain(queue, publisher)
    publisher.join()
    if publisher.exitcode != 0:
        raise RuntimeError(f"the publisher exited with {publisher.exitcode}")
    return started, time.time(), published


def under_load(
    base: str, paths: list[str], args: argparse.Namespace, action: Callable[[], Result]
) -> tuple[list[Slice], Result]:
    """wrk runs from ``lead_seconds`` before ``action()`` until ``tail_seconds`` after it; its result."""
    stop = threading.Event()
    slices: list[Slice] = []
    slicer = threading.Thread(target=lambda: slices.extend(run_slices(base, paths, args, stop)))
    slicer.start()
    time.sleep(args.lead_seconds)
    result = action()
    time.sleep(args.tail_seconds)
    stop.set()
    slicer.join()
    return slices, result


def run_slices(
    base: str, paths: list[str], args: argparse.Namespace, until: threading.Event | int
) -> list[Slice]:
    """Consecutive wrk runs (``args``: their connections, length, rate and CPUs): ``until`` runs,
    or until the event is set."""
    slices: list[Slice] = []
    while (len(slices) < until) if isinstance(until, int) else not until.is_set():
        started = time.time()
        result = wrk(base, paths, args.connections, args.slice_seconds, args.rate, args.service_cpus)
        slices.append(Slice(started, time.time(), result))
    return slices


def cpu_set(listing: str | None) -> set[int] | None:
    """``"0,2-3"`` as ``{0, 2, 3}`` (``None`` stays ``None``: every CPU)."""
    if not listing:
        return None
    cpus: set[int] = set()
    for part in listing.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def pin_postgres(cpus: set[int]) -> list[int]:
    """Pin every running PostgreSQL process to ``cpus`` (backends forked later inherit it from the
    postmaster); their PIDs, to unpin them at the end."""
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True, check=False)
    pids = [int(pid) for pid in found.stdout.split()]
    if not pids:
        raise RuntimeError("--database-cpus: no postgres process found to pin")
    for pid in pids:
        os.sched_setaffinity(pid, cpus)
    return pids


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--object-store-url", help="the pipeline's object store (the session model)")
    parser.add_argument("--users", type=int, default=5000, help="distinct users cycled through")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--steady-seconds", type=int, default=30)
    parser.add_argument("--slice-seconds", type=int, default=2, help="length of each wrk run")
    parser.add_argument("--lead-seconds", type=float, default=6, help="load before the publication starts")
    parser.add_argument("--tail-seconds", type=float, default=6, help="load after the last swap")
    parser.add_argument("--reload-interval", type=float, default=5, help="the service's polling interval")
    parser.add_argument("--swap-timeout", type=float, default=900)
    parser.add_argument(
        "--rate", type=float, help="requests per second wrk aims at (default: as many as the service answers)"
    )
    parser.add_argument(
        "--service-cpus", help="CPUs of the service, its loader and wrk, e.g. 1 (default: all)"
    )
    parser.add_argument(
        "--database-cpus",
        help="CPUs of the publisher and of every PostgreSQL process, e.g. 0 (default: all): the "
        "pipeline and the database on other machines than the service, as in production",
    )
    args = parser.parse_args()
    service_cpus = cpu_set(args.service_cpus)
    database_cpus = cpu_set(args.database_cpus)

    chosen = sample(args.database_url, args.users)
    paths = [f"/recommendations/users/{u}?k={K}" for u in chosen.users]
    env = service_env(args.database_url, args.reload_interval, args.object_store_url)
    service, base, startup = start("recsys_app.recsys_app:app", ROOT / "fast_api_service", env, "/ready")
    pid = service.pid
    watcher = Watcher(pid, base)
    pinned_postgres = pin_postgres(database_cpus) if database_cpus else []
    try:
        if service_cpus:
            os.sched_setaffinity(pid, service_cpus)
        startup_load = store_load_seconds(base)
        rss_loaded = proc_status_kib(pid, "VmRSS") * 1024
        hwm_startup = proc_status_kib(pid, "VmHWM") * 1024
        run_slices(base, paths, args, 1)  # warm-up, not counted
        watcher.start()
        print(f"steady state: {args.steady_seconds} s …", flush=True)
        steady = run_slices(base, paths, args, args.steady_seconds // args.slice_seconds)
        steady_rss = statistics.median(watcher.rss_between(steady[0].start, steady[-1].end))

        print("control run: the same publication, not served …", flush=True)
        control, (control_start, control_end, _) = under_load(
            base,
            paths,
            args,
            lambda: publish_in_child(args.database_url, served_by_it=False, cpus=database_cpus),
        )
        time.sleep(2 * args.reload_interval)
        if watcher.swaps:
            raise RuntimeError(f"the control publication was loaded: {watcher.swaps}")
        # From here on VmHWM is the peak of the reload run (Linux: "5" resets it).
        Path(f"/proc/{pid}/clear_refs").write_text("5")

        print("reload run …", flush=True)

        def publish_and_wait_for_the_swap() -> tuple[float, float, list[tuple[str, int, float]], float]:
            started, ended, published = publish_in_child(args.database_url, cpus=database_cpus)
            expected = {name: version for name, version, _ in published}
            print(f"published {expected} in {ended - started:.1f} s; waiting for the swap", flush=True)
            deadline = ended + args.swap_timeout
            while time.time() < deadline and not (
                watcher.swaps and all(watcher.swaps[-1].versions.get(n) == v for n, v in expected.items())
            ):
                time.sleep(POLL_SECONDS)
            return started, ended, published, watcher.swaps[-1].seen if watcher.swaps else float("nan")

        loaded, (publish_start, publish_end, published, swapped) = under_load(
            base, paths, args, publish_and_wait_for_the_swap
        )
        expected = {name: version for name, version, _ in published}
        watcher.stop()
        peak_hwm = proc_status_kib(pid, "VmHWM") * 1024
        if not watcher.swaps:
            raise RuntimeError("the service swapped in no new store")
    finally:
        watcher.stop()
        service.terminate()
        service.wait(30)
        for postgres in pinned_postgres:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(postgres, range(os.cpu_count() or 1))

    swaps = [s for s in watcher.swaps if s.seen >= publish_start]
    run_rss = watcher.rss_between(loaded[0].start, loaded[-1].end)
    windows = {
        "steady state": steady,
        "control: publication not served (no load)": overlapping(control, control_start, control_end),
        "reload run (whole)": loaded,
        "reload window": overlapping(loaded, publish_start, swapped + args.tail_seconds),
        "loading (service's own loads)": [
            s for s in loaded if any(s.end > w.load_start and s.start < w.seen for w in swaps)
        ],
    }
    figures = {name: merged(slices) for name, slices in windows.items() if slices}
    steady_p99 = figures["steady state"]["p99_ms"]
    window = figures["reload window"]
    peak = max(peak_hwm, *run_rss)
    mib = 2**20
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — reload under load: {len(chosen.users):,} users cycled, "
        f"{args.connections} connections, {args.slice_seconds} s wrk runs, one uvicorn worker, "
        f"{os.cpu_count()} cores",
        "",
        f"Load: {f'about {args.rate:,.0f} requests/s' if args.rate else 'as fast as the service answers'}; "
        f"CPUs: service, its loader and wrk on {args.service_cpus or 'all'}, publisher and PostgreSQL "
        f"on {args.database_cpus or 'all'}.",
        "",
        f"Tables: ranked_recommendations v{chosen.ranked.version} with {chosen.ranked.rows:,} rows (and the "
        f"other published tables); start-up to ready {startup:.1f} s, of which loading {startup_load:.1f} s. "
        f"Service RSS after loading **{rss_loaded / mib:,.0f} MiB** (start-up peak {hwm_startup / mib:,.0f} MiB), "
        f"steady under load {steady_rss / mib:,.0f} MiB.",
        "",
        f"Publication (a child process re-publishing {len(published)} tables, "
        f"{', '.join(f'{n} v{v}' for n, v in expected.items())}): {publish_end - publish_start:.1f} s. "
        f"Polling every {args.reload_interval:g} s, the service swapped {len(swaps)} time(s); the last swap "
        f"{swapped - publish_start:.1f} s after the publication started:",
        "",
        *[
            f"- +{s.seen - publish_start:.1f} s: loaded in {s.load_seconds:.1f} s, serving "
            + ", ".join(f"{n} v{v}" for n, v in s.versions.items())
            for s in swaps
        ],
        "",
        "| window | seconds | requests | req/s | p50 ms | p95 ms | p99 ms | p99 vs steady | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {name} | {f['seconds']:.0f} | {f['requests']:,} | {f['rps']:,.0f} | {f['p50_ms']:.2f} | "
            f"{f['p95_ms']:.2f} | {f['p99_ms']:.2f} | {f['p99_ms'] / steady_p99:.2f} | {f['errors']:,} |"
        )
    errors = int(figures["reload run (whole)"]["errors"])
    lines += [
        "",
        f"RSS: steady {steady_rss / mib:,.0f} MiB, peak during the reload run **{peak / mib:,.0f} MiB** "
        f"(**{peak / steady_rss:.2f}×** steady; kernel peak VmHWM {peak_hwm / mib:,.0f} MiB, highest 0.2 s "
        f"sample {max(run_rss) / mib:,.0f} MiB), after the swap {run_rss[-1] / mib:,.0f} MiB.",
        "",
        f"Targets: p99 in the reload window {window['p99_ms'] / steady_p99:.2f}× steady (≤ {TARGET_P99_RATIO:g}×): "
        f"{'met' if window['p99_ms'] <= TARGET_P99_RATIO * steady_p99 else '**missed**'}; errors {errors} (0): "
        f"{'met' if errors == 0 else '**missed**'}; peak RSS {peak / steady_rss:.2f}× steady "
        f"(≤ {TARGET_RSS_RATIO:g}×): {'met' if peak <= TARGET_RSS_RATIO * steady_rss else '**missed**'}.",
        "",
        "<details><summary>Every wrk run of the reload run (seconds from the start of the publication)</summary>",
        "",
        "| from s | to s | req/s | p50 ms | p99 ms | errors | max RSS MiB | events |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    events = [(publish_start, "publication starts"), (publish_end, "publication done")]
    events += [(moment, f"{name} v{version} published") for name, version, moment in published]
    events += [(s.load_start, "load starts") for s in swaps] + [(s.seen, "swap seen") for s in swaps]
    for s in loaded:
        r = s.result
        inside = [label for moment, label in sorted(events) if s.start <= moment < s.end]
        sampled = watcher.rss_between(s.start, s.end)
        lines.append(
            f"| {s.start - publish_start:+.1f} | {s.end - publish_start:+.1f} | {r['rps']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | "
            f"{max(sampled) / mib if sampled else float('nan'):,.0f} | {'; '.join(inside)} |"
        )
    lines += ["", "</details>", ""]
    record("reload.md", lines)


if __name__ == "__main__":
    main()
