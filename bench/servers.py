"""Which application server (issue 18 §3): make bench's rows under each candidate, with keep-alive.

gunicorn's sync workers (the Procfile's `web:` line) close the connection after every response;
wrk, like the TLS proxy, would keep it open. This compares, on one seeded database and with the
same server environment as `make bench` (bench/run.py):

- gunicorn sync, exactly the Procfile's line (the baseline);
- gunicorn gthread (4 and 8 threads a worker), gevent and gunicorn's own ASGI worker: the
  Procfile's line plus a worker class, so deploy/gunicorn.conf.py's hooks and the header limits stay;
- granian (WSGI and ASGI) and uvicorn (ASGI), with their nearest equivalents of those flags.

Where Django's kept connections would not be reused (ASGI: a thread per request; gevent: a
greenlet per client connection) the server runs with Django's PostgreSQL pool (POOL_SETTINGS);
uvicorn also runs without it, connecting per request. A guard thread kills any server that holds
more PostgreSQL connections than a candidate needs, or leaves other work on the machine too few.

Each server gets 2 worker processes (this machine has 2 cores) and, in turn, the rows floor-hello,
floor-db, client_credentials, the code exchange, refresh, both introspections and userinfo at 32
connections (`Bench.measure`, one run each). The order is interleaved: A B C ... then ... C B A,
so drift on a shared machine shows as a difference between a server's two passes. After each
server's rows two probes: the header limits (requests just over and just under the Procfile's)
and a graceful shutdown (SIGTERM while a token request's body is still on its way). The table goes
to stdout and bench/results/servers.md (--out); docs/servers.md reads it.

Its own PostgreSQL database (idp_servers) and Redis database (11), so it never meets make bench or
bench.profile; it holds /tmp/idp-bench.lock (flock) throughout, so no other benchmark on this
machine runs at the same time. The servers other than gunicorn are installed into .venv from
bench/requirements-servers.txt when missing (never into requirements.txt).

    .venv/bin/python -m bench.servers --duration 3 --warmup 1 --passes 2       # 12-18 minutes
    .venv/bin/python -m bench.servers --only "gunicorn sync" --only uvicorn --passes 1 --out var/try.md
"""

from __future__ import annotations

import argparse
import fcntl
import http.client
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

