"""Writes of API keys: create, rotate (by hand or on schedule), reveal, revoke, and the sweeps."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from prometheus_client import Counter

import audit
from accounts.models import Role
from accounts.selectors import Caller, Holdings, holdings_of, subject_roles, user_may_receive_tokens
from accounts.services import caller_holds_check
from apikeys import signals
from apikeys.keyformat import key_digest, key_new, public_id_new
from apikeys.models import ApiKey
from apikeys.selectors import (
    VerifiedKey,
    apikey_verify,
    apikeys_due,
    apikeys_ended,
    apikeys_pending_past_grace,
)
from apikeys.usage import usage_available, usage_forget, usage_note, usage_pending, usage_time

logger = logging.getLogger(__name__)

# Scopes that belong to interactive sign-in, never to a key.
SIGN_IN_ONLY_SCOPES = frozenset({"openid", "offline_access"})
MIN_ROTATION_INTERVAL = timedelta(hours=1)
MAX_GRACE_PERIOD = timedelta(days=30)
# Without Redis (the embedded default), last_used_at is written by the request, at most once per key
# in this many seconds (the in-process cache decides). With Redis, apikeys.usage.
LAST_USED_RESOLUTION_SECONDS = 60
# The writer of noted uses (apikeys_record_uses) takes about this many per transaction, and at most
# this many batches a run; the next run (10 s later) takes the rest.
USES_BATCH = 5000
USES_MAX_BATCHES = 100
# Counted in the process that verified the key (prometheus_client: under gunicorn, its multiprocess
# files), with no network call; /metrics and the activity overview read it (idp.ops.metrics).
APIKEY_USES = Counter("idp_apikey_uses", "Uses of API keys that verified: API calls and introspections.")
# The sweeps handle at most this many keys per run; the next run takes the rest.
SWEEP_BATCH = 500


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str  # the whole raw key, handed out once


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.KEY_ENCRYPTION_KEYS])


def apikey_scope_choices(*, application: Any = None) -> list[str]:
    """The scopes a key may carry: known scopes except the sign-in ones, and for a key with a
    client only those the client is registered for."""
    known = [scope for scope in settings.OAUTH2_PROVIDER["SCOPES"] if scope not in SIGN_IN_ONLY_SCOPES]
    if application is None:
        return known
    return [scope for scope in known if scope in application.scope_list]


def apikey_role_choices(*, user: Any = None, application: Any = None) -> list[Role]:
    """The roles a key may carry: those its owner holds, as seen by the key's client."""
    if user is not None:
        roles = subject_roles(user_id=user.pk, application_pk=getattr(application, "pk", None))
    else:
        roles = subject_roles(client_pk=application.pk, application_pk=application.pk)
    return list(Role.objects.filter(pk__in=roles.values("pk")).select_related("application"))


def _check_policy(*, rotate_every: timedelta | None, grace_period: timedelta) -> None:
    if rotate_every is not None and rotate_every < MIN_ROTATION_INTERVAL:
        raise ValidationError({"rotate_every": "rotation interval must be at least one hour"})
    if not timedelta(0) <= grace_period <= MAX_GRACE_PERIOD:
        raise ValidationError({"grace_period": "grace period must be between 0 and 30 days"})


