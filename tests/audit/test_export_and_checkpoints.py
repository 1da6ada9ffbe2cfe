"""export_audit, signed checkpoints, and verify_audit --file checking an export away from the
database against the published JWKS."""

from __future__ import annotations

import base64
import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from jwcrypto import jwk, jws

import audit
from audit import chain
from audit.models import AuditCheckpoint, AuditEvent
from idp.keys.checkpoints import CHECKPOINT_TYP, audit_checkpoint_create
from idp.keys.signing import signing_keys_published
from idp.tasks import checkpoint_audit_chain, seal_audit_chain

FIRST_EVENTS = 4
LATER_EVENTS = 3


def record(number: int) -> AuditEvent:
    audit.record(
        audit.Action.ADMIN_CHANGED,
        actor=audit.Actor.system("tests"),
        data={"number": number, "note": 'Zoë \u2028 "quoted" \\ 名前', "nested": {"b": [1, 2.5, None], "a": True}},
    )
    return AuditEvent.objects.order_by("-id").first()


def export(*args: str) -> list[str]:
    out = StringIO()
    call_command("export_audit", *args, stdout=out)
    return out.getvalue().splitlines()


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def chain_with_checkpoints(signing_key) -> list[AuditCheckpoint]:
    """Events, a checkpoint, more events, a second checkpoint, and one unsigned event at the end."""
    for number in range(FIRST_EVENTS):
        record(number)
    first = audit_checkpoint_create(now=timezone.now())
    for number in range(LATER_EVENTS):
        record(FIRST_EVENTS + number)
    second = audit_checkpoint_create(now=timezone.now())
    record(99)
    audit.seal()  # sealed, not signed
    return [first, second]


