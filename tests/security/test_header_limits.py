"""Header size limits belong to the server in front of Django: gunicorn refuses an over-long request
line or header field with a 400 before the application runs. Its limits are set explicitly wherever
it is launched (image, compose file, Procfile), so the policy is read there and not in gunicorn's
defaults, and all three launch it with the same limits."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.security import responses
from tests.test_docker_compose import dockerfile_cmd, service

REPO = Path(__file__).resolve().parent.parent.parent

LIMITS = {
    "--limit-request-line": "8190",  # a URL with a full authorization request and a 4 KB parameter
    "--limit-request-fields": "100",
    "--limit-request-field_size": "16384",  # a long bearer token fits; a 64 KB header does not
}


def procfile_web() -> list[str]:
    (line,) = [line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("web:")]
    return shlex.split(line.removeprefix("web:"))


COMMANDS = {
    "Dockerfile CMD": dockerfile_cmd,
    "docker-compose web": lambda: service("web")["command"],
    "Procfile web": procfile_web,
}


@pytest.mark.parametrize("where", COMMANDS)
@pytest.mark.parametrize("flag", LIMITS)
def test_gunicorn_runs_with_explicit_header_limits(where, flag):
    command = COMMANDS[where]()
    assert "gunicorn" in command[0]
    assert command.count(flag) == 1, f"{flag} missing from {where}"
    assert command[command.index(flag) + 1] == LIMITS[flag]


@pytest.fixture
def gunicorn_server(db) -> Iterator[str]:
    """gunicorn started as the Procfile starts it, on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [word.replace("${IDP_PORT}", str(port)) for word in procfile_web()]
    command[0] = str(REPO / command[0])
    server = subprocess.Popen(
        command, cwd=REPO, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # The first request to a fresh worker loads the whole URL conf: on a busy CI machine it
                # can take seconds, so a slow answer is waited for like a refused connection.
                requests.get(f"http://127.0.0.1:{port}/oauth/no-such-endpoint/", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_gunicorn_refuses_oversized_headers_and_sends_no_server_header(gunicorn_server):
    answers = {
        "64 KB Authorization": requests.get(
            f"{gunicorn_server}/oauth/userinfo/", headers={"Authorization": "Bearer " + "A" * 64 * 1024}, timeout=10
        ),
        "10 KB request line": requests.get(f"{gunicorn_server}/oauth/authorize/?state=" + "A" * 10 * 1024, timeout=10),
        "101 header fields": requests.get(
            f"{gunicorn_server}/.well-known/jwks.json", headers={f"X-F{n}": "x" for n in range(101)}, timeout=10
        ),
    }
    for what, reply in answers.items():
        assert reply.status_code in (400, 414, 431), (what, reply.status_code)
        assert responses.leaks(status=reply.status_code, headers=reply.headers, body=reply.content) == [], what
        assert "Server" not in reply.headers, what
    fits = requests.get(
        f"{gunicorn_server}/oauth/no-such-endpoint/", headers={"Authorization": "Bearer " + "A" * 8 * 1024}, timeout=10
    )
    assert fits.status_code == 404, "an 8 KB header is within the limits and reaches Django"
    assert "Server" not in fits.headers, "no Server header names the software behind the provider"