@transaction.atomic
def apikey_create(
    *,
    name: str,
    caller: Caller,
    user: Any = None,
    application: Any = None,
    scopes: Sequence[str] = (),
    role_ids: Sequence[int] = (),
    expires_at: datetime | None = None,
    rotate_every: timedelta | None = None,
    grace_period: timedelta = timedelta(hours=24),
    now: datetime | None = None,
) -> IssuedKey:
    """Issue a key for a user (optionally for one client) or, without a user, for a machine
    client. Returns the raw key once, to a caller holding every role the key carries
    (caller_holds_check); only its keyed hash is stored."""
    now = now or timezone.now()
    if user is None and application is None:
        raise ValidationError("a key needs an owner: a user or a client")
    if (user is not None and not user.is_active) or (application is not None and not application.is_active):
        raise ValidationError("the owner is deactivated")
    if user is not None and not user_may_receive_tokens(user):
        # A self-registered user gets no credential of any kind before the address is verified.
        raise ValidationError("verify your e-mail address first")
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": "name must be 1 to 100 characters"})
    allowed = apikey_scope_choices(application=application)
    unknown = sorted(set(scopes) - set(allowed))
    if unknown:
        raise ValidationError({"scope": f"scopes not allowed for this key: {' '.join(unknown)}"})
    role_choices = {role.pk: role for role in apikey_role_choices(user=user, application=application)}
    if not set(role_ids) <= set(role_choices):
        raise ValidationError({"roles": "a key can only carry roles its owner holds"})
    caller_holds_check(
        caller=caller, carries=_carried(user=user, application=application, role_ids=role_ids), doing="create this key"
    )
    if expires_at is not None and expires_at <= now:
        raise ValidationError({"expires_at": "expiry must be in the future"})
    _check_policy(rotate_every=rotate_every, grace_period=grace_period)
    key = ApiKey(
        public_id=public_id_new(),
        user=user,
        application=application,
        name=name,
        scope=" ".join(scope for scope in allowed if scope in scopes),
        created_at=now,
        expires_at=expires_at,
        rotate_every=rotate_every,
        grace_period=grace_period,
        next_rotation_at=now + rotate_every if rotate_every else None,
    )
    secret = key_new(key.public_id)
    key.secret_hash = key_digest(secret)
    key.save()
    key.roles.set([role_choices[pk] for pk in role_ids])
    audit.record(
        audit.Action.APIKEY_CREATED,
        actor=caller.actor,
        target=audit.Target.api_key(key),
        client_id=application.client_id if application is not None else "",
        data={"name": key.name, "scope": key.scope, "roles": sorted(role_choices[pk].name for pk in role_ids)},
    )
    return IssuedKey(key=key, secret=secret)


def _carried(*, user: Any, application: Any, role_ids: Sequence[int]) -> Holdings:
    """What a key with these roles carries: those of them its owner holds, with their permissions."""
    if not role_ids:
        return Holdings()
    if user is not None:
        return holdings_of(user_id=user.pk, among=role_ids)
    return holdings_of(client_pk=application.pk, among=role_ids)


def _key_carries(key: ApiKey) -> Holdings:
    return _carried(
        user=key.user if key.user_id is not None else None,
        application=key.application,
        role_ids=list(key.roles.values_list("pk", flat=True)),
    )


def _rotate(
    key: ApiKey,
    *,
    actor: audit.Actor,
    now: datetime,
    scheduled: bool,
    on_rotated: Callable[[int], Any] | None = None,
) -> IssuedKey:
    """Make the successor of a locked, usable, not yet rotated key; the old key lives on for its
    grace period. A scheduled rotation keeps the new secret encrypted for the owner to reveal."""
    lifetime = key.expires_at - key.created_at if key.expires_at is not None else None
    successor = ApiKey(
        public_id=public_id_new(),
        user_id=key.user_id,
        application_id=key.application_id,
        name=key.name,
        scope=key.scope,
        created_at=now,
        expires_at=now + lifetime if lifetime is not None else None,
        rotate_every=key.rotate_every,
        grace_period=key.grace_period,
        next_rotation_at=now + key.rotate_every if key.rotate_every else None,
        rotated_from=key,
    )
    secret = key_new(successor.public_id)
    successor.secret_hash = key_digest(secret)
    if scheduled:
        successor.pending_secret = _fernet().encrypt(secret.encode()).decode()
    # The unique rotated_from column is the last line of defence: a second successor of the same
    # key cannot be inserted, whatever the locking above did.
    successor.save()
    successor.roles.set(key.roles.all())
    signals.rotation_in_progress.send(sender=ApiKey, key=key, successor=successor)
    key.grace_ends_at = now + key.grace_period
    key.next_rotation_at = None
    key.save(update_fields=["grace_ends_at", "next_rotation_at"])
    audit.record(
        audit.Action.APIKEY_ROTATED,
        actor=actor,
        target=audit.Target.api_key(key),
        client_id=key.application.client_id if key.application is not None else "",
        data={
            "successor": successor.public_id,
            "grace_ends_at": key.grace_ends_at.isoformat(),
            "scheduled": scheduled,
        },
    )
    if on_rotated is not None:
        transaction.on_commit(lambda: on_rotated(successor.pk))
    return IssuedKey(key=successor, secret=secret)