@pytest.fixture
def jwks_file(signing_key, tmp_path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": signing_keys_published()}))
    return path


def write_export(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "export.jsonl"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def verify_offline(django_db_blocker, export_file: Path, jwks_file: Path) -> str:
    """verify_audit --file with every database query refused: the check needs only the files."""
    with django_db_blocker.block():
        return verify("--file", str(export_file), "--jwks", str(jwks_file))


def test_export_is_json_lines_with_a_header_events_and_checkpoints(chain_with_checkpoints):
    lines = [json.loads(line) for line in export()]

    events = list(AuditEvent.objects.order_by("id"))
    header, *rest = lines
    assert header | {"exported_at": None} == {
        "type": "header",
        "format": chain.EXPORT_FORMAT,
        "issuer": settings.ISSUER,
        "since": None,
        "exported_at": None,
        "position": 0,
        "prev_id": None,
        "prev_hash": chain.GENESIS,
    }
    assert [line for line in rest if line["type"] == "event"] == [
        {"type": "event", **event.as_chain_event()} for event in events
    ]
    assert all(line["action"] and len(line["hash"]) == 64 for line in rest if line["type"] == "event")
    # Each checkpoint follows the event that made the chain as long as it signs.
    first, second = chain_with_checkpoints
    kinds = [line["type"] for line in rest]
    assert kinds.index("checkpoint") == first.event_count
    assert rest[first.event_count] == first.as_export_line()
    assert rest[second.event_count + 1] == second.as_export_line()
    assert kinds.count("checkpoint") == 2


def test_a_checkpoint_is_a_jws_of_the_chain_head_signed_with_the_active_key(signing_key):
    record(1)
    now = timezone.now()

    checkpoint = audit_checkpoint_create(now=now)

    last = AuditEvent.objects.order_by("id").last()
    token = jws.JWS()
    token.deserialize(checkpoint.jws)
    token.verify(jwk.JWK(**signing_key.public_jwk), alg="RS256")
    assert token.jose_header == {"alg": "RS256", "kid": signing_key.kid, "typ": CHECKPOINT_TYP}
    assert json.loads(token.payload) == {
        "iss": settings.ISSUER,
        "head": last.hash,
        "count": AuditEvent.objects.count(),
        "last_id": last.pk,
        "iat": int(now.timestamp()),
    }
    assert (checkpoint.head_hash, checkpoint.event_count, checkpoint.kid) == (
        last.hash,
        AuditEvent.objects.count(),
        signing_key.kid,
    )


def test_the_checkpoint_task_run_twice_on_an_unchanged_head_stores_one_checkpoint(signing_key):
    record(1)
    count = AuditEvent.objects.count()

    assert checkpoint_audit_chain() == count
    assert checkpoint_audit_chain() == count
    assert AuditCheckpoint.objects.count() == 1, "an unchanged head is not signed again"

    record(2)
    assert checkpoint_audit_chain() == count + 1
    assert list(AuditCheckpoint.objects.values_list("event_count", flat=True)) == [count, count + 1]
    assert AuditEvent.objects.count() == count + 1, "checkpointing records no event (it would move the head)"


def test_the_checkpoint_task_is_a_beat_row_every_15_minutes(db):
    row = PeriodicTask.objects.select_related("interval").get(name="checkpoint-audit-chain")
    assert row.task == checkpoint_audit_chain.name
    assert row.enabled is True
    assert (row.interval.every, row.interval.period) == (15, "minutes")


def test_the_sealer_is_a_beat_row_every_second_whose_stale_messages_expire(db):
    row = PeriodicTask.objects.select_related("interval").get(name="seal-audit-chain")
    assert row.task == seal_audit_chain.name
    assert row.enabled is True
    assert (row.interval.every, row.interval.period) == (1, "seconds")
    assert row.expire_seconds == 10


def test_the_seal_task_and_command_seal_what_is_committed(db):
    audit.seal()  # whatever an earlier test left
    record(1)
    assert seal_audit_chain() == 1
    record(2)
    record(3)
    out = StringIO()
    call_command("seal_audit", stdout=out)
    assert out.getvalue() == "sealed 2 events\n"
    assert not AuditEvent.objects.filter(position__isnull=True).exists()
    with pytest.raises(CommandError, match="--every must be between"):
        call_command("seal_audit", "--every", "0", stdout=StringIO())


def test_verify_audit_checks_the_database_chain_and_its_checkpoints(chain_with_checkpoints):
    last = AuditEvent.objects.order_by("id").last()
    count = AuditEvent.objects.count()

    assert verify() == (
        f"ok: {count} events, head {last.hash}\n"
        f"2 checkpoints verified, the latest after event {chain_with_checkpoints[1].event_count}\n"
        "1 events after it are not yet signed\n"
    )


def test_an_export_verifies_offline_against_the_jwks(chain_with_checkpoints, jwks_file, tmp_path, django_db_blocker):
    export_file = write_export(tmp_path, export())
    last = AuditEvent.objects.order_by("id").last()

    output = verify_offline(django_db_blocker, export_file, jwks_file)

    assert output.startswith(f"ok: {AuditEvent.objects.count()} events, head {last.hash}\n2 checkpoints verified")


def _edit_event(lines: list[str], line: int) -> None:
    event = json.loads(lines[line - 1])
    event["action"] = "logout"
    lines[line - 1] = json.dumps(event)


def _edit_member(lines: list[str], line: int, name: str, value: object) -> None:
    record_ = json.loads(lines[line - 1])
    record_[name] = value
    lines[line - 1] = json.dumps(record_)


def _resign(lines: list[str], line: int) -> None:
    """A checkpoint signed by someone else, under the provider's kid."""
    checkpoint = json.loads(lines[line - 1])
    payload = jws.JWS()
    payload.deserialize(checkpoint["jws"])
    forged = jws.JWS(payload.objects["payload"])
    forged.add_signature(
        jwk.JWK.generate(kty="RSA", size=2048),
        alg="RS256",
        protected=json.dumps({"alg": "RS256", "kid": checkpoint["kid"], "typ": CHECKPOINT_TYP}),
    )
    checkpoint["jws"] = forged.serialize(compact=True)
    lines[line - 1] = json.dumps(checkpoint)


def _unsigned(lines: list[str], line: int) -> None:
    checkpoint = json.loads(lines[line - 1])
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": CHECKPOINT_TYP}).encode()).rstrip(b"=")
    checkpoint["jws"] = f"{header.decode()}.{checkpoint['jws'].split('.')[1]}."
    lines[line - 1] = json.dumps(checkpoint)


# Line 1 is the header, lines 2.. the events (the migrations' first); `c` is the line of the first
# checkpoint, which signs a chain of n = c - 2 events. Each case: the edit, the line named, the reason.
@pytest.mark.parametrize(
    ("edit", "line", "reason"),
    [
        pytest.param(lambda lines, c: _edit_event(lines, 3), lambda c: 3, "its hash does not match", id="event-edited"),
        pytest.param(lambda lines, c: lines.pop(2), lambda c: 3, "its hash does not match", id="event-removed"),
        pytest.param(
            lambda lines, c: lines.__setitem__(slice(2, 4), lines[3:1:-1]),
            lambda c: 3,
            "its hash does not match",
            id="events-swapped",
        ),
        pytest.param(
            lambda lines, c: _edit_member(lines, 1, "prev_hash", "f" * 64),
            lambda c: 2,
            "its hash does not match",
            id="header-prev-hash-edited",
        ),
        pytest.param(
            lambda lines, c: lines.__setitem__(3, "garbage"), lambda c: 4, "not an event or checkpoint", id="not-json"
        ),
        pytest.param(
            lambda lines, c: _edit_member(lines, c, "count", 1),
            lambda c: c,
            "the checkpoint line's count differs from its signed payload",
            id="checkpoint-count-edited",
        ),
        pytest.param(
            lambda lines, c: _resign(lines, c),
            lambda c: c,
            "the checkpoint does not verify: the signature does not verify",
            id="checkpoint-forged",
        ),
        pytest.param(
            lambda lines, c: _unsigned(lines, c),
            lambda c: c,
            "the checkpoint does not verify: not an RS256 audit-checkpoint+jwt",
            id="checkpoint-alg-none",
        ),
        pytest.param(
            lambda lines, c: lines.insert(c, lines.pop(c - 1)),
            lambda c: c + 1,
            "a checkpoint signs a chain of {n} events but stands after event {n_plus_1}",
            id="checkpoint-moved",
        ),
        pytest.param(
            lambda lines, c: lines.pop(c - 2),
            lambda c: c - 1,
            "a checkpoint signs a chain of {n} events, but only {n_minus_1} precede it",
            id="event-before-checkpoint-cut",
        ),
    ],
)
def test_an_edited_export_fails_naming_the_line(
    chain_with_checkpoints, jwks_file, tmp_path, django_db_blocker, edit, line, reason
):
    lines = export()
    n = chain_with_checkpoints[0].event_count
    c = n + 2
    assert json.loads(lines[c - 1])["type"] == "checkpoint"
    edit(lines, c)
    export_file = write_export(tmp_path, lines)

    with pytest.raises(CommandError) as raised:
        verify_offline(django_db_blocker, export_file, jwks_file)

    assert str(raised.value).startswith(f"audit chain broken at line {line(c)}, position ")
    assert reason.format(n=n, n_plus_1=n + 1, n_minus_1=n - 1) in str(raised.value)


@pytest.mark.parametrize("start", ["after-first-checkpoint", "mid-chain"])
def test_an_export_since_a_time_verifies_and_its_start_is_vouched_for(
    chain_with_checkpoints, jwks_file, tmp_path, django_db_blocker, start
):
    first, second = chain_with_checkpoints
    events = list(AuditEvent.objects.order_by("id"))
    position = first.event_count if start == "after-first-checkpoint" else first.event_count - 2
    since = chain.timestamp(events[position].created_at)

    lines = export("--since", since)

    header = json.loads(lines[0])
    assert (header["since"], header["position"]) == (since, position)
    assert (header["prev_id"], header["prev_hash"]) == (events[position - 1].pk, events[position - 1].hash)
    assert [json.loads(line)["id"] for line in lines if '"type":"event"' in line] == [e.pk for e in events[position:]]
    output = verify_offline(django_db_blocker, write_export(tmp_path, lines), jwks_file)
    assert output.startswith(f"ok: {len(events)} events, head {events[-1].hash}\n2 checkpoints verified")
    # The checkpoint at or after the start vouches for prev_hash: a forged one is caught.
    _edit_member(lines, 1, "prev_hash", "f" * 64)
    with pytest.raises(CommandError, match="broken at line 2, "):
        verify_offline(django_db_blocker, write_export(tmp_path, lines), jwks_file)


def test_an_export_since_after_the_last_event_is_the_head_alone(chain_with_checkpoints, jwks_file, tmp_path):
    last = AuditEvent.objects.order_by("id").last()
    lines = export("--since", "2999-01-01T00:00:00Z")

    assert len(lines) == 1
    assert json.loads(lines[0])["prev_hash"] == last.hash
    assert verify("--file", str(write_export(tmp_path, lines)), "--jwks", str(jwks_file)).startswith(
        f"ok: {AuditEvent.objects.count()} events, head {last.hash}\nno checkpoint"
    )


@pytest.mark.parametrize(
    "forgery",
    ["other-key-same-kid", "unknown-kid", "alg-none"],
)
def test_a_forged_checkpoint_row_fails_verification(signing_key, jwks_file, tmp_path, django_db_blocker, forgery):
    record(1)
    head = audit.chain_head()
    payload = json.dumps(
        {"iss": settings.ISSUER, "head": head.head, "count": head.count, "last_id": head.last_event_id}
    )
    attacker = jwk.JWK.generate(kty="RSA", size=2048)
    kid = signing_key.kid if forgery == "other-key-same-kid" else attacker.thumbprint()
    if forgery == "alg-none":
        protected = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": CHECKPOINT_TYP}).encode())
        token = f"{protected.rstrip(b'=').decode()}.{base64.urlsafe_b64encode(payload.encode()).decode()}."
    else:
        signed = jws.JWS(payload.encode())
        signed.add_signature(
            attacker, alg="RS256", protected=json.dumps({"alg": "RS256", "kid": kid, "typ": CHECKPOINT_TYP})
        )
        token = signed.serialize(compact=True)
    audit.checkpoint_store(head=head, jws=token, kid=kid, created_at=timezone.now())  # as a DB intruder would
    reason = {
        "other-key-same-kid": "the signature does not verify",
        "unknown-kid": "which the JWKS does not hold",
        "alg-none": "not an RS256 audit-checkpoint+jwt",
    }[forgery]

    with pytest.raises(
        CommandError, match=f"position {head.count}, event id {head.last_event_id}: .*{re.escape(reason)}"
    ):
        verify()
    export_file = write_export(tmp_path, export())
    with pytest.raises(CommandError, match=f"line {head.count + 2}, .*{re.escape(reason)}"):
        verify_offline(django_db_blocker, export_file, jwks_file)


def test_verify_file_against_the_jwks_url_of_the_running_provider(transactional_db, live_server, signing_key, tmp_path):
    record(1)
    audit_checkpoint_create(now=timezone.now())
    export_file = write_export(tmp_path, export())

    output = verify("--file", str(export_file), "--jwks", f"{live_server.url}/.well-known/jwks.json")

    assert output.startswith(f"ok: {AuditEvent.objects.count()} events")
    assert "1 checkpoints verified" in output


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "", "1' OR '1'='1", "2026-01-01T25:00:00"])
def test_a_bad_since_is_refused(db, since):
    with pytest.raises(CommandError, match="--since must be an ISO 8601 date or time"):
        export("--since", since)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--file", "EXPORT"], "--file needs --jwks"),
        (["--file", "{export}", "--jwks", "{missing}"], "--jwks"),
        (["--file", "{export}", "--jwks", "{export}"], "not a JWKS document"),
        (["--file", "{missing}", "--jwks", "{jwks}"], "--file"),
    ],
)
def test_verify_file_refuses_missing_or_bad_inputs(chain_with_checkpoints, jwks_file, tmp_path, args, message):
    export_file = write_export(tmp_path, export())
    paths = {"export": export_file, "jwks": jwks_file, "missing": tmp_path / "missing.json"}

    with pytest.raises(CommandError, match=message):
        verify(*[arg.format(**paths) for arg in args])
