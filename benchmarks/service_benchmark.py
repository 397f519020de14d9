"""Load test of the recommendation service against a bare FastAPI endpoint, side by side in one run.

The service serves the tables a pipeline run published (e.g. ``pipeline_benchmark.py --keep``);
the baseline (``benchmarks/service/bare_app.py``) returns a constant list of the same size from an
async endpoint. Both run under the same uvicorn settings (one worker, no access log) on loopback,
one at a time, and wrk drives each target for ``--seconds`` at 10 and 50 connections, cycling
through real user ids; the bare endpoint is measured before and after the service at each
connection count and the mean is the baseline. Some users first get online events, so the
online path is exercised: a fifth of the users get three views, and ``--session-visitors``
others twenty (the session blend's path: V-SKNN, the session's categories, co-visitation, the
recently-viewed strip), measured on the personalised and online endpoints beside the plain
personalised endpoint in the same run. ``--rounds N`` repeats the whole sequence and reports medians:
single runs of these 2-core machines move the ratios by several hundredths.

Usage::

    .venv/bin/python benchmarks/service_benchmark.py --database-url "$(cat /tmp/pipe_full/database_url)"

Appends a Markdown section to ``benchmarks/results/service.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import requests
import sqlalchemy as sa
from common import record

from recsys.publishing.catalogue import RANKED_RECOMMENDATIONS, SIMILAR_ITEMS
from recsys.publishing.tables import PublishedVersion, current_version

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks" / "service"
UVICORN = [
    str(Path(sys.executable).parent / "uvicorn"),
    "--workers",
    "1",
    "--no-access-log",
    "--log-level",
    "warning",
]
API_KEY = "benchmark-key"
K = 10
SESSION_EVENTS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    app: str, cwd: Path, env: dict[str, str], ready_path: str
) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start uvicorn; return the process, its base URL and the seconds until ``ready_path`` answered 200."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([*UVICORN, app, "--port", str(port)], cwd=cwd, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = started + 600
    while time.perf_counter() < deadline:
        try:
            if requests.get(base + ready_path, timeout=2).status_code == 200:
                return process, base, time.perf_counter() - started
        except requests.ConnectionError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{app} exited with {process.returncode}")
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{app} was not ready in 600 s")


def wrk(
    base: str,
    paths: list[str],
    connections: int,
    seconds: int,
    rate: float | None = None,
    cpus: str | None = None,
) -> dict[str, Any]:
    """One wrk run over ``paths`` (cycled); its request count, seconds, percentiles, errors and the
    quantile grid ``paths.lua`` prints (for merging runs, see ``reload_benchmark.py``).

    ``rate``: at most about this many requests per second (each connection pauses
    ``connections / rate`` between a response and its next request); default: as fast as the
    service answers. ``cpus``: the CPUs wrk runs on (``taskset`` list, e.g. ``"1"``).
    """
    delay_ms = 1000 * connections / rate if rate else 0
    pinned = ["taskset", "-c", cpus] if cpus else []
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(paths))
        listing.flush()
        done = subprocess.run(
            [*pinned, "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(HERE / "paths.lua"), base],
            env={**os.environ, "PATHS_FILE": listing.name, "DELAY_MS": f"{delay_ms:g}"},
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def post_views(base: str, views: list[tuple[int, int]]) -> None:
    """Record ``(user, item)`` views through ``POST /events``, in order."""
    with requests.Session() as session:
        for user, item in views:
            session.post(
                f"{base}/events",
                headers={"X-API-Key": API_KEY},
                timeout=10,
                json={"user_id": user, "item_id": item, "event": "view"},
            ).raise_for_status()


@dataclass(frozen=True)
class Sample:
    """Who the load tests ask for: users with published lists, and items with similar items."""

    users: list[int]
    items: list[int]
    ranked: PublishedVersion


def sample(database_url: str, n_users: int) -> Sample:
    """The first ``n_users`` users of the served ranked lists and 200 items with similar items."""
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        ranked = current_version(conn, RANKED_RECOMMENDATIONS.name)
        users = [
            row[0]
            for row in conn.execute(
                sa.text(f'SELECT DISTINCT user_id FROM "{ranked.physical_name}" ORDER BY user_id LIMIT :n'),
                {"n": n_users},
            )
        ]
        similar = current_version(conn, SIMILAR_ITEMS.name).physical_name
        items = [
            row[0] for row in conn.execute(sa.text(f'SELECT DISTINCT item_id FROM "{similar}" LIMIT 200'))
        ]
    engine.dispose()
    return Sample(users, items, ranked)


def service_env(
    database_url: str, reload_interval_seconds: float = 3600, object_store_url: str | None = None
) -> dict[str, str]:
    """The service's environment; the default reload interval keeps reloads out of the measurement."""
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "RECSYS_DATABASE_URL": database_url,
        "RECSYS_API_KEY": API_KEY,
        "RECSYS_RELOAD_INTERVAL_SECONDS": f"{reload_interval_seconds:g}",
    }
    if object_store_url is not None:
        env["RECSYS_OBJECT_STORE_URL"] = object_store_url
    return env


