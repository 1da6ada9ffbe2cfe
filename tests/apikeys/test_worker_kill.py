"""A real Celery worker killed in the middle of a rotation neither loses it nor makes it twice.

The worker is a real ``celery worker`` process (prefork, one pool process) on the test database and
the test Redis broker, consuming a queue of its own. tests.apikeys.rotation_pause stops its first
rotation inside the transaction, after the successor row is written; the test kills that pool
process with SIGKILL. acks_late + reject_on_worker_lost make the worker's main process requeue the
message, a new pool process runs the task again, and the rotation happens exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import kombu
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

import audit
from accounts.selectors import Caller
from apikeys.models import ApiKey
from apikeys.services import apikey_create, apikeys_rotate_due
from apikeys.tasks import rotate_due_apikeys
from audit.models import AuditEvent
from idp.celery import app as celery_app
from tests.apikeys.test_rotation import queued_notifications, remove_queued_notifications
from tests.factories import make_user

# Read by tests.apikeys.rotation_pause in the worker (not imported here: its receiver would then be
# connected in the test process too).
PAUSE_FILE_VARIABLE = "IDP_TEST_ROTATION_PAUSE_FILE"
# A deadline for each wait, never a measurement: a slow machine only makes the test slower.
WAIT_SECONDS = 90


def worker_database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test_<name>), for the worker."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = quote(db["HOST"] or "localhost", safe="")  # a socket directory is percent-encoded
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{credentials}{'@' if credentials else ''}{host}{port}/{quote(db['NAME'], safe='')}"


@dataclass
class Worker:
    process: subprocess.Popen
    queue: str
    log_path: Path
    pause_file: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited ({self.process.returncode}) waiting for {what}:\n{self.log()}")
            time.sleep(0.2)
        pytest.fail(f"no {what} within {WAIT_SECONDS} s; the worker's log:\n{self.log()}")

    def paused_pid(self) -> int | None:
        return int(self.pause_file.read_text()) if self.pause_file.exists() else None


def stop(process: subprocess.Popen) -> None:
    """Warm shutdown; if that hangs (a pool process still paused), SIGKILL the worker's own process
    group, pool processes included. Only while it is unreaped, so its id cannot have been reused."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: start_new_session below
        process.wait(timeout=30)


def delete_queue(name: str) -> None:
    with celery_app.connection_for_write() as conn:
        queue = kombu.Queue(name, kombu.Exchange(name, type="direct"), routing_key=name)(conn.default_channel)
        queue.declare()  # binds it in this channel, so delete() also removes the binding
        queue.purge()
        queue.delete()


def worker_launch(queue: str, log_path: Path, pause_file: Path, *, include: str, env: dict[str, str]) -> Worker:
    """A real prefork worker on the test database and Redis, consuming only `queue`, with the
    `include` module's tasks loaded and `env` added to its environment; ready on return."""
    environment = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "IDP_ENV": "development",
        "IDP_DB_CONN_MAX_AGE": "0",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        **env,
    }
    command = [
        str(Path(settings.BASE_DIR) / ".venv" / "bin" / "celery"),
        "-A",
        "idp",
        "worker",
        "--pool=prefork",
        "--concurrency=1",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-Q",
        queue,
        "-n",
        f"{queue}-{uuid.uuid4().hex[:6]}@%h",  # two workers of one queue, one after the other, differ
        "-I",
        include,
        "--loglevel=INFO",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - the project's own celery, fixed arguments
            command,
            cwd=settings.BASE_DIR,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = Worker(process=process, queue=queue, log_path=log_path, pause_file=pause_file)
    try:
        started.wait_for(lambda: f"{queue}-" in started.log() and " ready." in started.log(), "ready worker")
    except BaseException:
        stop(process)
        raise
    return started


@pytest.fixture
def worker(transactional_db, tmp_path) -> Iterator[Worker]:
    """A real worker on the test database, consuming only its own queue; stopped afterwards."""
    queue = f"test-rotation-kill-{uuid.uuid4().hex[:12]}"
    pause_file = tmp_path / "paused-pid"
    started = worker_launch(
        queue,
        tmp_path / "worker.log",
        pause_file,
        include="tests.apikeys.rotation_pause",
        env={PAUSE_FILE_VARIABLE: str(pause_file)},
    )
    try:
        yield started
    finally:
        stop(started.process)
        delete_queue(queue)


def test_a_worker_killed_mid_rotation_neither_loses_nor_doubles_it(worker):
    owner = make_user()
    key = apikey_create(
        name="nightly-export",
        user=owner,
        scopes=["profile"],
        rotate_every=timedelta(hours=1),
        now=datetime.now(UTC) - timedelta(hours=2),
        caller=Caller.operator(audit.Actor.user(owner)),
    ).key
    already_queued = set(queued_notifications())
    try:
        sent = rotate_due_apikeys.apply_async(queue=worker.queue)

        paused_pid = worker.wait_for(worker.paused_pid, "rotation paused in its transaction")
        assert paused_pid != worker.process.pid, "the task runs in a pool process, not the worker's main process"
        assert not ApiKey.objects.filter(rotated_from=key).exists(), "the successor row is not committed yet"
        # Another worker sweeping now skips the key the paused rotation holds locked.
        assert apikeys_rotate_due(now=timezone.now()) == 0

        os.kill(paused_pid, signal.SIGKILL)

        finished = f"Task {rotate_due_apikeys.name}[{sent.id}] succeeded"
        log = worker.wait_for(lambda: finished in worker.log() and worker.log(), "redelivered task succeeding")
        [outcome] = [line for line in log.splitlines() if finished in line]
        # The worker logs JSON lines (idp.ops.logs); Celery's message is the event, ending in the result.
        assert json.loads(outcome)["event"].endswith(": 1"), "the second delivery made the rotation"
        assert "WorkerLostError" in log, "the first delivery died with its pool process"
        assert f"pid:{paused_pid} exited with 'signal 9 (SIGKILL)'" in log

        assert ApiKey.objects.count() == 2, "the killed attempt's successor rolled back"
        successor = ApiKey.objects.get(rotated_from=key)
        [rotated] = AuditEvent.objects.filter(action="apikey.rotated", target_id=key.public_id)
        assert rotated.data["successor"] == successor.public_id
        assert ApiKey.objects.get(pk=key.pk).grace_ends_at is not None
        assert successor.pending_secret, "the owner can reveal the new key"
        new = [key_id for raw, key_id in queued_notifications().items() if raw not in already_queued]
        assert new.count(successor.pk) == 1, "the owner is emailed once"
    finally:
        remove_queued_notifications(set(ApiKey.objects.values_list("pk", flat=True)))
