"""The database itself refuses changes to the trail (to a sealed event, any; to an unsealed one, all
but its seal), and what gets past it (a superuser disabling the trigger, or TRUNCATE) is caught by
verify_audit. Hand-made SQL goes through psql, as an operator's would; transactional so the rows
are committed and psql sees them."""

from __future__ import annotations

import os
import subprocess
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

import audit
from audit import chain
from audit.models import AuditCheckpoint, AuditEvent
from idp.keys.checkpoints import audit_checkpoint_create

EVENTS = 6


def psql(sql: str) -> subprocess.CompletedProcess[str]:
    db = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or ""}
    command = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432)]
    command += ["-U", db["USER"], "-d", db["NAME"], "-c", sql]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


def tamper(table: str, sql: str) -> None:
    """What a database superuser can do: switch the triggers off around a change."""
    trigger = {"audit_auditevent": "USER", "audit_auditcheckpoint": "audit_checkpoint_append_only"}
    result = psql(
        f"BEGIN; ALTER TABLE {table} DISABLE TRIGGER {trigger[table]}; {sql}; "
        f"ALTER TABLE {table} ENABLE TRIGGER {trigger[table]}; COMMIT;"
    )
    assert result.returncode == 0, result.stderr


def verify() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


@pytest.fixture
def events(transactional_db, signing_key) -> list[AuditEvent]:
    for number in range(EVENTS):
        audit.record(audit.Action.ADMIN_CHANGED, actor=audit.Actor.system("tests"), data={"number": number})
    audit.seal()
    return list(AuditEvent.objects.order_by("position"))


def record_unsealed() -> AuditEvent:
    """One more event, recorded after the others were sealed: it waits for the sealer."""
    audit.record(audit.Action.ADMIN_CHANGED, actor=audit.Actor.system("tests"), data={"number": "waiting"})
    return AuditEvent.objects.get(position__isnull=True)


@pytest.fixture
def unsealed(events) -> AuditEvent:
    return record_unsealed()


SEALED = "audit events are append-only: a sealed event cannot change"
ONLY_SEAL = "audit events are append-only: an unsealed event can only be sealed"
GOOD_HASH = "a" * 64


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        pytest.param("UPDATE audit_auditevent SET action = 'x' WHERE position = 2", SEALED, id="sealed-update"),
        pytest.param(
            "UPDATE audit_auditevent SET position = NULL, hash = NULL WHERE position = 2", SEALED, id="sealed-unseal"
        ),
        pytest.param("DELETE FROM audit_auditevent WHERE position = 2", "DELETE refused", id="sealed-delete"),
        pytest.param("UPDATE audit_auditevent SET action = 'x' WHERE {unsealed}", ONLY_SEAL, id="unsealed-update"),
        pytest.param(
            f"UPDATE audit_auditevent SET position = {{next}}, hash = '{GOOD_HASH}', "
            "data = '{{\"number\": 99}}' WHERE {unsealed}",
            ONLY_SEAL,
            id="sealed-with-other-data",
        ),
        pytest.param(
            "UPDATE audit_auditevent SET position = {next} WHERE {unsealed}", ONLY_SEAL, id="position-no-hash"
        ),
        pytest.param(
            "UPDATE audit_auditevent SET position = {next}, hash = 'not hex' WHERE {unsealed}",
            ONLY_SEAL,
            id="malformed-hash",
        ),
        pytest.param(
            f"UPDATE audit_auditevent SET position = {{gap}}, hash = '{GOOD_HASH}' WHERE {{unsealed}}",
            "audit chain positions run without gaps: {gap} has no predecessor",
            id="gap",
        ),
        pytest.param("DELETE FROM audit_auditevent WHERE {unsealed}", "DELETE refused", id="unsealed-delete"),
        pytest.param(
            "INSERT INTO audit_auditevent (created_at, action, actor_type, actor_id, target_type, target_id, "
            "client_id, outcome, source_ip, user_agent, request_id, data, position, hash) VALUES (now(), 'x', "
            f"'system', 'x', '', '', '', 'success', '', '', '', '{{{{}}}}', {{next}}, '{GOOD_HASH}')",
            "audit events are inserted unsealed: only the sealer links them into the chain",
            id="insert-sealed",
        ),
        pytest.param(
            "UPDATE audit_auditcheckpoint SET head_hash = 'x'",
            "audit checkpoints are append-only: UPDATE refused",
            id="checkpoint-update",
        ),
        pytest.param(
            "DELETE FROM audit_auditcheckpoint",
            "audit checkpoints are append-only: DELETE refused",
            id="checkpoint-delete",
        ),
    ],
)
def test_a_hand_made_change_in_psql_fails_and_changes_nothing(events, sql, refusal):
    audit_checkpoint_create(now=timezone.now())
    unsealed = record_unsealed()
    before = list(AuditEvent.objects.values()), list(AuditCheckpoint.objects.values())

    where = {"unsealed": f"id = {unsealed.pk}", "next": len(events) + 1, "gap": len(events) + 2}
    result = psql(sql.format(**where))

    assert result.returncode != 0
    assert refusal.format(**where) in result.stderr
    assert (list(AuditEvent.objects.values()), list(AuditCheckpoint.objects.values())) == before
    assert verify().startswith(f"ok: {len(events)} events")


