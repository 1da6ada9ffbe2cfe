"""API key rotation: grace periods under time travel, the scheduled sweep, its safety when workers
run it at the same moment on PostgreSQL, the owner's one-time reveal and email, the audit trail,
and the beat rows that run the sweeps."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

import audit
from accounts.selectors import Caller
from apikeys.keyformat import public_id_new
from apikeys.models import ApiKey
from apikeys.selectors import apikey_verify
from apikeys.services import (
    apikey_create,
    apikey_reveal,
    apikey_revoke,
    apikey_rotate,
    apikeys_end_due,
    apikeys_rotate_due,
)
from apikeys.tasks import end_expired_apikeys, notify_rotated_apikey, rotate_due_apikeys
from audit.models import AuditEvent
from idp.celery import app as celery_app
from tests.apikeys.conftest import USERS, key_headers
from tests.factories import make_machine_client

SYSTEM = audit.Actor.system("tests")
SCHEDULER = ("system", "scheduler")
# A fixed moment, so every expected time below is exact.
T0 = datetime(2031, 3, 4, 10, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


# owner (a user holding the global idp-admin role), admin_role, resource_server, introspect and
# the fast password hasher come from tests/apikeys/conftest.py.


@pytest.fixture
def make_key(owner, admin_role):
    """A key of the owner's through apikey_create, carrying idp.manage, profile and idp-admin (so
    it can call the management API); keywords are apikey_create's and override these."""

    def make(**options):
        options.setdefault("name", f"ci-deploy-{secrets.token_hex(3)}")
        options.setdefault("user", owner)
        options.setdefault("scopes", ["idp.manage", "profile"])
        options.setdefault("role_ids", [admin_role.pk] if options["user"] is not None else [])
        return apikey_create(caller=Caller.operator(audit.Actor.user(owner)), **options)

    return make


def introspected(introspect, token: str) -> dict:
    reply = introspect(token)
    assert reply.status_code == 200
    return reply.json()


def reload(key: ApiKey) -> ApiKey:
    return ApiKey.objects.get(pk=key.pk)


def successors_of(key: ApiKey):
    return ApiKey.objects.filter(rotated_from=key)


def events(action: str, key: ApiKey) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, target_type="apikey", target_id=key.public_id))


def verified_pk(presented: str) -> int | None:
    verified = apikey_verify(presented=presented)
    return verified.key.pk if verified is not None else None


def queued_notifications() -> dict[bytes, int]:
    """The notify_rotated_apikey messages waiting in the real broker (kombu's Redis list for the
    default queue), raw message to key id: what a worker would send emails for. Redis outlives
    test databases, whose row ids start again: compare with a snapshot taken before the action."""
    found = {}
    with redis.Redis.from_url(settings.CELERY_BROKER_URL) as broker:
        waiting = broker.lrange(celery_app.conf.task_default_queue, 0, -1)
    for raw in waiting:
        message = json.loads(raw)
        if message["headers"]["task"] == notify_rotated_apikey.name:
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found[raw] = args[0]
    return found


def remove_queued_notifications(key_ids) -> None:
    """Take the notifications for these keys back out of the broker, so no worker of another test
    ever sends them."""
    with redis.Redis.from_url(settings.CELERY_BROKER_URL) as broker:
        for raw, key_id in queued_notifications().items():
            if key_id in key_ids:
                broker.lrem(celery_app.conf.task_default_queue, 0, raw)


# --- Grace period semantics, under time travel --------------------------------------------------