# Its own database and Redis database: assigned, not defaulted, so a BENCH_* variable left in the
# shell for make bench can never point this at idp_bench.
os.environ["BENCH_DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/idp_servers"
os.environ["BENCH_REDIS_URL"] = "redis://127.0.0.1:6379/11"

import psycopg  # noqa: E402

from bench import run  # noqa: E402  (reads the two variables above)

run.WORK = run.ROOT / "var" / "servers"
RESULTS = run.ROOT / "bench" / "results" / "servers.md"
REQUIREMENTS = run.ROOT / "bench" / "requirements-servers.txt"
LOCK = Path("/tmp/idp-bench.lock")  # noqa: S108 - the one lock every benchmark on this machine takes
BIN = Path(run.PYTHON).parent
CONNECTIONS = 32
ROWS = (
    "floor-hello",
    "floor-db",
    "client_credentials token",
    "authorization-code exchange",
    "refresh",
    "introspection (opaque token)",
    "introspection (API key)",
    "userinfo",
)
FLOORS = ("floor-hello", "floor-db")
# What one single-use row may consume per server and pass, seeded up front (Bench tops up when a
# server turns out faster).
SINGLE_USE_RATE_GUESS = 300
# The Procfile's header limits (tests/security/test_header_limits.py): over each one a request must
# be refused before Django runs; just under, answered.
LIMIT_LINE, LIMIT_FIELDS, LIMIT_FIELD_SIZE = 8190, 100, 16384
GRACEFUL_SECONDS = 30  # the Procfile's --graceful-timeout
# Under ASGI, Django runs each request's sync code in a thread of its own (under gevent, a greenlet
# per client connection), so a connection kept (CONN_MAX_AGE) is not reused and piles up until
# PostgreSQL refuses everyone ("too many clients"): Django's documentation says to use
# CONN_MAX_AGE = 0 there, or its connection pool. Those candidates get the pool, through a settings
# module written into a temporary directory (this run's only); one runs without, connecting per request.
POOL_SETTINGS = "bench_servers_pool_settings"
POOL = {"min_size": 4, "max_size": 16}  # per worker process; 32 requests in flight over 2 workers
# PostgreSQL serves other work on this machine too. A server is killed at once when it holds more
# connections than any candidate needs (2 × 16 pooled, plus the harness's own), or when PostgreSQL
# as a whole comes within this many of max_connections, before anyone else is refused one.
OWN_CONNECTIONS_LIMIT = 48
CONNECTIONS_HEADROOM = 15


@dataclass(frozen=True)
class Server:
    name: str
    argv: tuple[str, ...]  # ${IDP_PORT} stands for the port
    # deploy/gunicorn.conf.py runs (it makes and owns PROMETHEUS_MULTIPROC_DIR); the others are
    # given a fresh directory, so the metrics middleware pays for file-backed counters as it does
    # under gunicorn, but nothing empties it at start or marks a dead worker's files.
    gunicorn_hooks: bool
    module: str = ""  # the import that tells whether the server is installed
    pool: bool = False  # Django's connection pool (POOL_SETTINGS), CONN_MAX_AGE 0
    conn_max_age: str = ""  # IDP_DB_CONN_MAX_AGE, when not the production value of server_env()


def procfile_gunicorn(*extra: str, app: str = "") -> tuple[str, ...]:
    """The Procfile's web command, optionally with another application object, plus flags."""
    argv = shlex.split(run.procfile_command("web"))
    if app:
        argv[argv.index("idp.wsgi")] = app
    return (*argv, *extra)


def candidates() -> list[Server]:
    granian = (str(BIN / "granian"), "--host", "127.0.0.1", "--port", "${IDP_PORT}", "--workers", "2")
    # HTTP/1.1 only, as the proxy speaks to its upstream; no websockets (none is served); SIGTERM
    # waits at most as long as gunicorn's --graceful-timeout for requests in flight.
    granian_common = ("--http", "1", "--no-ws", "--workers-kill-timeout", str(GRACEFUL_SECONDS))
    # --no-proxy-headers: uvicorn would otherwise take the client address from X-Forwarded-For
    # itself; under gunicorn Django sees the proxy's address and idp's middleware decides
    # (IDP_TRUSTED_PROXIES), which is what is measured for every server.
    uvicorn = (
        str(BIN / "uvicorn"),
        "idp.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        "${IDP_PORT}",
        "--workers",
        "2",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--lifespan",
        "off",
        "--no-access-log",
        "--no-server-header",
        "--no-proxy-headers",
        "--timeout-keep-alive",
        "5",
        "--timeout-graceful-shutdown",
        str(GRACEFUL_SECONDS),
    )
    return [
        Server("gunicorn sync", procfile_gunicorn(), gunicorn_hooks=True),
        # More sync workers than cores: a worker waiting on PostgreSQL (a commit's WAL flush) or
        # Redis leaves its core to another (gunicorn's docs suggest 2 × cores + 1).
        *(
            Server(
                f"gunicorn sync, {workers} workers", procfile_gunicorn("--workers", str(workers)), gunicorn_hooks=True
            )
            for workers in (3, 4, 5)
        ),
        *(
            Server(
                f"gunicorn gthread ×{threads}",
                procfile_gunicorn("--worker-class", "gthread", "--threads", str(threads), "--keep-alive", "5"),
                gunicorn_hooks=True,
            )
            for threads in (4, 8)
        ),
        # The same without keep-alive (gunicorn closes after every response, as sync does): what of
        # gthread's difference is the connection kept, and what is the threads.
        Server(
            "gunicorn gthread ×8, no keep-alive",
            procfile_gunicorn("--worker-class", "gthread", "--threads", "8", "--keep-alive", "0"),
            gunicorn_hooks=True,
        ),
        # A greenlet per client connection, each with its own Django connection: kept (CONN_MAX_AGE)
        # they outlive their greenlets and pile up as the ASGI servers' do, so the pool here too.
        Server(
            "gunicorn gevent",
            procfile_gunicorn("--worker-class", "gevent", "--worker-connections", "100", "--keep-alive", "5"),
            gunicorn_hooks=True,
            module="gevent",
            pool=True,
        ),
        # gunicorn 27's own asyncio worker: not in the issue's list, but it keeps gunicorn's hooks
        # and header limits. Django has no lifespan handler.
        Server(
            "gunicorn asgi",
            procfile_gunicorn(
                "--worker-class", "asgi", "--keep-alive", "5", "--asgi-lifespan", "off", app="idp.asgi:application"
            ),
            gunicorn_hooks=True,
            module="uvloop",
            pool=True,
        ),
        # --blocking-threads: the threads that run the WSGI application, each with its own Django
        # connection kept; granian's default (its backpressure / 2: 256 a worker here) let the
        # connections grow past what the guard allows. 8, as the larger gthread.
        Server(
            "granian wsgi ×8",
            (*granian, "--interface", "wsgi", "--blocking-threads", "8", *granian_common, "idp.wsgi:application"),
            gunicorn_hooks=False,
            module="granian",
        ),
        Server(
            "granian asgi",
            (*granian, "--interface", "asgi", *granian_common, "idp.asgi:application"),
            gunicorn_hooks=False,
            module="granian",
            pool=True,
        ),
        Server("uvicorn", uvicorn, gunicorn_hooks=False, module="uvicorn", pool=True),
        Server("uvicorn, no pool", uvicorn, gunicorn_hooks=False, module="uvicorn", conn_max_age="0"),
    ]


@dataclass
class Outcome:
    """One server's pass: its rows' results, or why it stopped."""

    server: Server
    pass_number: int
    results: dict[str, run.Result] = field(default_factory=dict)
    failure: str = ""
    limits: dict[str, str] = field(default_factory=dict)
    shutdown: str = ""
    server_header: str = ""
    rss_mib: list[float] = field(default_factory=list)
    db_sessions: int = 0  # PostgreSQL sessions opened while the rows ran
    requests: int = 0
    db_backends: int = 0  # PostgreSQL backends of the database after the rows
    db_peak: int = 0  # the most connections to the servers' database seen while it ran


class ServerBench(run.Bench):
    """run.Bench with the server to start given, not read from the Procfile."""

    def __init__(self, *, duration: int, warmup: int) -> None:
        super().__init__(duration=duration, warmup=warmup, runs=1, large=run.SMALL_SCALE)
        self.metrics_dir = ""
        self.background_log: Any = None
        self.guard: ConnectionGuard | None = None
        self.settings_dir = ""  # POOL_SETTINGS's directory, made when first needed
        self.requests_sent = 0  # by wrk, warm-ups included: what the PostgreSQL sessions are divided by

    def wrk(self, row: run.Row, connections: int, seconds: int) -> dict[str, Any]:
        done = super().wrk(row, connections, seconds)
        self.requests_sent += done["requests"]
        return done

    def start_background(self) -> None:
        self.background_log = self.server_log = (run.WORK / "background.log").open("wb")
        super().start_background()
        self.server_log = None

    def start(self, server: Server) -> None:
        self.port = run.free_port()
        self.command = shlex.join(server.argv)
        argv = [word.replace("${IDP_PORT}", str(self.port)) for word in server.argv]
        env = dict(self.env)
        if not server.gunicorn_hooks:
            self.metrics_dir = tempfile.mkdtemp(prefix="idp-metrics-")
            env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        if server.pool:
            if not self.settings_dir:
                self.settings_dir = write_pool_settings()
            env.update(
                {"DJANGO_SETTINGS_MODULE": POOL_SETTINGS, "PYTHONPATH": self.settings_dir, "IDP_DB_CONN_MAX_AGE": "0"}
            )
        if server.conn_max_age:
            env["IDP_DB_CONN_MAX_AGE"] = server.conn_max_age
        # One log, replaced by each start as bench.run's is (tens of MB a server).
        self.server_log = (run.WORK / "server.log").open("wb")
        self.server = subprocess.Popen(  # noqa: S603 - the candidates above, nothing from outside
            argv, cwd=run.ROOT, env=env, stdout=self.server_log, stderr=self.server_log, start_new_session=True
        )
        self.guard = ConnectionGuard(self.server.pid)
        self.guard.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise run.HarnessError(f"{server.name} exited with {self.server.returncode}:\n{self.log_tail()}")
            try:
                status, _ = self.request("GET", "/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise run.HarnessError(f"{server.name} did not answer /healthz within 60 s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, as a deployment stops it; then whatever of its session is left (its workers, if
        the master died first) is killed, so the next server has the cores to itself."""
        server, self.server = self.server, None
        if self.guard is not None:
            self.guard.stop()
        if server is not None:
            run.terminate(server, timeout=GRACEFUL_SECONDS + 10)
            try:
                os.killpg(server.pid, signal.SIGKILL)  # its own session (start_new_session): only its processes
            except (ProcessLookupError, PermissionError):
                pass
        if self.server_log is not None:
            self.server_log.close()
            self.server_log = None
        if self.metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            self.metrics_dir = ""

    def stop_background(self) -> None:
        if self.background is not None:
            run.terminate(self.background, timeout=10)
        if self.background_log is not None:
            self.background_log.close()
        if self.settings_dir:
            shutil.rmtree(self.settings_dir, ignore_errors=True)

    def log_tail(self) -> str:
        return run.tail(run.WORK / "server.log")

    # --- Probes -------------------------------------------------------------------------------
    def raw(self, path: str, headers: list[tuple[str, str]]) -> str:
        """One GET with exactly these header fields: the status and who answered ("app": the
        response has Django's X-Content-Type-Options, so the request reached Django; "server": refused
        before it), or "closed" when no answer came."""
        head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as connection:
            try:
                connection.sendall(head.encode() + b"Connection: close\r\n\r\n")
            except OSError:
                pass  # refused while still sending: its answer, if any, is read below
            reply = b""
            try:
                while b"\r\n\r\n" not in reply and (chunk := connection.recv(65536)):
                    reply += chunk
            except OSError:
                pass
        words = reply.split(b"\r\n", 1)[0].split()
        if len(words) < 2 or not reply.startswith(b"HTTP/"):
            return "closed"
        by = "app" if b"\r\nx-content-type-options:" in reply.split(b"\r\n\r\n", 1)[0].lower() else "server"
        return f"{words[1].decode()} {by}"

    def probe_limits(self) -> dict[str, str]:
        """The Procfile's limits, each just over and just under: what the server answers."""
        base = list(run.PROXY_HEADERS.items())

        def line(length: int) -> str:
            # "GET " + path + " HTTP/1.1" is the request line gunicorn measures.
            return "/healthz?pad=" + "a" * (length - len("GET /healthz?pad= HTTP/1.1"))

        def fields(count: int) -> list[tuple[str, str]]:
            return base + [(f"X-Pad-{i}", "1") for i in range(count - len(base) - 1)]  # + Connection

        def sized(size: int) -> list[tuple[str, str]]:
            return base + [("X-Pad", "a" * (size - len("X-Pad: ")))]

        return {
            f"line {LIMIT_LINE + 1:,}": self.raw(line(LIMIT_LINE + 1), base),
            f"line {LIMIT_LINE - 190:,}": self.raw(line(LIMIT_LINE - 190), base),
            f"{LIMIT_FIELDS + 1} fields": self.raw("/healthz", fields(LIMIT_FIELDS + 1)),
            f"{LIMIT_FIELDS} fields": self.raw("/healthz", fields(LIMIT_FIELDS)),
            f"field {LIMIT_FIELD_SIZE + 1:,} B": self.raw("/healthz", sized(LIMIT_FIELD_SIZE + 1)),
            f"field {LIMIT_FIELD_SIZE - 384:,} B": self.raw("/healthz", sized(LIMIT_FIELD_SIZE - 384)),
            "field 64 KiB": self.raw("/healthz", sized(65536)),
        }

    def server_header(self) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/healthz", headers=run.PROXY_HEADERS)
            return connection.getresponse().getheader("Server") or "none"
        finally:
            connection.close()

    def probe_shutdown(self) -> str:
        """SIGTERM while a client_credentials request's body is half sent (tests/ops/test_shutdown.py):
        a graceful server waits, answers it, then exits. Stops the server either way."""
        assert self.server is not None
        machine = self.seed["clients"]["machine"]
        body = urlencode({"grant_type": "client_credentials", "scope": "profile"}).encode()
        head = "".join(f"{name}: {value}\r\n" for name, value in run.PROXY_HEADERS.items())
        head = (
            f"POST /oauth/token/ HTTP/1.1\r\n{head}"
            f"Authorization: {run.basic_auth(machine['client_id'], machine['client_secret'])}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=GRACEFUL_SECONDS + 15) as in_flight:
            in_flight.sendall(head.encode() + body[: len(body) // 2])
            time.sleep(0.5)  # accepted and read by a worker
            signalled = time.monotonic()
            self.server.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            if self.server.poll() is not None:
                return f"exited {self.server.returncode} within 1 s of SIGTERM, the request unanswered"
            try:
                in_flight.sendall(body[len(body) // 2 :])
                reply = b""
                while chunk := in_flight.recv(65536):
                    reply += chunk
            except OSError as error:
                reply = f"({type(error).__name__})".encode()
        status = reply.split(b"\r\n", 1)[0].decode(errors="replace") or "connection closed, no answer"
        try:
            code = self.server.wait(timeout=GRACEFUL_SECONDS + 10)
        except subprocess.TimeoutExpired:
            return f"in flight: {status}; still running {GRACEFUL_SECONDS + 10} s after SIGTERM"
        return f"in flight: {status}; exited {code} {time.monotonic() - signalled:.1f} s after SIGTERM"

    def rss_mib(self) -> list[float]:
        """Resident memory of each process of the server: granian's and uvicorn's masters are
        Python processes too, gunicorn's is counted for comparison."""
        assert self.server is not None
        found = []
        for pid in (self.server.pid, *self.worker_pids()):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue  # exited meanwhile
            found += [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")]
        return found


class ConnectionGuard(run.Poller):
    """Watches PostgreSQL's client connections while a server runs and kills the server's session
    (its own process group) when it holds more than OWN_CONNECTIONS_LIMIT or leaves fewer than
    CONNECTIONS_HEADROOM free: a server that leaks connections fails its own rows instead of
    everyone's connections on this machine."""

    INTERVAL = 0.2
    QUERY = (
        "SELECT count(*), count(*) FILTER (WHERE datname = %s), current_setting('max_connections')::int "
        "FROM pg_stat_activity WHERE backend_type = 'client backend'"
    )

    def __init__(self, session: int) -> None:
        super().__init__()
        self.session = session
        self.peak = 0  # the most connections to the servers' database at one sample
        self.tripped = ""

    def _run(self) -> None:
        name = urlsplit(run.DATABASE_URL).path.lstrip("/")
        with psycopg.connect(run.DATABASE_URL, autocommit=True) as connection:
            while not self._stop.is_set():
                row = connection.execute(self.QUERY, [name]).fetchone()
                assert row is not None
                total, own, limit = (int(value) for value in row)
                own -= 1  # this connection
                self.peak = max(self.peak, own)
                if own > OWN_CONNECTIONS_LIMIT or total > limit - CONNECTIONS_HEADROOM:
                    self.tripped = (
                        f"killed by the harness: it held {own} PostgreSQL connections, {total} of {limit} in use"
                    )
                    run.log(f"  {self.tripped}")
                    try:
                        os.killpg(self.session, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    return
                self._stop.wait(self.INTERVAL)


def write_pool_settings() -> str:
    """idp.settings with Django's connection pool (POOL_SETTINGS), in a directory of its own (the
    servers write its bytecode there; WORK holds files only). Returns the directory."""
    directory = tempfile.mkdtemp(prefix="idp-servers-settings-")
    (Path(directory) / f"{POOL_SETTINGS}.py").write_text(
        '"""Written by bench.servers: idp.settings with Django\'s PostgreSQL connection pool."""\n\n'
        "from idp.settings import *  # noqa: F403\n"
        "from idp.settings import DATABASES\n\n"
        'DATABASES["default"]["OPTIONS"] = {**DATABASES["default"].get("OPTIONS", {}), '
        f'"pool": {POOL!r}}}\n'
    )
    return directory


def db_stats() -> tuple[int, int]:
    """(sessions ever opened, backends now) of the servers' database: a server that connects per
    request shows as many sessions as requests."""
    name = urlsplit(run.DATABASE_URL).path.lstrip("/")
    with psycopg.connect(run.DATABASE_URL, autocommit=True) as connection:
        row = connection.execute(
            "SELECT sessions, numbackends FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]) - 1  # this connection not counted


def measure_server(bench: ServerBench, server: Server, pass_number: int, rows: list[run.Row]) -> Outcome:
    outcome = Outcome(server, pass_number)
    try:
        bench.start(server)
        run.log(f"pass {pass_number}: {server.name} up on 127.0.0.1:{bench.port}")
        outcome.server_header = bench.server_header()
        sessions_before, _ = db_stats()
        sent_before = bench.requests_sent
        for row in rows:
            bench.check(row)
            result = bench.measure(row, CONNECTIONS, 1)
            outcome.results[row.name] = result
            run.log(
                f"  {row.name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
                f"{result.errors} errors, other CPU {result.other_cpu:.0%}"
            )
        sessions_after, outcome.db_backends = db_stats()
        outcome.db_sessions = sessions_after - sessions_before
        outcome.requests = bench.requests_sent - sent_before
        outcome.rss_mib = bench.rss_mib()
        outcome.limits = bench.probe_limits()
        outcome.shutdown = bench.probe_shutdown()
        run.log(f"  limits {outcome.limits}; shutdown: {outcome.shutdown}")
    except (run.HarnessError, OSError) as error:
        outcome.failure = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if bench.guard is not None and bench.guard.tripped:
            outcome.failure = f"{bench.guard.tripped}; {outcome.failure}"
        if cause := last_exception(run.WORK / "server.log"):
            outcome.failure += f" ({cause})"
        run.log(f"  {server.name} failed: {outcome.failure} (its log: {run.WORK / 'server.log'})")
    finally:
        if bench.guard is not None:
            outcome.db_peak = bench.guard.peak
        bench.stop()
    return outcome


def last_exception(log: Path) -> str:
    """The last line of the last traceback idp logged (the log is replaced by the next server)."""
    found = ""
    try:
        with log.open(errors="replace") as lines:
            for line in lines:
                if '"exception": ' in line:
                    try:
                        found = json.loads(line)["exception"].strip().splitlines()[-1]
                    except (ValueError, KeyError, IndexError):
                        continue
    except OSError:
        return ""
    return found[:300]


# --- Installing and locking --------------------------------------------------------------------
def install_missing(servers: list[Server]) -> None:
    modules = {server.module for server in servers if server.module}
    modules |= {"psycopg_pool" for server in servers if server.pool}
    missing = sorted(module for module in modules if importlib.util.find_spec(module) is None)
    if missing:
        run.step(
            f"install {', '.join(missing)} ({REQUIREMENTS.relative_to(run.ROOT)})",
            [run.PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            env=dict(os.environ),
        )


def take_lock() -> Any:
    """The benchmarks' lock (LOCK), held until the handle is closed or this process exits."""
    handle = LOCK.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        run.log(f"another benchmark holds {LOCK}; waiting for it")
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


# --- Report ---------------------------------------------------------------------------------------
def rows_index(
    outcomes: list[Outcome], name: str, baseline: str, pass_number: int | None = None, quiet: bool = False
) -> tuple[float, int] | None:
    """The geometric mean, over the rows that are not floors, of the server's req/s over the
    baseline's: how much faster on the work that matters, and over how many rows. Over the means of
    all passes; or within one pass (the two measured minutes apart, not a whole run apart); or over
    the quiet measurements only (other CPU at most bench.run's warning threshold), skipping a row
    either server has none of."""
    chosen = [o for o in outcomes if pass_number is None or o.pass_number == pass_number]
    ratios = []
    for row in ROWS:
        if row in FLOORS:
            continue
        mine, base = (mean_rps(chosen, who, row, quiet) for who in (name, baseline))
        if mine is None or base is None or base == 0:
            if quiet:
                continue
            return None
        ratios.append(mine / base)
    return (math.exp(statistics.mean(math.log(ratio) for ratio in ratios)), len(ratios)) if ratios else None


def cells(outcomes: list[Outcome], name: str, row: str, quiet: bool = False) -> list[run.Result]:
    found = [o.results[row] for o in outcomes if o.server.name == name and row in o.results]
    return [result for result in found if result.other_cpu <= run.OTHER_CPU_WARNING] if quiet else found


def mean_rps(outcomes: list[Outcome], name: str, row: str, quiet: bool = False) -> float | None:
    found = cells(outcomes, name, row, quiet)
    return statistics.mean(result.rps for result in found) if found else None


def report(servers: list[Server], outcomes: list[Outcome], bench: ServerBench, options: Any, elapsed: float) -> str:
    baseline = servers[0].name
    passes = max(o.pass_number for o in outcomes)
    other = max((r.other_cpu for o in outcomes for r in o.results.values()), default=0.0)
    others = [r.other_cpu for o in outcomes for r in o.results.values()]
    out = [
        "# bench.servers: which application server (issue 18 §3)",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; commit `{run.git_commit()}`",
        f"- Machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}; PostgreSQL, Redis and {run.wrk_version()} ({run.THREADS} threads) on the same "
        "cores as the server",
        f"- Each server: 2 worker processes, IDP_ENV=production, the environment of `make bench`; each row "
        f"{options.warmup} s warm-up then {options.duration} s measured at {CONNECTIONS} connections "
        f"(wrk keeps them open: HTTP/1.1 keep-alive), one run per pass; {passes} pass(es), the order reversed "
        "every other pass",
        f"- {run.SMALL_SCALE:,} access tokens and API keys stored; beat's periodic work (bench.background) beside "
        "every row",
        f"- Other CPU (processes not the benchmark's, bench.run's CpuSample): median {statistics.median(others):.0%}, "
        f"at most {other:.0%} of the machine during one measured run"
        if others
        else "- Other CPU: not measured",
        f"- Wall time: {elapsed / 60:.1f} min",
        "",
        f"## Mean of the passes: req/s (p99 ms); rows index = geometric mean of req/s over {baseline}'s, "
        "the six rows that are not floors; per pass: the same within each pass; quiet: over the measurements "
        f"with other CPU at most {run.OTHER_CPU_WARNING:.0%} only (in brackets: of how many rows)",
        "",
        "| server | " + " | ".join(ROWS) + " | rows index | per pass | quiet |",
        "|---|" + "---:|" * (len(ROWS) + 3),
    ]
    for server in servers:
        line = [server.name]
        for row in ROWS:
            found = cells(outcomes, server.name, row)
            if not found:
                line.append("—")
                continue
            errors = sum(result.errors for result in found)
            text = f"{statistics.mean(r.rps for r in found):,.0f} ({statistics.mean(r.p99_ms for r in found):.1f})"
            line.append(text + (f" **{errors} errors**" if errors else ""))
        index = rows_index(outcomes, server.name, baseline)
        line.append(f"**{index[0]:.2f}**" if index is not None else "—")
        per_pass = [rows_index(outcomes, server.name, baseline, number) for number in range(1, passes + 1)]
        line.append(" · ".join(f"{value[0]:.2f}" if value is not None else "—" for value in per_pass))
        quiet = rows_index(outcomes, server.name, baseline, quiet=True)
        line.append(f"{quiet[0]:.2f} ({quiet[1]})" if quiet is not None else "—")
        out.append("| " + " | ".join(line) + " |")
    out += [
        "",
        "## Every measurement",
        "",
        "| server | pass | row | req/s | p50 ms | p99 ms | errors | other CPU |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for outcome in sorted(outcomes, key=lambda o: ([s.name for s in servers].index(o.server.name), o.pass_number)):
        for row, result in outcome.results.items():
            out.append(
                f"| {outcome.server.name} | {outcome.pass_number} | {row} | {result.rps:,.0f} | {result.p50_ms:.1f} | "
                f"{result.p99_ms:.1f} | {result.errors} | {result.other_cpu:.0%} |"
            )
        if outcome.failure:
            out.append(f"| {outcome.server.name} | {outcome.pass_number} | **failed** | {outcome.failure} | | | | |")
    out += [
        "",
        "## The servers: command, probes, memory, PostgreSQL sessions",
        "",
        "Limits: the status of a request just over and just under each of the Procfile's header limits "
        f"(request line {LIMIT_LINE}, {LIMIT_FIELDS} fields, field {LIMIT_FIELD_SIZE} B) and who answered it: "
        "`server` refused it before Django ran, `app` is Django's answer (idp refuses a query string this long "
        "itself: 400 app), `closed` no answer. "
        "Shutdown: SIGTERM while a token request's body is half sent. Sessions: PostgreSQL sessions the database "
        "opened during the rows, per 1,000 requests (a server whose request threads do not keep Django's "
        "connection opens one per request). Memory: VmRSS of the master and each worker after the rows.",
        "",
    ]
    for server in servers:
        mine = [o for o in outcomes if o.server.name == server.name and not o.failure]
        out += [f"### {server.name}", "", f"`{shlex.join(server.argv)}`", ""]
        if server.pool:
            out += [f"With Django's connection pool ({POOL} per worker) and IDP_DB_CONN_MAX_AGE=0.", ""]
        elif server.conn_max_age:
            out += [f"With IDP_DB_CONN_MAX_AGE={server.conn_max_age}, no pool.", ""]
        if not mine:
            failures = "; ".join(dict.fromkeys(o.failure for o in outcomes if o.server.name == server.name))
            out += [f"No pass completed: {failures}", ""]
            continue
        first = mine[0]
        limits = ", ".join(f"{what}: {status}" for what, status in first.limits.items())
        per_thousand = [1000 * o.db_sessions / o.requests for o in mine if o.requests]
        out += [
            f"- Limits: {limits}",
            f"- Shutdown: {'; '.join(dict.fromkeys(o.shutdown for o in mine))}",
            f"- Server header: {first.server_header}",
            f"- Memory: {', '.join(f'{mib:.0f}' for mib in first.rss_mib)} MiB",
            f"- PostgreSQL: {', '.join(f'{value:.1f}' for value in per_thousand)} sessions per 1,000 requests; "
            f"{', '.join(str(o.db_backends) for o in mine)} backends open after the rows, at most "
            f"{', '.join(str(o.db_peak) for o in mine)} while it ran (the harness's own included)",
            f"- Metrics hooks: {'deploy/gunicorn.conf.py' if server.gunicorn_hooks else 'none (a fresh directory)'}",
            "",
        ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="measured seconds per row (wrk: whole seconds)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each row (0: none)")
    parser.add_argument("--passes", type=int, default=2, help="passes over the servers, every other one reversed")
    parser.add_argument("--only", action="append", default=[], help="a server's name (repeat for several)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the report's file (default: %(default)s)")
    options = parser.parse_args()
    servers = candidates()
    if options.only:
        unknown = set(options.only) - {server.name for server in servers}
        if unknown:
            parser.error(f"unknown server(s) {', '.join(sorted(unknown))}; known: {[s.name for s in servers]}")
        servers = [server for server in servers if server.name in options.only]
    if options.duration <= 0 or options.warmup < 0 or options.passes < 1:
        parser.error("--duration must be above 0, --warmup at least 0, --passes at least 1")
    if shutil.which("wrk") is None:
        print("bench.servers needs wrk (apt-get install wrk)", file=sys.stderr)
        return 1
    # SIGTERM as Ctrl-C: the finally below stops the server and the background loop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    lock = take_lock()
    bench = None
    outcomes: list[Outcome] = []
    try:
        install_missing(servers)
        bench = ServerBench(duration=options.duration, warmup=options.warmup)
        bench.prepare()
        bench.seed_small()
        per_row = math.ceil(
            SINGLE_USE_RATE_GUESS * (options.warmup + options.duration) * len(servers) * options.passes * 1.5
        )
        bench.extend(run.SMALL_SCALE, per_row, f"seed {per_row:,} codes and refreshes")
        bench.start_background()
        rows = [row for row in run.rows(bench.seed) if row.name in ROWS]
        for pass_number in range(1, options.passes + 1):
            order = servers if pass_number % 2 else list(reversed(servers))
            for server in order:
                outcomes.append(measure_server(bench, server, pass_number, rows))
        text = report(servers, outcomes, bench, options, time.monotonic() - started)
    except run.HarnessError as error:
        print(f"bench.servers: {error}", file=sys.stderr)
        return 1
    finally:
        if bench is not None:
            bench.stop()
            bench.stop_background()
        lock.close()
    print(text)
    partial = options.out.with_suffix(".md.tmp")
    partial.write_text(text)
    partial.replace(options.out)
    run.log(f"written to {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
