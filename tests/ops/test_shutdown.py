"""Graceful shutdown with real processes: SIGTERM to gunicorn (as the Procfile starts it) lets a
request already in flight finish before the server exits cleanly; SIGTERM to a Celery worker lets
the task it runs finish, and a message it had not started goes back to the broker for the next
worker, run once."""

from __future__ import annotations

import base64
import json
import signal
import socket
from urllib.parse import quote, urlencode

import pytest

from tests.apikeys.test_worker_kill import delete_queue, stop
from tests.factories import make_client
from tests.ops.celery_tasks import hold_until_released
from tests.ops.processes import (
    accept_queue_length,
    broker_queue_length,
    broker_unacked_mentions,
    gunicorn_start,
    gunicorn_stop,
    queue_name,
    wait_for,
    worker_start,
)


def test_sigterm_lets_gunicorn_finish_the_request_in_flight_then_exit(transactional_db, signing_key, tmp_path):
    machine = make_client(grant="client_credentials", redirect_uris=[], scopes=["profile"])
    server = gunicorn_start(tmp_path / "gunicorn.log")
    try:
        credentials = f"{quote(machine.application.client_id, safe='')}:{quote(machine.client_secret, safe='')}"
        body = urlencode({"grant_type": "client_credentials", "scope": "profile"}).encode()
        head = (
            f"POST /oauth/token/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Basic {base64.b64encode(credentials.encode()).decode()}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as in_flight:
            in_flight.sendall(head.encode() + body[: len(body) // 2])
            # Accepted by a worker, not waiting in the kernel's queue (which closes with the listener).
            wait_for(lambda: accept_queue_length(server.port) == 0, "a worker accepting the request")

            server.process.send_signal(signal.SIGTERM)
            # The shutdown is under way while the body is still on its way: the idle worker has gone.
            wait_for(lambda: "Worker exiting" in server.log(), "the idle worker exiting", log=server.log)
            assert server.process.poll() is None, "the server waits for the request in flight"

            in_flight.sendall(body[len(body) // 2 :])
            reply = b""
            while chunk := in_flight.recv(65536):
                reply += chunk
        server.process.wait(timeout=45)
    finally:
        gunicorn_stop(server)

    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", reply[:300]
    token = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert token["token_type"] == "Bearer" and token["access_token"], "the whole response arrived"
    assert server.process.returncode == 0, server.log()
    assert "Shutting down: Master" in server.log()


@pytest.fixture
def queue(transactional_db):
    name = queue_name("shutdown")
    try:
        yield name
    finally:
        delete_queue(name)


def runs(tmp_path, name: str) -> int:
    path = tmp_path / f"{name}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigterm_lets_a_celery_worker_finish_its_task_and_return_the_rest(queue, tmp_path):
    first_worker = worker_start(queue, tmp_path / "first-worker.log", tmp_path / "unused")
    try:
        running = hold_until_released.apply_async(args=[str(tmp_path), "running"], queue=queue)
        waiting = hold_until_released.apply_async(args=[str(tmp_path), "waiting"], queue=queue)
        first_worker.wait_for(lambda: runs(tmp_path, "running") == 1, "the first task running")

        first_worker.process.send_signal(signal.SIGTERM)
        first_worker.wait_for(lambda: "Warm shutdown" in first_worker.log(), "a warm shutdown starting")
        assert first_worker.process.poll() is None, "the worker waits for its running task"

        (tmp_path / "running.release").touch()
        first_worker.process.wait(timeout=60)
        log = first_worker.log()
    finally:
        stop(first_worker.process)

    assert first_worker.process.returncode == 0, log
    assert f"Task {hold_until_released.name}[{running.id}] succeeded" in log
    assert (tmp_path / "running.finished").exists(), "the running task finished its work"
    assert runs(tmp_path, "waiting") == 0, "the task not yet started was left alone"
    assert broker_queue_length(queue) == 1, "and is back in the queue"
    assert not broker_unacked_mentions(waiting.id), "held by nobody"
    assert not broker_unacked_mentions(running.id), "the finished task was acknowledged"

    (tmp_path / "waiting.release").touch()
    next_worker = worker_start(queue, tmp_path / "next-worker.log", tmp_path / "unused")
    try:
        next_worker.wait_for(lambda: (tmp_path / "waiting.finished").exists(), "the next worker running it")
        next_worker.wait_for(
            lambda: f"Task {hold_until_released.name}[{waiting.id}] succeeded" in next_worker.log(), "its success"
        )
    finally:
        stop(next_worker.process)
    assert (runs(tmp_path, "running"), runs(tmp_path, "waiting")) == (1, 1), "each ran exactly once"