def test_the_old_key_works_through_its_grace_period_and_stops_one_second_after(make_key):
    with time_machine.travel(T0, tick=False):
        issued = make_key(grace_period=2 * HOUR)
    with time_machine.travel(T0 + 5 * HOUR, tick=False):
        rotated = apikey_rotate(key_id=issued.key.pk, caller=Caller.operator(audit.Actor.user(issued.key.user)))
    grace_ends_at = T0 + 7 * HOUR
    assert reload(issued.key).grace_ends_at == grace_ends_at

    with time_machine.travel(T0 + 5 * HOUR, tick=False):
        assert verified_pk(issued.secret) == issued.key.pk
        assert verified_pk(rotated.secret) == rotated.key.pk
    with time_machine.travel(grace_ends_at - SECOND, tick=False):
        assert verified_pk(issued.secret) == issued.key.pk
        assert verified_pk(rotated.secret) == rotated.key.pk
    with time_machine.travel(grace_ends_at, tick=False):
        assert verified_pk(issued.secret) is None, "the grace period is half-open: its end is already too late"
    with time_machine.travel(grace_ends_at + SECOND, tick=False):
        assert verified_pk(issued.secret) is None
        assert verified_pk(rotated.secret) == rotated.key.pk
    with time_machine.travel(grace_ends_at + 30 * DAY, tick=False):
        assert verified_pk(issued.secret) is None
        assert verified_pk(rotated.secret) == rotated.key.pk


def test_introspection_and_the_api_accept_both_keys_during_grace_and_only_the_successor_after(
    client, make_key, introspect
):
    with time_machine.travel(T0, tick=False):
        issued = make_key(grace_period=2 * HOUR)
        rotated = apikey_rotate(key_id=issued.key.pk, caller=Caller.operator(audit.Actor.user(issued.key.user)))

    with time_machine.travel(T0 + 2 * HOUR - SECOND, tick=False):
        old = introspected(introspect, issued.secret)
        new = introspected(introspect, rotated.secret)
        assert client.get(USERS, headers=key_headers(issued.secret)).status_code == 200
        assert client.get(USERS, headers=key_headers(rotated.secret)).status_code == 200
    assert old["active"] is True
    assert old["token_type"] == "api_key"
    assert old["exp"] == int((T0 + 2 * HOUR).timestamp()), "a resource server may cache the old key until then"
    assert new["active"] is True
    assert "exp" not in new, "the successor has neither an expiry nor a grace end"
    assert new["scope"] == old["scope"] == "profile idp.manage"
    assert new["roles"] == old["roles"] == ["idp-admin"]

    with time_machine.travel(T0 + 2 * HOUR + SECOND, tick=False):
        assert introspected(introspect, issued.secret) == {"active": False}
        assert introspected(introspect, rotated.secret)["active"] is True
        refused = client.get(USERS, headers=key_headers(issued.secret))
        assert client.get(USERS, headers=key_headers(rotated.secret)).status_code == 200
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"


def test_a_zero_grace_period_stops_the_old_key_at_once(client, make_key, introspect):
    with time_machine.travel(T0, tick=False):
        issued = make_key(grace_period=timedelta(0))
        rotated = apikey_rotate(key_id=issued.key.pk, caller=Caller.operator(audit.Actor.user(issued.key.user)))

        assert reload(issued.key).grace_ends_at == T0
        assert verified_pk(issued.secret) is None
        assert verified_pk(rotated.secret) == rotated.key.pk
        assert introspected(introspect, issued.secret) == {"active": False}
        assert introspected(introspect, rotated.secret)["active"] is True
        assert client.get(USERS, headers=key_headers(issued.secret)).status_code == 401


def test_the_successor_keeps_the_keys_lifetime_counted_from_the_rotation(make_key):
    with time_machine.travel(T0, tick=False):
        issued = make_key(expires_at=T0 + 30 * DAY, grace_period=HOUR)
    with time_machine.travel(T0 + 10 * DAY, tick=False):
        rotated = apikey_rotate(key_id=issued.key.pk, caller=Caller.operator(audit.Actor.user(issued.key.user)))

    assert rotated.key.expires_at == T0 + 40 * DAY
    assert reload(issued.key).expires_at == T0 + 30 * DAY, "rotation does not extend the old key"
    with time_machine.travel(T0 + 40 * DAY - SECOND, tick=False):
        assert verified_pk(rotated.secret) == rotated.key.pk
    with time_machine.travel(T0 + 40 * DAY + SECOND, tick=False):
        assert verified_pk(rotated.secret) is None


def test_a_rotated_key_cannot_be_rotated_again(make_key):
    issued = make_key()
    apikey_rotate(key_id=issued.key.pk, caller=Caller.operator(SYSTEM))

    with pytest.raises(ValidationError):
        apikey_rotate(key_id=issued.key.pk, caller=Caller.operator(SYSTEM))
    assert successors_of(issued.key).count() == 1


