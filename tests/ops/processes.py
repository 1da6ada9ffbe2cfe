"""Real processes for the operations tests, on the test database and the test Redis: gunicorn
started exactly as the Procfile's web line starts it, and Celery workers started as
tests/apikeys/test_worker_kill starts its own (prefork, a queue of their own), with their own
/metrics when given IDP_WORKER_METRICS_PORT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from tests.apikeys.test_worker_kill import WAIT_SECONDS, Worker, worker_database_url, worker_launch
from tests.security.test_header_limits import REPO, procfile_web

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def wait_for(condition: Callable[[], Any], what: str, *, log: Callable[[], str] = lambda: "") -> Any:
    """A deadline for a wait, never a measurement: a slow machine only makes the test slower."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"no {what} within {WAIT_SECONDS} s\n{log()}")


def samples_of(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(base_url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = requests.get(f"{base_url}/metrics", headers=headers, timeout=30)
    assert reply.status_code == 200, reply.status_code
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples_of(reply.text)


# --- gunicorn ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def gunicorn_start(log_path: Path, **env: str) -> Server:
    """gunicorn as the Procfile's web line starts it (its config file included), on a free loopback
    port and the test database; answering once this returns."""
    port = free_port()
    command = [word.replace("${IDP_PORT}", str(port)) for word in procfile_web()]
    command[0] = str(REPO / command[0])
    environment = {**os.environ, "DATABASE_URL": worker_database_url(), "IDP_DB_CONN_MAX_AGE": "0", **env}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process=process, port=port, log_path=log_path)

    def answers() -> bool:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited ({process.returncode}) while starting:\n{server.log()}")
        try:
            # Not /healthz: tests count those. The first request loads the URL conf, which can take
            # seconds on a busy machine, so a slow answer is waited for like a refused connection.
            requests.get(f"{server.url}/oauth/no-such-endpoint/", timeout=10)
        except (requests.ConnectionError, requests.Timeout):
            return False
        return True

    wait_for(answers, "answer from gunicorn", log=server.log)
    return server


@contextmanager
def held_request(server: Server, head: str, body: bytes) -> Iterator[list[bytes]]:
    """A request (`head`: request line and headers, without the blank line) whose body's end
    arrives only when the block ends: one gunicorn worker reads it meanwhile, so every other
    request of the block is answered by another worker. The yielded list holds the raw reply
    once the block has ended."""
    reply: list[bytes] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as held:
        held.sendall(f"{head}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:10])
        wait_for(lambda: accept_queue_length(server.port) == 0, "a worker accepting the held request")
        yield reply
        held.sendall(body[10:])
        received = b""
        while chunk := held.recv(65536):
            received += chunk
        reply.append(received)


def gunicorn_stop(server: Server) -> None:
    """Graceful stop; SIGKILL to its own process group if that hangs (only while unreaped)."""
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)


def accept_queue_length(port: int) -> int:
    """Connections waiting in the kernel for a gunicorn worker to accept them (Linux: the rx_queue
    of the listening socket in /proc/net/tcp)."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # LISTEN
            return int(fields[4].split(":")[1], 16)
    return 0


# --- Celery -----------------------------------------------------------------------------------------


def queue_name(purpose: str) -> str:
    return f"test-ops-{purpose}-{uuid.uuid4().hex[:12]}"


def worker_start(queue: str, log_path: Path, pause_file: Path, **env: str) -> Worker:
    """A real worker consuming only `queue`, with tests.ops.celery_tasks loaded and `env` added to
    its environment; ready on return."""
    return worker_launch(queue, log_path, pause_file, include="tests.ops.celery_tasks", env=env)


def pool_processes(worker: Worker) -> set[int]:
    """The worker's prefork pool processes: the children of its main process (Linux /proc)."""
    threads = Path(f"/proc/{worker.process.pid}/task").iterdir()  # a child belongs to the thread that forked it
    return {int(child) for thread in threads for child in (thread / "children").read_text().split()}


def broker_queue_length(queue: str) -> int:
    with redis.Redis.from_url(settings.CELERY_BROKER_URL) as broker:
        return broker.llen(queue)


def broker_unacked_mentions(task_id: str) -> bool:
    """Whether a message of this task is held unacknowledged by some worker (kombu's Redis transport
    keeps them in the "unacked" hash until acked or restored)."""
    with redis.Redis.from_url(settings.CELERY_BROKER_URL) as broker:
        return any(task_id.encode() in raw for raw in broker.hvals("unacked"))