@transaction.atomic
def apikey_rotate(*, key_id: int, caller: Caller, now: datetime | None = None) -> IssuedKey:
    """Rotate a key now: returns its successor's raw key once, to a caller holding every role it
    carries (caller_holds_check). The successor keeps owner, name, scopes, roles and schedule; the
    old key keeps working for its grace period. A key already rotated is refused (rotate its
    successor), so a double click cannot make two."""
    now = now or timezone.now()
    key = ApiKey.objects.select_for_update(of=("self",)).select_related("application", "user").get(pk=key_id)
    caller_holds_check(caller=caller, carries=_key_carries(key), doing="rotate this key")
    if key.grace_ends_at is not None:
        raise ValidationError("this key was already rotated; rotate its successor")
    if not key.is_usable(now):
        raise ValidationError("only a usable key can be rotated")
    return _rotate(key, actor=caller.actor, now=now, scheduled=False)


def apikeys_rotate_due(*, now: datetime, on_rotated: Callable[[int], Any] | None = None) -> int:
    """Rotate every key whose schedule is due, each in its own transaction. Safe to run twice at
    once: a key another worker holds is skipped (it is rotated there), and a rotated key is no
    longer due. on_rotated(successor id) runs once each rotation has committed (the task enqueues
    the owner's notice there; a rolled-back rotation notifies nobody). Returns how many this run
    rotated."""
    rotated = 0
    for _ in range(SWEEP_BATCH):
        with transaction.atomic():
            key = (
                apikeys_due(now=now)
                .filter(Q(user__isnull=True) | Q(user__is_active=True))
                .filter(Q(application__isnull=True) | Q(application__is_active=True))
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("application")
                .order_by("next_rotation_at", "pk")
                .first()
            )
            if key is None:
                break
            _rotate(key, actor=audit.Actor.system("scheduler"), now=now, scheduled=True, on_rotated=on_rotated)
            rotated += 1
    return rotated


@transaction.atomic
def apikey_reveal(*, key_id: int, caller: Caller, now: datetime | None = None) -> str:
    """The raw key of a scheduler-made successor, exactly once, to a caller holding every role it
    carries (caller_holds_check): the stored ciphertext is wiped in the same transaction. Raises
    ValidationError when nothing is pending."""
    now = now or timezone.now()
    key = (
        ApiKey.objects.select_for_update(of=("self",))
        .select_related("rotated_from", "application", "user")
        .get(pk=key_id)
    )
    caller_holds_check(caller=caller, carries=_key_carries(key), doing="reveal this key")
    if not key.has_revealable_secret(now):
        raise ValidationError("there is no new key waiting to be revealed")
    secret = _fernet().decrypt(key.pending_secret.encode()).decode()
    key.pending_secret = ""
    key.save(update_fields=["pending_secret"])
    audit.record(audit.Action.APIKEY_REVEALED, actor=caller.actor, target=audit.Target.api_key(key))
    return secret


@transaction.atomic
def apikey_revoke(*, key_id: int, actor: audit.Actor, reason: str = "", now: datetime | None = None) -> ApiKey:
    """Revoke a key at once. Idempotent: revoking a revoked key changes and records nothing."""
    key = ApiKey.objects.select_for_update().get(pk=key_id)
    if key.revoked_at is not None:
        return key
    key.revoked_at = now or timezone.now()
    key.next_rotation_at = None
    key.pending_secret = ""
    key.save(update_fields=["revoked_at", "next_rotation_at", "pending_secret"])
    audit.record(
        audit.Action.APIKEY_REVOKED, actor=actor, target=audit.Target.api_key(key), data={"reason": reason[:200]}
    )
    return key


@transaction.atomic
def apikey_schedule(
    *,
    key_id: int,
    actor: audit.Actor,
    rotate_every: timedelta | None,
    grace_period: timedelta,
    now: datetime | None = None,
) -> ApiKey:
    """Set or clear a key's rotation schedule; the next rotation counts from now."""
    now = now or timezone.now()
    _check_policy(rotate_every=rotate_every, grace_period=grace_period)
    key = ApiKey.objects.select_for_update().get(pk=key_id)
    if key.grace_ends_at is not None or not key.is_usable(now):
        raise ValidationError("only a usable key that was not rotated yet can be scheduled")
    key.rotate_every = rotate_every
    key.grace_period = grace_period
    key.next_rotation_at = now + rotate_every if rotate_every else None
    key.save(update_fields=["rotate_every", "grace_period", "next_rotation_at"])
    audit.record(
        audit.Action.APIKEY_SCHEDULED,
        actor=actor,
        target=audit.Target.api_key(key),
        data={
            "rotate_every_seconds": int(rotate_every.total_seconds()) if rotate_every else None,
            "grace_seconds": int(grace_period.total_seconds()),
        },
    )
    return key