def test_the_database_refuses_a_second_successor_of_one_key(make_key):
    issued = make_key()
    apikey_rotate(key_id=issued.key.pk, caller=Caller.operator(SYSTEM))
    intruder = ApiKey(
        public_id=public_id_new(),
        secret_hash="0" * 64,
        user=issued.key.user,
        name=issued.key.name,
        created_at=T0,
        rotated_from=issued.key,
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        intruder.save()
    assert successors_of(issued.key).count() == 1


# --- The scheduled sweep ----------------------------------------------------------------------


def test_a_scheduled_key_is_rotated_when_due_and_not_before(make_key, owner, admin_role):
    issued = make_key(rotate_every=DAY, grace_period=2 * HOUR, now=T0)
    due = T0 + DAY
    assert issued.key.next_rotation_at == due

    assert apikeys_rotate_due(now=due - SECOND) == 0
    assert not successors_of(issued.key).exists()
    assert reload(issued.key).next_rotation_at == due

    assert apikeys_rotate_due(now=due) == 1
    old = reload(issued.key)
    successor = successors_of(old).get()
    assert (successor.user, successor.application) == (owner, None)
    assert successor.name == old.name
    assert successor.scope == old.scope == "profile idp.manage"
    assert list(successor.roles.all()) == [admin_role]
    assert (successor.rotate_every, successor.grace_period) == (DAY, 2 * HOUR)
    assert successor.created_at == due
    assert successor.next_rotation_at == due + DAY
    assert successor.public_id != old.public_id
    assert old.grace_ends_at == due + 2 * HOUR
    assert old.next_rotation_at is None, "a rotated key is never due again"

    assert apikeys_rotate_due(now=due + HOUR) == 0, "the same sweep again rotates nothing"
    assert ApiKey.objects.count() == 2
    assert apikeys_rotate_due(now=due + DAY) == 1, "the successor is due on its own schedule"
    assert successors_of(successor).count() == 1


def test_a_scheduled_successors_secret_is_stored_encrypted_and_revealed_once(make_key, owner):
    issued = make_key(rotate_every=DAY, grace_period=2 * HOUR, now=T0)
    apikeys_rotate_due(now=T0 + DAY)
    successor = successors_of(issued.key).get()

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM apikeys_apikey WHERE id = %s", [successor.pk])
        row = " ".join(str(value) for value in cursor.fetchone())
    assert successor.pending_secret
    assert "idpk_" not in row, "no raw key in the database row"

    secret = apikey_reveal(key_id=successor.pk, caller=Caller.operator(audit.Actor.user(owner)))

    assert secret.startswith(f"idpk_{successor.public_id}_")
    assert secret not in row
    assert verified_pk(secret) == successor.pk
    assert reload(successor).pending_secret == ""
    with pytest.raises(ValidationError):
        apikey_reveal(key_id=successor.pk, caller=Caller.operator(audit.Actor.user(owner)))
    assert reload(successor).pending_secret == ""
    assert verified_pk(secret) == successor.pk, "revealing wipes the copy, not the key"


def test_the_end_sweep_wipes_an_unrevealed_secret_and_records_the_end_once(make_key, owner):
    issued = make_key(rotate_every=DAY, grace_period=2 * HOUR, now=T0)
    apikeys_rotate_due(now=T0 + DAY)
    successor = successors_of(issued.key).get()
    grace_ends_at = T0 + DAY + 2 * HOUR

    assert apikeys_end_due(now=grace_ends_at - SECOND) == 0
    assert reload(successor).pending_secret, "the owner can still reveal it during the grace period"
    assert reload(issued.key).ended_at is None

    assert apikeys_end_due(now=grace_ends_at) == 1
    assert apikeys_end_due(now=grace_ends_at + HOUR) == 0

    assert reload(issued.key).ended_at == grace_ends_at
    assert reload(successor).pending_secret == ""
    assert reload(successor).ended_at is None, "the successor lives on"
    with pytest.raises(ValidationError):
        apikey_reveal(key_id=successor.pk, caller=Caller.operator(audit.Actor.user(owner)))
    [ended] = events("apikey.expired", issued.key)
    assert (ended.actor_type, ended.actor_id) == SCHEDULER
    assert ended.data == {"reason": "grace_period_ended"}
    assert events("apikey.expired", successor) == []


def _nothing(key, owner):
    pass


def _old_key_revoked_during_grace(key, owner):
    apikey_revoke(key_id=key.pk, actor=audit.Actor.user(owner), now=T0 + DAY + HOUR)
    assert apikeys_end_due(now=T0 + DAY + HOUR) == 0


def _old_key_expired_during_grace(key, owner):
    assert apikeys_end_due(now=T0 + DAY + HOUR) == 1  # its lifetime ran out before its grace period


@pytest.mark.parametrize(
    ("during_grace", "expires_at"),
    [
        pytest.param(_nothing, None, id="old-key-left-alone"),
        pytest.param(_old_key_revoked_during_grace, None, id="old-key-revoked-during-grace"),
        pytest.param(_old_key_expired_during_grace, T0 + DAY + HOUR, id="old-key-expired-during-grace"),
    ],
)
def test_an_unrevealed_secret_is_wiped_when_the_grace_period_ends_whatever_became_of_the_old_key(
    make_key, owner, during_grace, expires_at
):
    issued = make_key(rotate_every=DAY, grace_period=2 * HOUR, expires_at=expires_at, now=T0)
    assert apikeys_rotate_due(now=T0 + DAY) == 1
    successor = successors_of(issued.key).get()
    during_grace(issued.key, owner)
    assert reload(successor).pending_secret, "still revealable during the grace period"

    apikeys_end_due(now=T0 + DAY + 2 * HOUR)

    assert reload(successor).pending_secret == ""
    with pytest.raises(ValidationError):
        apikey_reveal(key_id=successor.pk, caller=Caller.operator(audit.Actor.user(owner)))


def test_the_end_task_records_an_expired_key(make_key):
    yesterday = datetime.now(UTC) - DAY
    issued = make_key(expires_at=yesterday, now=yesterday - DAY)

    assert end_expired_apikeys() == 1  # the task function, at the real now
    assert end_expired_apikeys() == 0

    [ended] = events("apikey.expired", issued.key)
    assert ended.data == {"reason": "expired"}
    assert reload(issued.key).ended_at is not None


def _revoked(key, owner):
    apikey_revoke(key_id=key.pk, actor=audit.Actor.user(owner), now=T0 + HOUR)


def _owner_deactivated(key, owner):
    from accounts.services import user_deactivate

    user_deactivate(user_id=owner.pk, actor=SYSTEM)


@pytest.mark.parametrize(
    ("make_unusable", "expires_at", "rotated"),
    [
        pytest.param(_nothing, None, 1, id="usable"),
        pytest.param(_revoked, None, 0, id="revoked"),
        pytest.param(_nothing, T0 + 12 * HOUR, 0, id="expired"),
        pytest.param(_nothing, T0 + DAY, 0, id="expiring-at-the-due-moment"),
        pytest.param(_owner_deactivated, None, 0, id="owner-deactivated"),
    ],
)
def test_only_usable_keys_are_rotated_by_the_sweep(make_key, owner, make_unusable, expires_at, rotated):
    issued = make_key(rotate_every=DAY, expires_at=expires_at, now=T0)
    make_unusable(issued.key, owner)

    assert apikeys_rotate_due(now=T0 + DAY) == rotated
    assert successors_of(issued.key).count() == rotated
    assert len(events("apikey.rotated", issued.key)) == rotated


@pytest.mark.parametrize("disabled", [False, True], ids=["active-client", "disabled-client"])
def test_a_disabled_machine_clients_key_is_not_rotated(make_key, disabled):
    from idp.oauth.clients import client_disable

    machine = make_machine_client()
    issued = make_key(user=None, application=machine.application, scopes=["profile"], rotate_every=DAY, now=T0)
    if disabled:
        client_disable(application_id=machine.application.pk, actor=SYSTEM)

    assert apikeys_rotate_due(now=T0 + DAY) == (0 if disabled else 1)
    assert successors_of(issued.key).count() == (0 if disabled else 1)


# --- Two workers at the same moment, on PostgreSQL ---------------------------------------------


def test_the_rotation_task_run_concurrently_rotates_each_due_key_once(transactional_db, make_key):
    workers = 4
    keys = [make_key(rotate_every=HOUR, now=datetime.now(UTC) - 2 * HOUR).key for _ in range(12)]
    not_due = make_key(rotate_every=DAY, now=datetime.now(UTC) - HOUR).key
    start = threading.Barrier(workers)
    counts: list[int] = []
    errors: list[BaseException] = []

    def worker():
        try:
            start.wait(timeout=30)
            counts.append(rotate_due_apikeys())  # the task function, as a worker runs it
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    already_queued = set(queued_notifications())
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        successor_ids = set(ApiKey.objects.filter(rotated_from__in=keys).values_list("pk", flat=True))

        assert errors == []
        assert len(counts) == workers
        assert sum(counts) == len(keys), f"each due key is rotated by exactly one worker: {counts}"
        for key in keys:
            assert successors_of(key).count() == 1
            [rotated] = events("apikey.rotated", key)
            assert (rotated.actor_type, rotated.actor_id) == SCHEDULER
            assert reload(key).grace_ends_at is not None
        assert not successors_of(not_due).exists()
        assert ApiKey.objects.count() == 2 * len(keys) + 1
        # Each rotation committed, so each enqueued its owner's email: one per key, none twice.
        notifications = sorted(
            key_id
            for raw, key_id in queued_notifications().items()
            if raw not in already_queued and key_id in successor_ids
        )
        assert notifications == sorted(successor_ids)
    finally:
        remove_queued_notifications(set(ApiKey.objects.values_list("pk", flat=True)))


# --- The owner's email ------------------------------------------------------------------------


def enqueued_by_apikeys(callbacks: list) -> list:
    """The on-commit callbacks apikeys' services registered (the email task); the metrics count
    audit events on commit too (idp.ops.metrics), which is not what these tests are about."""
    return [callback for callback in callbacks if callback.__module__.startswith("apikeys.")]


def test_a_scheduled_rotation_enqueues_one_email_to_the_owner_without_the_key(
    make_key, owner, django_capture_on_commit_callbacks
):
    issued = make_key(rotate_every=DAY, now=T0)
    notified: list[int] = []  # what the task hands notify_rotated_apikey.delay, once each rotation commits
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert apikeys_rotate_due(now=T0 + DAY, on_rotated=notified.append) == 1
    assert len(enqueued_by_apikeys(callbacks)) == 1
    successor = successors_of(issued.key).get()
    assert notified == [successor.pk]

    assert notify_rotated_apikey(successor.pk) is True  # the task function, as the worker runs it

    [message] = mail.outbox
    assert message.to == [owner.email]
    assert successor.public_id in message.body
    assert issued.key.name in message.subject
    secret = apikey_reveal(key_id=successor.pk, caller=Caller.operator(audit.Actor.user(owner)))
    for sent in (message.subject, message.body):
        assert secret not in sent
        assert issued.secret not in sent
        assert "idpk_" not in sent, "the email never holds a key"


def test_a_manual_rotation_sends_no_email(make_key, django_capture_on_commit_callbacks):
    issued = make_key(rotate_every=DAY, now=T0)
    with django_capture_on_commit_callbacks() as callbacks:
        apikey_rotate(key_id=issued.key.pk, caller=Caller.operator(audit.Actor.user(issued.key.user)))

    assert enqueued_by_apikeys(callbacks) == [], "the owner rotated it and was handed the key"
    assert mail.outbox == []
    assert successors_of(issued.key).get().pending_secret == "", "the owner already has the key"


# --- The audit trail --------------------------------------------------------------------------


def one_event(action: str, key: ApiKey) -> AuditEvent:
    [event] = events(action, key)
    return event


def test_create_rotate_reveal_revoke_and_expiry_each_record_one_event(make_key, owner):
    user = ("user", str(owner.pk))
    issued = make_key(rotate_every=DAY, grace_period=HOUR, now=T0)
    created = one_event("apikey.created", issued.key)
    assert (created.actor_type, created.actor_id) == user
    assert created.data["scope"] == "profile idp.manage"

    manual = apikey_rotate(key_id=issued.key.pk, caller=Caller.operator(audit.Actor.user(owner)), now=T0 + HOUR)
    rotated = one_event("apikey.rotated", issued.key)
    assert (rotated.actor_type, rotated.actor_id) == user
    assert rotated.data["successor"] == manual.key.public_id
    assert rotated.data["scheduled"] is False

    assert apikeys_rotate_due(now=T0 + HOUR + DAY) == 1
    scheduled_successor = successors_of(manual.key).get()
    scheduled = one_event("apikey.rotated", manual.key)
    assert (scheduled.actor_type, scheduled.actor_id) == SCHEDULER
    assert scheduled.data["successor"] == scheduled_successor.public_id
    assert scheduled.data["scheduled"] is True

    apikey_reveal(key_id=scheduled_successor.pk, caller=Caller.operator(audit.Actor.user(owner)))
    revealed = one_event("apikey.revealed", scheduled_successor)
    assert (revealed.actor_type, revealed.actor_id) == user

    apikey_revoke(key_id=scheduled_successor.pk, actor=audit.Actor.user(owner), reason="leaked in a log")
    apikey_revoke(key_id=scheduled_successor.pk, actor=audit.Actor.user(owner), reason="twice")
    revoked = one_event("apikey.revoked", scheduled_successor)
    assert (revoked.actor_type, revoked.actor_id) == user
    assert revoked.data == {"reason": "leaked in a log"}

    assert apikeys_end_due(now=T0 + 3 * DAY) == 2  # both rotated keys' grace periods are over
    for ended in (issued.key, manual.key):
        expired = one_event("apikey.expired", ended)
        assert (expired.actor_type, expired.actor_id) == SCHEDULER
    assert events("apikey.expired", scheduled_successor) == [], "a revoked key's end is its revocation"

    # No secret anywhere in the trail.
    for event in AuditEvent.objects.all():
        assert "idpk_" not in json.dumps(event.data)


# --- Celery beat -----------------------------------------------------------------------------


def test_the_sweeps_are_beat_rows_every_minute(db):
    from django_celery_beat.models import PeriodicTask

    for name, task in [("rotate-due-apikeys", rotate_due_apikeys), ("end-expired-apikeys", end_expired_apikeys)]:
        row = PeriodicTask.objects.select_related("interval").get(name=name)
        assert row.task == task.name
        assert row.enabled is True
        assert (row.interval.every, row.interval.period) == (1, "minutes")
        assert row.crontab is None
    cleanup = PeriodicTask.objects.get(name="clear-expired-tokens")
    assert cleanup.task == "idp.tasks.clear_expired_tokens"
    assert cleanup.enabled is True


# Transactional: the scheduler closes a connection it finds inside a transaction. The flush between
# transactional tests removes the migration's rows, so the test writes the edited rows itself.
def test_beat_starting_keeps_the_edits_made_in_admin(transactional_db):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    assert settings.CELERY_BEAT_SCHEDULE == {}
    assert celery_app.conf.beat_schedule == {}
    every_five, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.update_or_create(
        name="rotate-due-apikeys", defaults={"task": rotate_due_apikeys.name, "interval": every_five}
    )
    PeriodicTask.objects.update_or_create(
        name="end-expired-apikeys",
        defaults={"task": end_expired_apikeys.name, "interval": every_five, "enabled": False},
    )

    scheduler = DatabaseScheduler(app=celery_app)  # what `celery beat` does at start

    rotate = PeriodicTask.objects.select_related("interval").get(name="rotate-due-apikeys")
    assert (rotate.interval.every, rotate.interval.period) == (5, "minutes")
    assert PeriodicTask.objects.get(name="end-expired-apikeys").enabled is False
    assert scheduler.schedule["rotate-due-apikeys"].schedule.run_every == timedelta(minutes=5)
    assert "end-expired-apikeys" not in scheduler.schedule, "a disabled row is not scheduled"
