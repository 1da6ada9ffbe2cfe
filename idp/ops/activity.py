"""The activity overview (/dashboard/activity/, idp.pages.dashboard.ActivityView): the last 24 hours per
UTC hour, the latest alerts and the keys due for rotation; and the hourly counter of 429s it reads.

Where each number comes from:
- tokens issued and failed sign-ins: the audit table, the source of truth (token.issued plus
  token.refreshed, every grant that issued a token; login.failed), in one grouped query;
- 429s: nothing else records them, so every refusal (the rate limits, idp.http.ratelimit, and the
  sign-in lockout page, idp.http.lockout) increments an hourly counter here;
- API-key uses: apikeys' hourly counter (apikeys.selectors.apikey_uses_by_hour).
Both counters live in the default cache, which is Redis wherever more than one process runs
(production refuses anything else), so every process counts into, and reads, the same numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone
from redis.exceptions import RedisError

import audit
from apikeys.selectors import apikey_uses_by_hour, apikeys_rotation_upcoming
from audit.models import AuditEvent
from idp.models import SigningKey

log = logging.getLogger("idp.ops.activity")

HOUR = timedelta(hours=1)
HOURS_SHOWN = 24
# An hour's counter outlives the 24 hours shown by a margin, then Redis drops it.
REFUSAL_COUNTER_TTL_SECONDS = 26 * 3600
# Keys are listed once their rotation is this close (overdue ones first).
ROTATION_WINDOW = timedelta(days=7)
LATEST_ALERTS = 10
API_KEYS_DUE_SHOWN = 20
# Events that ask for a person's attention: every alert.*, plus the two that are alerts by
# outcome (a refresh token presented twice, a sign-in lockout starting).
ALERT_ACTIONS: tuple[str, ...] = (
    *(str(action) for action in audit.Action if action.startswith("alert.")),
    str(audit.Action.LOGIN_LOCKED_OUT),
    str(audit.Action.TOKEN_REUSE_DETECTED),
)
# Series drawn from the audit table: series key -> the actions it counts.
_AUDIT_SERIES: dict[str, tuple[str, ...]] = {
    "tokens": (audit.Action.TOKEN_ISSUED, audit.Action.TOKEN_REFRESHED),
    "failed_signins": (audit.Action.LOGIN_FAILED,),
}


# --- The 429 counter ---------------------------------------------------------------------------


def refusal_counter_key(moment: datetime) -> str:
    """The cache key of the hourly 429 counter holding `moment`."""
    return f"idp:activity:429:{moment.astimezone(UTC):%Y%m%d%H}"


def refusal_note(*, now: datetime | None = None) -> None:
    """Count one 429 in its UTC hour: one INCR and EXPIRE, pipelined, on the refusal path only.
    Never raises: when Redis cannot be reached the refusal goes uncounted and a warning is
    logged, as the limiter does with its own storage."""
    counter = refusal_counter_key(now or timezone.now())
    backend = caches["default"]
    try:
        if isinstance(backend, RedisCache):
            # Django's cache API has no pipeline; its client (the backend's private _cache, which
            # keeps the connection pool) takes INCR and EXPIRE as one MULTI/EXEC round trip. The
            # key is made as the cache makes it, so cache.get_many reads it back.
            key = backend.make_and_validate_key(counter)
            pipe = backend._cache.get_client(key, write=True).pipeline()
            pipe.incr(key)
            pipe.expire(key, REFUSAL_COUNTER_TTL_SECONDS)
            pipe.execute()
        else:  # the development default's in-process cache: one process, nothing to share
            backend.add(counter, 0, REFUSAL_COUNTER_TTL_SECONDS)
            backend.incr(counter)
    except (RedisError, ValueError):  # ValueError: the in-process counter expired between add and incr
        log.warning("429 not counted: the cache is unavailable", exc_info=True)


def _refusals_by_hour(hours: list[datetime]) -> list[int] | None:
    keys = [refusal_counter_key(hour) for hour in hours]
    try:
        found = cache.get_many(keys)
    except RedisError:
        log.warning("429 counters unavailable", exc_info=True)
        return None
    return [int(found.get(key, 0)) for key in keys]


# --- The overview --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HourCount:
    hour: datetime  # the start of a UTC hour
    count: int


@dataclass(frozen=True)
class HourlySeries:
    """One measure per UTC hour over the last 24 hours, oldest first, hours without any at 0.
    Not available when its store could not be read: then the counts are unknown, not zero."""

    key: str
    title: str
    source: str
    buckets: tuple[HourCount, ...]
    is_available: bool = True

    @property
    def total(self) -> int:
        return sum(bucket.count for bucket in self.buckets)

    @property
    def peak(self) -> HourCount:
        """The busiest hour; the latest of equals, so an all-zero series names the current hour."""
        return max(reversed(self.buckets), key=lambda bucket: bucket.count)


@dataclass(frozen=True)
class Alert:
    at: datetime
    action: str
    subject: str  # whom or what it concerns, as readable as the row allows
    source_ip: str
    details: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DueKey:
    """A key whose scheduled rotation is near or overdue."""

    identifier: str  # a signing key's kid, an API key's public id
    label: str  # the algorithm, or the API key's name
    owner: str  # an API key's user or machine client; empty for signing keys
    due_at: datetime
    is_overdue: bool


@dataclass(frozen=True)
class ActivityOverview:
    now: datetime
    series: tuple[HourlySeries, ...]
    alerts: tuple[Alert, ...]
    signing_keys_due: tuple[DueKey, ...]
    apikeys_due: tuple[DueKey, ...]
    has_more_apikeys_due: bool  # more than API_KEYS_DUE_SHOWN: the API-key list has them all
    rotation_window: timedelta = ROTATION_WINDOW
    alert_limit: int = LATEST_ALERTS


def activity_hours(*, now: datetime) -> list[datetime]:
    """The 24 UTC hours ending with the one holding `now` (still counting), oldest first."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [current - HOUR * back for back in range(HOURS_SHOWN - 1, -1, -1)]