def apikeys_end_due(*, now: datetime) -> int:
    """Record the end of every key whose grace period or lifetime ran out (verification already
    refuses them; this makes it visible and audited), and wipe every successor's secret that was
    not revealed within its predecessor's grace period. Each key once, in its own transaction;
    safe to run twice at once."""
    ended = 0
    for _ in range(SWEEP_BATCH):
        with transaction.atomic():
            key = apikeys_ended(now=now).select_for_update(skip_locked=True).order_by("pk").first()
            if key is None:
                break
            key.ended_at = now
            key.next_rotation_at = None
            key.pending_secret = ""
            key.save(update_fields=["ended_at", "next_rotation_at", "pending_secret"])
            grace_over = key.grace_ends_at is not None and key.grace_ends_at <= now
            audit.record(
                audit.Action.APIKEY_EXPIRED,
                actor=audit.Actor.system("scheduler"),
                target=audit.Target.api_key(key),
                data={"reason": "grace_period_ended" if grace_over else "expired"},
            )
            ended += 1
    # Not in the loop: a predecessor revoked, or ended by its own expiry before its grace period
    # was over, is never seen there again, yet its successor's unrevealed secret must go.
    apikeys_pending_past_grace(now=now).update(pending_secret="")
    return ended


def _used_marker(key: ApiKey) -> str:
    # By public id, not row id: random and never reused, even by a restored or recreated database.
    return f"apikey:used:{key.public_id}"


def _last_used_claim(key: ApiKey) -> bool:
    """Without Redis (the embedded default): whether this use is the one to write last_used_at,
    the first for the key in its minute, as the in-process cache decides."""
    return bool(cache.add(_used_marker(key), 1, LAST_USED_RESOLUTION_SECONDS))


def apikey_use(*, presented: str, now: datetime | None = None, narrow: bool = False) -> VerifiedKey | None:
    """Verify a presented key and note its use: counted (APIKEY_USES, in this process), and its
    time noted in Redis for apikeys_record_uses to write (apikeys.usage): no database write on the
    request. Without Redis, last_used_at is written here at most once a minute per key. `narrow`:
    see apikey_verify."""
    now = now or timezone.now()
    verified = apikey_verify(presented=presented, now=now, narrow=narrow)
    if verified is None:
        return None
    APIKEY_USES.inc()
    if usage_available():
        usage_note(public_id=verified.key.public_id, now=now)
    elif _last_used_claim(verified.key):
        ApiKey.objects.filter(pk=verified.key.pk).update(last_used_at=now)
    return verified


def apikey_use_noted(*, public_id: str, now: datetime) -> None:
    """The use of a key that verified against a kept introspection answer (idp's shared cache, so
    Redis is there): counted and noted as apikey_use counts and notes it."""
    APIKEY_USES.inc()
    usage_note(public_id=public_id, now=now)


def apikeys_record_uses(*, batch: int = USES_BATCH) -> int:
    """Write the last uses noted in Redis to last_used_at, a batch per transaction, never moving
    it back; after each batch, remove the notes written (a use noted meanwhile stays for the next
    run). Returns how many notes were written. Safe to run twice at once: both write the same times."""
    if not usage_available():
        return 0
    recorded = 0
    for _ in range(USES_MAX_BATCHES):  # bounded: notes keep arriving while it runs
        taken = usage_pending(batch=batch)
        if not taken:
            break
        _last_used_write(taken)
        usage_forget(taken)
        recorded += len(taken)
    return recorded


