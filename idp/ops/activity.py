"""The activity overview (/dashboard/activity/, idp.pages.dashboard.ActivityView): the last 24 hours per
UTC hour, two totals only Prometheus keeps, the latest alerts and the keys due for rotation.

Each number is read from the one store that holds its kind of fact:
- tokens issued, failed sign-ins and lockouts are security facts, rows of the audit table
  (token.issued plus token.refreshed, every grant that issued a token; login.failed;
  login.locked_out): hour by hour over the last 24 hours, in one grouped query;
- 429 responses and API-key uses are counts, kept by Prometheus only (idp_http_requests_total by
  status, which every refused request is, and idp_apikey_uses_total). A web server holds no
  history of them: the page shows this server's totals since it started, read from the same
  multiprocess registry its /metrics serves (idp.ops.metrics.counter_values); the hourly history
  is Prometheus's, and the page names the query.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count
from django.db.models.functions import TruncHour

import audit
from apikeys.selectors import apikeys_rotation_upcoming
from audit.models import AuditEvent
from idp.models import SigningKey
from idp.ops.metrics import counter_values, counting_since

HOUR = timedelta(hours=1)
HOURS_SHOWN = 24
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
    "lockouts": (audit.Action.LOGIN_LOCKED_OUT,),
}
REQUESTS_METRIC = "idp_http_requests"
APIKEY_USES_METRIC = "idp_apikey_uses"


@dataclass(frozen=True)
class HourCount:
    hour: datetime  # the start of a UTC hour
    count: int


@dataclass(frozen=True)
class HourlySeries:
    """One audited measure per UTC hour over the last 24 hours, oldest first, hours without any at 0."""

    key: str
    title: str
    source: str
    buckets: tuple[HourCount, ...]

    @property
    def total(self) -> int:
        return sum(bucket.count for bucket in self.buckets)

    @property
    def peak(self) -> HourCount:
        """The busiest hour; the latest of equals, so an all-zero series names the current hour."""
        return max(reversed(self.buckets), key=lambda bucket: bucket.count)


@dataclass(frozen=True)
class CounterTotal:
    """A count only Prometheus keeps: this web server's total since it started. It has no hourly
    history here; Prometheus has, by history_query."""

    key: str
    title: str
    source: str
    history_query: str
    total: int
    by_route: tuple[tuple[str, int], ...] = ()  # URL route and its share, the largest first


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
    totals: tuple[CounterTotal, ...]
    totals_since: datetime  # when this web server started counting them
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


def _series(key: str, title: str, source: str, hours: list[datetime], counts: list[int]) -> HourlySeries:
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


def _prometheus_totals() -> tuple[CounterTotal, ...]:
    """The 429s by route and the API-key uses, as this server's /metrics has them: no network call,
    one read of the metrics files (or of this process's registry, outside gunicorn)."""
    values = counter_values(REQUESTS_METRIC, APIKEY_USES_METRIC)
    refused: Counter[str] = Counter()
    for labels, value in values[REQUESTS_METRIC]:
        if labels.get("status") == "429" and value:
            refused[labels.get("endpoint", "")] += int(value)
    return (
        CounterTotal(
            key="rate_limited",
            title="429 responses",
            source=(
                'Prometheus: idp_http_requests_total{status="429"}, every request refused by a rate limit '
                "or by a sign-in lockout, by URL route."
            ),
            history_query='sum by (endpoint) (increase(idp_http_requests_total{status="429"}[1h]))',
            total=sum(refused.values()),
            by_route=tuple(sorted(refused.items(), key=lambda item: (-item[1], item[0]))),
        ),
        CounterTotal(
            key="apikey_uses",
            title="API key uses",
            source="Prometheus: idp_apikey_uses_total, API calls and introspections with an API key that verified.",
            history_query="sum(increase(idp_apikey_uses_total[1h]))",
            total=int(sum(value for _, value in values[APIKEY_USES_METRIC])),
        ),
    )


def activity_overview(*, now: datetime) -> ActivityOverview:
    """Everything the activity page shows, at `now`. A fixed number of reads whatever the data:
    one grouped audit query, one read of this server's metrics, one query each for alerts (plus
    their users) and for each kind of key due."""
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
                "lockouts",
                "Sign-in lockouts",
                "Audit log: login.locked_out, one per lockout started by repeated failed sign-ins.",
                hours,
                audited["lockouts"],
            ),
        ),
        totals=_prometheus_totals(),
        totals_since=counting_since(),
        alerts=_latest_alerts(),
        signing_keys_due=_signing_keys_due(now=now),
        apikeys_due=apikeys_due,
        has_more_apikeys_due=has_more,
    )