def _series(key: str, title: str, source: str, hours: list[datetime], counts: list[int] | None) -> HourlySeries:
    if counts is None:
        return HourlySeries(key, title, source, tuple(HourCount(hour, 0) for hour in hours), is_available=False)
    return HourlySeries(
        key, title, source, tuple(HourCount(hour, count) for hour, count in zip(hours, counts, strict=True))
    )


def _audit_counts(hours: list[datetime]) -> dict[str, list[int]]:
    """Every audit-table series in one query, grouped by action and UTC hour (the index on
    action, created_at makes it one range scan per action)."""
    action_series = {action: key for key, actions in _AUDIT_SERIES.items() for action in actions}
    rows = (
        AuditEvent.objects.filter(action__in=action_series, created_at__gte=hours[0], created_at__lt=hours[-1] + HOUR)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .order_by()  # the model orders by id, which would otherwise join the GROUP BY
        .values_list("action", "hour")
        .annotate(count=Count("id"))
    )
    position = {hour: index for index, hour in enumerate(hours)}
    counts = {key: [0] * len(hours) for key in _AUDIT_SERIES}
    for action, hour, count in rows:
        index = position.get(hour)
        if index is not None:  # always, given the range filtered on; never a KeyError on a page
            counts[action_series[action]][index] += count
    return counts


def _alert_subject(event: AuditEvent, usernames: dict[str, str]) -> str:
    if event.target_type == "user":
        return usernames.get(event.target_id, f"user #{event.target_id} (no longer exists)")
    if event.target_type:
        return f"{event.target_type} {event.target_id}"
    if event.data.get("account") == "unknown":
        return "a username that is no account"
    if event.data.get("source_ip"):  # the brute-force watch's alert for one address
        return f"address {event.data['source_ip']}"
    return event.client_id or "-"


def _latest_alerts() -> tuple[Alert, ...]:
    events = list(AuditEvent.objects.filter(action__in=ALERT_ACTIONS).order_by("-created_at", "-id")[:LATEST_ALERTS])
    user_ids = {event.target_id for event in events if event.target_type == "user" and event.target_id.isdigit()}
    usernames = (
        {str(pk): name for pk, name in get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username")}
        if user_ids
        else {}
    )
    return tuple(
        Alert(
            at=event.created_at,
            action=event.action,
            subject=_alert_subject(event, usernames),
            source_ip=event.source_ip,
            details=tuple((str(name), _detail_text(value)) for name, value in sorted(event.data.items())),
        )
        for event in events
    )


def _detail_text(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def _signing_keys_due(*, now: datetime) -> tuple[DueKey, ...]:
    keys = SigningKey.objects.filter(
        status=SigningKey.Status.ACTIVE, rotate_at__isnull=False, rotate_at__lte=now + ROTATION_WINDOW
    ).order_by("rotate_at", "algorithm")
    return tuple(
        DueKey(identifier=key.kid, label=key.algorithm, owner="", due_at=key.rotate_at, is_overdue=key.rotate_at <= now)
        for key in keys
        if key.rotate_at is not None
    )


def _apikey_owner(key: Any) -> str:
    if key.user is not None:
        return str(key.user.get_username())
    return str(key.application.name or key.application.client_id)  # a machine client's key


def _apikeys_due(*, now: datetime) -> tuple[tuple[DueKey, ...], bool]:
    keys = list(apikeys_rotation_upcoming(now=now, within=ROTATION_WINDOW)[: API_KEYS_DUE_SHOWN + 1])
    due = tuple(
        DueKey(
            identifier=key.public_id,
            label=key.name,
            owner=_apikey_owner(key),
            due_at=key.next_rotation_at,
            is_overdue=key.next_rotation_at <= now,
        )
        for key in keys[:API_KEYS_DUE_SHOWN]
        if key.next_rotation_at is not None
    )
    return due, len(keys) > API_KEYS_DUE_SHOWN


def activity_overview(*, now: datetime) -> ActivityOverview:
    """Everything the activity page shows, at `now`. A fixed number of reads whatever the data:
    one grouped audit query, one MGET per counter, one query each for alerts (plus their users)
    and for each kind of key due."""
    hours = activity_hours(now=now)
    audited = _audit_counts(hours)
    apikeys_due, has_more = _apikeys_due(now=now)
    return ActivityOverview(
        now=now,
        series=(
            _series(
                "tokens",
                "Tokens issued",
                "Audit log: token.issued and token.refreshed, one per access token issued.",
                hours,
                audited["tokens"],
            ),
            _series(
                "failed_signins",
                "Failed sign-ins",
                "Audit log: login.failed, one per refused password.",
                hours,
                audited["failed_signins"],
            ),
            _series(
                "rate_limited",
                "429 responses",
                "Hourly counter in Redis: requests refused by a rate limit or by a sign-in lockout.",
                hours,
                _refusals_by_hour(hours),
            ),
            _series(
                "apikey_uses",
                "API key uses",
                "Hourly counter in Redis: API calls and introspections with a valid API key.",
                hours,
                apikey_uses_by_hour(hours=hours),
            ),
        ),
        alerts=_latest_alerts(),
        signing_keys_due=_signing_keys_due(now=now),
        apikeys_due=apikeys_due,
        has_more_apikeys_due=has_more,
    )