def _last_used_write(taken: dict[str, str]) -> None:
    uses = sorted((public_id, usage_time(value)) for public_id, value in taken.items())  # one lock order
    with transaction.atomic():
        if connection.vendor == "postgresql":  # one statement for the batch
            table = connection.ops.quote_name(ApiKey._meta.db_table)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} AS key SET last_used_at = used.at "  # noqa: S608 - the model's own table
                    "FROM unnest(%s::varchar[], %s::timestamptz[]) AS used(public_id, at) "
                    "WHERE key.public_id = used.public_id AND (key.last_used_at IS NULL OR key.last_used_at < used.at)",
                    [[public_id for public_id, _ in uses], [when for _, when in uses]],
                )
        else:
            for public_id, when in uses:
                ApiKey.objects.filter(public_id=public_id).filter(
                    Q(last_used_at__isnull=True) | Q(last_used_at__lt=when)
                ).update(last_used_at=when)


def apikey_notify_rotated(*, key_id: int) -> bool:
    """Tell the owner by email that the scheduler rotated their key and a new one waits on the
    dashboard. The email never holds the key. Returns whether an email went out."""
    key = ApiKey.objects.select_related("user", "application__user", "rotated_from").get(pk=key_id)
    owner = key.user
    if owner is None:
        assert key.application is not None  # apikeys_apikey_has_owner: a key without a user has a client
        owner = key.application.user
    if owner is None or not owner.email:
        logger.warning("api key %s rotated; its owner has no email address to notify", key.public_id)
        return False
    dashboard = f"{settings.ISSUER}/dashboard/" if settings.ISSUER else "/dashboard/"
    grace_ends_at = key.rotated_from.grace_ends_at if key.rotated_from is not None else None
    send_mail(
        subject=f"Your API key {key.name!r} was rotated",
        message=(
            f"The API key {key.name!r} was rotated on its schedule. Its successor, {key.public_id}, "
            f"is waiting for you on the dashboard, where you can reveal it once:\n\n    {dashboard}\n\n"
            + (
                f"The previous key keeps working until {grace_ends_at:%Y-%m-%d %H:%M} UTC; reveal the new "
                "key and deploy it before then. An unrevealed key is discarded when that time passes.\n"
                if grace_ends_at is not None
                else ""
            )
        ),
        from_email=None,
        recipient_list=[owner.email],
    )
    return True


def ciphertext_reencrypt(ciphertext: str) -> str | None:
    """A Fernet ciphertext under the first of KEY_ENCRYPTION_KEYS (MultiFernet.rotate), or None
    when it already is. Raises InvalidToken when it is under none of them. Shared by every
    re-encryption (idp.keys.encryption): API keys' pending secrets here, signing keys there."""
    token = ciphertext.encode()
    try:
        Fernet(settings.KEY_ENCRYPTION_KEYS[0].encode()).decrypt(token)
        return None
    except InvalidToken:
        return _fernet().rotate(token).decode()


def rows_reencrypt(rows: Iterable[Any], *, field: str, describe: Callable[[Any], str]) -> int:
    """Re-encrypt `field` of each row under the first of KEY_ENCRYPTION_KEYS (rows already under it
    are left alone). Returns how many changed; raises ImproperlyConfigured when a row is under none
    of the configured keys, naming it by `describe`: the caller's transaction then changes nothing."""
    reencrypted = 0
    for row in rows:
        try:
            rotated = ciphertext_reencrypt(getattr(row, field))
        except InvalidToken:
            raise ImproperlyConfigured(f"{describe(row)} is encrypted under none of IDP_KEY_ENCRYPTION_KEYS") from None
        if rotated is None:
            continue
        setattr(row, field, rotated)
        row.save(update_fields=[field])
        reencrypted += 1
    return reencrypted


@transaction.atomic
def apikey_secrets_reencrypt() -> int:
    """Re-encrypt every pending (scheduler-made, not yet revealed) secret under the first of
    KEY_ENCRYPTION_KEYS, locking each row. A secret already under that key is left alone, so a
    second run changes nothing. Returns how many were re-encrypted; raises ImproperlyConfigured,
    changing nothing, when a secret is under none of the configured keys."""
    pending = ApiKey.objects.exclude(pending_secret="").select_for_update(of=("self",)).order_by("pk")
    return rows_reencrypt(
        pending.only("pk", "public_id", "pending_secret"),
        field="pending_secret",
        describe=lambda key: f"the pending secret of API key {key.public_id}",
    )
