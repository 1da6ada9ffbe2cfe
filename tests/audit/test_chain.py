"""The hash chain as record() builds it: each event linked to the one before, linear under
concurrent writers, and rows the model refuses to change."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

import audit
from audit import chain
from audit.models import AuditCheckpoint, AuditEvent
from tests.factories import make_user

THREADS = 16
RECORDS_PER_THREAD = 20
LOCK_WAIT_DEADLINE_SECONDS = 30


def record_one(label: str, **data: object) -> AuditEvent:
    audit.record(audit.Action.ADMIN_CHANGED, actor=audit.Actor.system("tests"), data={"label": label, **data})
    return AuditEvent.objects.order_by("-id").first()


def chain_events() -> list[dict]:
    return [event.as_chain_event() for event in AuditEvent.objects.order_by("id")]


def test_each_event_links_to_the_one_before(db):
    make_user(username="carol")  # a real service's event among them
    record_one("plain")
    record_one("unicode", name="Zoë 名前 \u2028", nested={"b": [1, 2.5, None, True], "a": "x"})
    record_one("when", at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))

    events = chain_events()
    previous = chain.GENESIS
    for event in events:
        assert event["hash"] == chain.link(previous, event)
        previous = event["hash"]
    *_, final = chain.walk(events)
    assert final.broken is None
    assert (final.count, final.head) == (len(events), previous)


def test_walk_names_the_first_event_whose_content_changed(db):
    for label in ("a", "b", "c", "d"):
        record_one(label)
    events = chain_events()
    events[2]["data"] = {"label": "changed"}

    *_, final = chain.walk(events)

    assert final.broken == chain.Break(
        position=3, event_id=events[2]["id"], reason="its hash does not match its content and the hash before it"
    )
    assert final.count == 2


def test_concurrent_writers_keep_the_chain_linear(transactional_db):
    barrier = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def write(thread: int) -> None:
        try:
            barrier.wait()
            for number in range(RECORDS_PER_THREAD):
                with transaction.atomic():
                    audit.record(
                        audit.Action.ADMIN_CHANGED,
                        actor=audit.Actor.system(f"writer-{thread}"),
                        data={"thread": thread, "number": number},
                    )
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)
        finally:
            connections.close_all()

    before = AuditEvent.objects.count()
    writers = [threading.Thread(target=write, args=(thread,)) for thread in range(THREADS)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    assert failures == []
    events = chain_events()
    assert len(events) == before + THREADS * RECORDS_PER_THREAD
    written = {(event["data"]["thread"], event["data"]["number"]) for event in events[before:]}
    assert written == {(thread, number) for thread in range(THREADS) for number in range(RECORDS_PER_THREAD)}
    # Linear: in id order every event links to the one right before it, so no two share a parent.
    *_, final = chain.walk(events)
    assert final.broken is None
    assert final.count == len(events)
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().startswith(f"ok: {len(events)} events, head {events[-1]['hash']}\n")


def test_a_writer_waits_for_the_chain_lock_and_links_to_the_holders_event(transactional_db):
    second: list[AuditEvent] = []

    def write_second() -> None:
        try:
            second.append(record_one("second"))
        finally:
            connections.close_all()

    with transaction.atomic():
        first = record_one("first")  # holds the chain lock until this block commits
        writer = threading.Thread(target=write_second)
        writer.start()
        waiting = 0
        deadline = time.monotonic() + LOCK_WAIT_DEADLINE_SECONDS
        while not waiting and time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_locks JOIN pg_database ON pg_database.oid = pg_locks.database "
                    "WHERE datname = current_database() AND locktype = 'advisory' AND NOT granted AND objid = %s",
                    [audit.CHAIN_LOCK],
                )
                waiting = cursor.fetchone()[0]
        assert waiting == 1, "the second writer queues on the chain lock"
        assert writer.is_alive()
    writer.join()

    assert second[0].pk > first.pk
    assert second[0].hash == chain.link(first.hash, second[0].as_chain_event())


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda row: row.save(), id="save-after-create"),
        pytest.param(lambda row: row.delete(), id="delete"),
        pytest.param(
            lambda row: type(row).objects.filter(pk=row.pk).update(created_at=row.created_at), id="queryset-update"
        ),
        pytest.param(lambda row: type(row).objects.filter(pk=row.pk).delete(), id="queryset-delete"),
    ],
)
@pytest.mark.parametrize("model", ["event", "checkpoint"])
def test_the_models_refuse_to_change_rows(db, model, change):
    event = record_one("kept")
    row = event
    if model == "checkpoint":
        row = audit.checkpoint_store(head=audit.chain_head(), jws="x.y.z", kid="k", created_at=event.created_at)
    before = type(row).objects.filter(pk=row.pk).values().get()

    with pytest.raises(ValueError, match="are append-only"):
        change(row)

    assert type(row).objects.filter(pk=row.pk).values().get() == before
    assert AuditCheckpoint.objects.count() == (1 if model == "checkpoint" else 0)