def test_the_seal_is_the_one_change_an_unsealed_event_accepts(unsealed, events):
    """What the sealer does, done by hand: position and hash set, nothing else touched."""
    event = unsealed.as_chain_event()
    sealed_hash = chain.link(events[-1].hash, event)

    result = psql(
        f"UPDATE audit_auditevent SET position = {len(events) + 1}, hash = '{sealed_hash}' WHERE id = {unsealed.pk}"
    )

    assert result.returncode == 0, result.stderr
    assert verify().startswith(f"ok: {len(events) + 1} events, head {sealed_hash}\n")


def test_an_untouched_chain_verifies(events):
    assert verify().startswith(f"ok: {len(events)} events, head {events[-1].hash}\n")


def test_verify_audit_counts_the_events_waiting_for_the_sealer(unsealed, events):
    assert verify().startswith(
        f"ok: {len(events)} events, head {events[-1].hash}\n"
        "no checkpoint: no signature vouches for these events yet\n"
        "1 events recorded but not yet sealed into the chain, the oldest "
    )


@pytest.mark.parametrize(
    ("sql", "broken_at"),
    [
        pytest.param("UPDATE audit_auditevent SET data = '{{\"number\": 99}}' WHERE id = {id}", 0, id="data-altered"),
        pytest.param("UPDATE audit_auditevent SET action = 'logout' WHERE id = {id}", 0, id="action-altered"),
        pytest.param(
            "UPDATE audit_auditevent SET created_at = created_at + interval '1 s' WHERE id = {id}",
            0,
            id="time-altered",
        ),
        pytest.param("DELETE FROM audit_auditevent WHERE id = {id}", 1, id="row-deleted"),
    ],
)
def test_verify_audit_names_a_row_changed_with_the_trigger_disabled(events, sql, broken_at):
    all_events = list(AuditEvent.objects.order_by("position"))
    victim = all_events[3]
    position = all_events.index(victim) + 1

    tamper("audit_auditevent", sql.format(id=victim.pk))

    named = all_events[position - 1 + broken_at]  # a deleted row breaks the link of the one after it
    with pytest.raises(
        CommandError, match=rf"^audit chain broken at position {position}, event id {named.pk}: its hash does not match"
    ):
        verify()


def test_a_rewritten_chain_after_a_change_is_caught_by_the_checkpoint(events):
    """Altering a row and recomputing every later hash keeps the chain consistent; the signed
    checkpoint still knows the head it had."""
    checkpoint = audit_checkpoint_create(now=timezone.now())
    rows = [event.as_chain_event() for event in AuditEvent.objects.order_by("position")]
    rows[2]["data"] = {"number": 1000}
    previous, updates = chain.GENESIS, []
    for row in rows:
        previous = chain.link(previous, row)
        updates.append(f"UPDATE audit_auditevent SET hash = 'h{row['id']}' WHERE id = {row['id']}")
        updates.append(f"UPDATE audit_auditevent SET hash = '{previous}' WHERE id = {row['id']}")
    # Two passes: the hash column is unique, so each row first gets a placeholder.
    tamper(
        "audit_auditevent",
        f"UPDATE audit_auditevent SET data = '{{\"number\": 1000}}' WHERE id = {rows[2]['id']}; "
        + "; ".join(updates[0::2] + updates[1::2]),
    )
    *_, walked = chain.walk(event.as_chain_event() for event in AuditEvent.objects.order_by("position"))
    assert walked.broken is None, "the rewritten chain is consistent in itself"

    with pytest.raises(CommandError) as raised:
        verify()

    assert (
        f"position {checkpoint.event_count}, event id {checkpoint.last_event_id}: the chain head after "
        f"{checkpoint.event_count} events differs from the one its checkpoint signs"
    ) in str(raised.value)


@pytest.mark.parametrize("recorded_after", [0, 2], ids=["wiped", "wiped-then-refilled"])
def test_truncating_the_table_after_a_checkpoint_is_detected(events, recorded_after):
    checkpoint = audit_checkpoint_create(now=timezone.now())
    result = psql("TRUNCATE audit_auditevent")
    assert result.returncode == 0, result.stderr  # TRUNCATE is not blocked: the checkpoint is the guard
    for number in range(recorded_after):
        audit.record(audit.Action.ADMIN_CHANGED, actor=audit.Actor.system("tests"), data={"again": number})
    audit.seal()

    with pytest.raises(CommandError) as raised:
        verify()

    assert (
        f"a checkpoint signs a chain of {checkpoint.event_count} events, but only {recorded_after} precede it: "
        "events are missing"
    ) in str(raised.value)
