"""Tasks for the real Celery workers of the operations tests, loaded into them with
``celery worker -I tests.ops.celery_tasks``: a task that fails, one that retries once, and one that
holds its worker until the test releases it. Each start of a held task appends a line to a file,
so a test can count how often a message ran."""

from __future__ import annotations

import time
from pathlib import Path

from celery import shared_task

# A deadline, never a measurement: a held task the test forgot to release ends by itself.
HOLD_SECONDS = 120


@shared_task(acks_late=True)
def fail_always() -> None:
    raise RuntimeError("this task fails on purpose")


@shared_task(bind=True, acks_late=True, max_retries=1)
def retry_once(self) -> str:  # type: ignore[no-untyped-def]
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "retried"


@shared_task(acks_late=True, reject_on_worker_lost=True)
def hold_until_released(directory: str, name: str) -> str:
    """Started: appends to <name>.runs; then waits for <name>.release; then writes <name>.finished."""
    folder = Path(directory)
    with open(folder / f"{name}.runs", "a") as runs:
        runs.write("started\n")
    deadline = time.monotonic() + HOLD_SECONDS
    while not (folder / f"{name}.release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (folder / f"{name}.finished").write_text("finished")
    return name
