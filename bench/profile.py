"""Where a benchmark row's time goes, in one process and without load: `make profile`.

The same environment, database and seeds as `make bench` (bench/run.py), but its own database
(`idp_profile`) and Redis database (12), and the rows' requests sent through Django's test client
instead of gunicorn and wrk. For each row it prints the queries of one request and the mean time
of many; with `--profile NAME` also cProfile's heaviest functions for that row.

    .venv/bin/python -m bench.profile                         # every row: queries, ms per request
    .venv/bin/python -m bench.profile --profile "refresh"     # and cProfile's top functions for one

Numbers here are a single request's service time, without the server or the network: what a
worker spends, not what a client waits (docs/performance.md, "Where the time went").
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/idp_profile")
os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")

from bench import run  # noqa: E402  (reads the two variables above)

run.WORK = run.ROOT / "var" / "profile"
REQUESTS = 300
# make bench cycles through its 1,000 known tokens and keys, each asked about again about once a
# second: a cycled row is profiled over this many credentials, each sent once before timing.
CYCLED = 100


def outer(options: argparse.Namespace) -> int:
    """Prepare the database as make bench does, then profile in a child with the server's environment."""
    try:
        bench = run.Bench(duration=1, warmup=0, runs=1, large=run.SMALL_SCALE)
        bench.prepare()
        bench.seed_small()
        bench.extend(run.SMALL_SCALE, options.requests * 3, f"seed {options.requests * 3:,} codes and refreshes")
    except run.HarnessError as error:
        print(f"profile: {error}", file=sys.stderr)
        return 1
    argv = [run.PYTHON, "-m", "bench.profile", "--inner", str(bench.seed_file), "--requests", str(options.requests)]
    if options.profile:
        argv += ["--profile", options.profile, "--sort", options.sort]
    env = {**bench.env, "DJANGO_SETTINGS_MODULE": "idp.settings"}
    return subprocess.run(argv, cwd=run.ROOT, env=env, check=False).returncode  # noqa: S603


def inner(seed_file: Path, requests: int, profiled: str | None, sort: str) -> int:
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    seed = json.loads(seed_file.read_text())
    client = Client(
        REMOTE_ADDR="127.0.0.1",
        HTTP_HOST=run.HOST,
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
    )
    used = {name: 0 for name in ("access_tokens", "api_keys", "codes", "refresh_tokens")}

    def send(row: run.Row) -> Any:
        headers: dict[str, str] = {}
        credential = ""
        if row.creds:
            values = seed[row.creds]
            if not row.single_use:  # cycled, as wrk cycles them: warm after the first pass
                values = values[:CYCLED]
            credential = values[used[row.creds] % len(values)]
            used[row.creds] += 1
        if row.client:
            entry = seed["clients"][row.client]
            pair = f"{entry['client_id']}:{entry['client_secret']}".encode()
            headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(pair).decode()
        if row.bearer:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {credential}"
        if row.method == "GET":
            return client.get(row.path, **headers)
        body = row.body.replace("{cred}", credential)
        return client.post(row.path, body, content_type="application/x-www-form-urlencoded", **headers)

    print(f"{'row':<32} {'queries':>7} {'ms/request':>10}")
    for row in run.rows(seed):
        for _ in range(10 if row.single_use else CYCLED):  # warm: caches filled, connection open
            send(row)
        queries: list[str] = []
        with connection.execute_wrapper(_Recorder(queries)):
            response = send(row)
        if response.status_code != 200 or not row.check(response.json()):
            print(f"{row.name}: {response.status_code} {response.content[:300]!r}", file=sys.stderr)
            return 1
        profiler = cProfile.Profile() if row.name == profiled else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        for _ in range(requests):
            send(row)
        if profiler:
            profiler.disable()
        elapsed = (time.perf_counter() - started) / requests * 1000
        print(f"{row.name:<32} {len(queries):>7} {elapsed:>10.2f}")
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(45)
            print(out.getvalue())
            for sql in queries:
                print(f"  {sql[:220]}")
    return 0


class _Recorder:
    """An execute wrapper that notes every statement's SQL (DEBUG is off, so Django keeps none)."""

    def __init__(self, into: list[str]) -> None:
        self.into = into

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.into.append(sql)
        return execute(sql, params, many, context)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=REQUESTS, help="timed requests per row")
    parser.add_argument("--profile", help="a row's name: print cProfile's heaviest functions for it")
    parser.add_argument(
        "--sort", default="cumulative", help="cProfile's order for --profile: cumulative (default) or tottime"
    )
    parser.add_argument("--inner", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inner:
        return inner(options.inner, options.requests, options.profile, options.sort)
    return outer(options)


if __name__ == "__main__":
    sys.exit(main())
