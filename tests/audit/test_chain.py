"""The hash chain as record() and the sealer build it: each event linked to the one before,
writers that never wait for each other, one linear chain under concurrent writers and sealers, a
late commit sealed later and never skipped, and rows the model refuses to change."""

from __future__ import annotations

import threading
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
SEALERS = 2
WAIT_SECONDS = 30  # a deadline for a thread that should already be there, not a measurement


def record_one(label: str, **data: object) -> AuditEvent:
    audit.record(audit.Action.ADMIN_CHANGED, actor=audit.Actor.system("tests"), data={"label": label, **data})
    return AuditEvent.objects.order_by("-id").first()


def chain_events() -> list[dict]:
    """Seal what is committed, then the chain in its order."""
    audit.seal()
    return [event.as_chain_event() for event in AuditEvent.objects.filter(position__isnull=False).order_by("position")]


def lock_waits() -> int:
    """Locks some session of this database is waiting for, of any kind."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks JOIN pg_database ON pg_database.oid = pg_locks.database "
            "WHERE datname = current_database() AND NOT granted"
        )
        return cursor.fetchone()[0]


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


def test_record_inserts_the_event_unsealed_and_the_sealer_links_it(db):
    event = record_one("waiting")
    assert (event.position, event.hash) == (None, None)
    assert audit.chain_head().last_event_id != event.pk, "not in the chain before it is sealed"

    assert audit.seal() >= 1

    event.refresh_from_db()
    head = audit.chain_head()
    assert (head.count, head.head, head.last_event_id) == (event.position, event.hash, event.pk)
    assert audit.seal() == 0, "nothing is sealed twice"


def test_concurrent_writers_and_sealers_build_one_linear_chain(transactional_db):
    """Writers in their own transactions while two sealers run the whole time: every event is
    sealed exactly once, positions run 1..N without a gap, every link holds."""
    barrier = threading.Barrier(THREADS + SEALERS)
    writing = threading.Semaphore(0)
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
            writing.release()
            connections.close_all()

    def seal(done: threading.Event) -> None:
        try:
            barrier.wait()
            while not done.is_set():
                audit.seal(batch=7)  # small batches: many transactions interleave
        except BaseException as error:  # noqa: BLE001
            failures.append(error)
        finally:
            connections.close_all()

    before = AuditEvent.objects.count()
    done = threading.Event()
    threads = [threading.Thread(target=write, args=(thread,)) for thread in range(THREADS)]
    threads += [threading.Thread(target=seal, args=(done,)) for _ in range(SEALERS)]
    for thread in threads:
        thread.start()
    for _ in range(THREADS):
        assert writing.acquire(timeout=WAIT_SECONDS * 10)
    done.set()
    for thread in threads:
        thread.join()

    assert failures == []
    events = chain_events()
    assert len(events) == AuditEvent.objects.count() == before + THREADS * RECORDS_PER_THREAD
    assert list(AuditEvent.objects.order_by("position").values_list("position", flat=True)) == list(
        range(1, len(events) + 1)
    )
    written = [(event["data"]["thread"], event["data"]["number"]) for event in events if "thread" in event["data"]]
    assert sorted(written) == [(thread, number) for thread in range(THREADS) for number in range(RECORDS_PER_THREAD)]
    for thread in range(THREADS):  # one writer's events keep their order: each committed before the next began
        assert [number for writer, number in written if writer == thread] == list(range(RECORDS_PER_THREAD))
    *_, final = chain.walk(events)
    assert final.broken is None
    assert final.count == len(events)
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().startswith(f"ok: {len(events)} events, head {events[-1]['hash']}\n")


def test_writers_never_wait_for_each_other_and_a_late_commit_is_sealed_later(transactional_db):
    """A transaction holding an uncommitted event (the lower id) does not hold up another writer;
    the other event is sealed first, and the late one at the next position once it commits."""
    recorded, release, finished = threading.Event(), threading.Event(), threading.Event()
    early: list[AuditEvent] = []

    def slow_transaction() -> None:
        try:
            with transaction.atomic():
                early.append(record_one("early id, late commit"))
                recorded.set()
                release.wait(WAIT_SECONDS)
        finally:
            finished.set()
            connections.close_all()

    writer = threading.Thread(target=slow_transaction)
    writer.start()
    assert recorded.wait(WAIT_SECONDS)
    with transaction.atomic():
        late = record_one("late id, early commit")  # would queue behind the open transaction on a chain lock
        assert lock_waits() == 0
    assert writer.is_alive() and not finished.is_set(), "the first transaction is still open"
    assert late.pk > early[0].pk

    audit.seal()
    late.refresh_from_db()
    assert late.position is not None
    assert not AuditEvent.objects.filter(pk=early[0].pk, position__isnull=False).exists(), "not committed yet"

    release.set()
    writer.join()
    audit.seal()

    sealed_early = AuditEvent.objects.get(pk=early[0].pk)
    assert sealed_early.position == late.position + 1, "sealed after, never skipped"
    assert sealed_early.hash == chain.link(late.hash, sealed_early.as_chain_event())
    *_, final = chain.walk(chain_events())
    assert final.broken is None


def test_a_second_sealer_leaves_the_work_to_the_one_holding_the_lock(transactional_db):
    record_one("queued")
    holding, release = threading.Event(), threading.Event()

    def sealer_in_progress() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [audit.SEAL_LOCK])
                holding.set()
                release.wait(WAIT_SECONDS)
        finally:
            connections.close_all()

    other = threading.Thread(target=sealer_in_progress)
    other.start()
    assert holding.wait(WAIT_SECONDS)
    try:
        assert audit.seal() == 0, "returns at once, without waiting for the lock"
        assert AuditEvent.objects.filter(position__isnull=True).count() == 1
    finally:
        release.set()
        other.join()
    assert audit.seal() == 1


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
        audit.seal()
        row = audit.checkpoint_store(head=audit.chain_head(), jws="x.y.z", kid="k", created_at=event.created_at)
    before = type(row).objects.filter(pk=row.pk).values().get()

    with pytest.raises(ValueError, match="are append-only"):
        change(row)

    assert type(row).objects.filter(pk=row.pk).values().get() == before
    assert AuditCheckpoint.objects.count() == (1 if model == "checkpoint" else 0)