def store_load_seconds(base: str) -> float:
    """``recsys_store_load_seconds``: how long the last load that changed a table took."""
    return next(
        float(line.split()[-1])
        for line in requests.get(f"{base}/metrics", timeout=10).text.splitlines()
        if line.startswith("recsys_store_load_seconds ")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--users", type=int, default=5000, help="distinct users cycled through")
    parser.add_argument(
        "--object-store-url", help="the pipeline's object store (the session model); default: the settings'"
    )
    parser.add_argument("--session-visitors", type=int, default=200, help="users given 20 online events each")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the whole sequence; the table shows medians over rounds"
    )
    args = parser.parse_args()

    chosen = sample(args.database_url, args.users)
    users, items, ranked = chosen.users, chosen.items, chosen.ranked
    env = service_env(args.database_url, object_store_url=args.object_store_url)
    service, base, startup = start("recsys_app.recsys_app:app", ROOT / "fast_api_service", env, "/ready")
    rss = psutil.Process(service.pid).memory_info().rss
    load_seconds = store_load_seconds(base)
    # A fifth of the users get three online views, so the online part has something to blend.
    online_users = users[::5]
    post_views(
        base,
        [
            (user, items[(number + step) % len(items)])
            for number, user in enumerate(online_users)
            for step in range(3)
        ],
    )
    # Others (not among those) get a session of twenty views of random items.
    session_users = [u for u in users if u not in set(online_users)][: args.session_visitors]
    rng = random.Random(0)
    post_views(
        base, [(user, item) for user in session_users for item in rng.choices(items, k=SESSION_EVENTS)]
    )
    targets = {
        "personalized": [f"/recommendations/users/{u}?k={K}" for u in users],
        "default": [f"/recommendations/default?k={K}"],
        "online": [f"/recommendations/users/{u}/online?k={K}" for u in online_users],
        "personalized, 20 online events": [f"/recommendations/users/{u}?k={K}" for u in session_users],
        "online, 20 online events": [f"/recommendations/users/{u}/online?k={K}" for u in session_users],
    }
    # The bare app runs beside the service (idle while the service is measured) and is measured
    # before and after the service's runs at each connection count: the machine's load drifts,
    # and the mean of the two brackets the service's runs.
    bare, bare_base, _ = start("bare_app:app", HERE, env, "/recommendations/users/1")
    rounds: list[dict[tuple[str, int], dict[str, float]]] = []
    try:
        for number in range(args.rounds):
            results: dict[tuple[str, int], dict[str, float]] = {}
            for connections in (10, 50):
                print(f"round {number + 1}: bare @ {connections} connections …", flush=True)
                before = wrk(bare_base, targets["personalized"], connections, args.seconds)
                for name, paths in targets.items():
                    print(f"round {number + 1}: {name} @ {connections} connections …", flush=True)
                    results[(name, connections)] = wrk(base, paths, connections, args.seconds)
                print(f"round {number + 1}: bare @ {connections} connections, again …", flush=True)
                after = wrk(bare_base, targets["personalized"], connections, args.seconds)
                results[("bare", connections)] = {
                    key: (before[key] + after[key]) / 2 for key in before if key != "quantiles_us"
                }
            rounds.append(results)
        rss_after = psutil.Process(service.pid).memory_info().rss
    finally:
        for process in (service, bare):
            process.terminate()
            process.wait(30)

    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {len(users):,} users cycled, {args.seconds} s per run, "
        f"{args.rounds} round(s), one uvicorn worker, {os.cpu_count()} cores",
        "",
        f"Tables: ranked_recommendations v{ranked.version} with {ranked.rows:,} rows (and the other published "
        f"tables). Start-up to ready: **{startup:.1f} s**, of which loading the tables {load_seconds:.1f} s "
        "(a reload reads the tables whose version changed, the same way); "
        f"service RSS after loading {rss / 2**20:,.0f} MiB, "
        f"after the load test **{rss_after / 2**20:,.0f} MiB**.",
        "",
        "| endpoint | connections | req/s | vs bare | p50 ms | p95 ms | p95 vs bare | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def median(
        name: str, connections: int, value: Callable[[dict[str, float], dict[str, float]], float]
    ) -> float:
        """Median over rounds of ``value(result, bare result of the same round)``."""
        return statistics.median(value(r[(name, connections)], r[("bare", connections)]) for r in rounds)

    for connections in (10, 50):
        for name in ("bare", *targets):
            errors = sum(int(r[(name, connections)]["errors"]) for r in rounds)
            cells = [
                f"{median(name, connections, lambda r, _: r['rps']):,.0f}",
                f"{median(name, connections, lambda r, bare: r['rps'] / bare['rps']):.2f}",
                f"{median(name, connections, lambda r, _: r['p50_ms']):.2f}",
                f"{median(name, connections, lambda r, _: r['p95_ms']):.2f}",
                f"{median(name, connections, lambda r, bare: r['p95_ms'] / bare['p95_ms']):.2f}",
                f"{median(name, connections, lambda r, _: r['p99_ms']):.2f}",
            ]
            lines.append(f"| {name} | {connections} | {' | '.join(cells)} | {errors} |")
    lines.append("")
    for connections in (10, 50):
        plain = median("personalized", connections, lambda r, _: r["p95_ms"])
        ratios = ", ".join(
            f"{name} {median(name, connections, lambda r, _: r['p95_ms']) / plain:.2f}×"
            for name in targets
            if "online events" in name
        )
        lines.append(f"- p95 vs the plain personalised endpoint at {connections} connections: {ratios}")
    lines.append("")
    if args.rounds > 1:
        lines.append(
            "Medians over the rounds (ratios: the median of each round's ratio to its own bare runs). Per round, personalised vs bare:"
        )
        lines.append("")
        for connections in (10, 50):
            pairs = [(r[("personalized", connections)], r[("bare", connections)]) for r in rounds]
            throughput = ", ".join(f"{p['rps'] / b['rps']:.2f}" for p, b in pairs)
            p95 = ", ".join(f"{p['p95_ms'] / b['p95_ms']:.2f}" for p, b in pairs)
            lines.append(f"- {connections} connections: req/s {throughput}; p95 {p95}")
        lines.append("")
    record("service.md", lines)


if __name__ == "__main__":
    main()
