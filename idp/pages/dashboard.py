"""Staff pages on the dashboard (/dashboard/) over idp's own data: the signing keys, with a
"rotate now" per algorithm (idp.keys.signing), and the activity overview (idp.ops.activity). Thin
adapters; the API-key pages are apikeys'.

Only staff holding the page's permission see it (idp.rotate_signingkey, idp.view_activity;
superusers hold every permission): anyone else signed in gets 403, anyone signed out the sign-in
page. Every POST redirects back to the page with a message (post/redirect/get).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin, PermissionRequiredMixin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache

import audit
from idp.keys.rotation import signing_key_rotate_now, signing_keys_overview
from idp.models import SigningKey
from idp.ops.activity import HourlySeries, activity_overview


def _duration_text(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"


def _time_text(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class KeyChain:
    """One algorithm's keys as the page shows them, in lifecycle order (next, active, retired)."""

    algorithm: str
    keys: list[SigningKey]
    is_configured: bool  # an algorithm dropped from IDP_SIGNING_ALGORITHMS still lists its keys, unrotatable
    next_ready_at: datetime | None  # when the next key may take over, if that is still to come

    @property
    def label(self) -> str:
        return dict(SigningKey.Algorithm.choices).get(self.algorithm, self.algorithm)


def _chains(*, now: datetime) -> list[KeyChain]:
    prepublish = timedelta(seconds=settings.SIGNING_KEY_PREPUBLISH_SECONDS)
    chains = []
    for algorithm, keys in signing_keys_overview().items():
        upcoming = next((key for key in keys if key.status == SigningKey.Status.NEXT), None)
        ready_at = upcoming.created_at + prepublish if upcoming is not None else None
        chains.append(
            KeyChain(
                algorithm=algorithm,
                keys=keys,
                is_configured=algorithm in settings.SIGNING_ALGORITHMS,
                next_ready_at=ready_at if ready_at is not None and ready_at > now else None,
            )
        )
    return chains


class StaffPermissionMixin(LoginRequiredMixin, PermissionRequiredMixin):
    """Signed out: the sign-in page. Signed in without staff status and the permission: 403.
    Both are required, so granting the permission to a non-staff account does not open the page."""

    request: HttpRequest  # set by View, which the mixin is combined with

    def has_permission(self) -> bool:
        return self.request.user.is_staff and super().has_permission()


class SigningKeyStaffMixin(StaffPermissionMixin):
    permission_required = "idp.rotate_signingkey"


@method_decorator(never_cache, name="dispatch")
class SigningKeyListView(SigningKeyStaffMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        context = {
            "chains": _chains(now=timezone.now()),
            "prepublish_text": _duration_text(settings.SIGNING_KEY_PREPUBLISH_SECONDS),
        }
        return render(request, "idp/signing_keys.html", context)


@method_decorator(never_cache, name="dispatch")
class SigningKeyRotateView(SigningKeyStaffMixin, View):
    """POST only (GET is a 405). The algorithm comes from the path: anything not configured is a
    404 before the service runs, so an odd segment can neither fail the request nor touch a key."""

    def post(self, request: HttpRequest, algorithm: str) -> HttpResponse:
        if algorithm not in settings.SIGNING_ALGORITHMS:
            raise Http404("no such signing algorithm")
        result = signing_key_rotate_now(algorithm=algorithm, now=timezone.now(), actor=audit.Actor.user(request.user))
        if result.ready_at is not None:
            window = _duration_text(settings.SIGNING_KEY_PREPUBLISH_SECONDS)
            messages.info(
                request,
                f"{algorithm}: the next key has been published for less than {window}; "
                f"it takes over at {_time_text(result.ready_at)}.",
            )
        else:
            assert result.withdraw_previous_at is not None
            messages.success(
                request,
                f"{algorithm}: key {result.rotated_kid} now signs; "
                f"the previous key stays published until {_time_text(result.withdraw_previous_at)}.",
            )
        return redirect("signing-keys")


# --- Activity overview -------------------------------------------------------------------------
# The charts are SVG drawn here, in viewBox units: the browser scales them to the page's width, and
# the CSP (styles and scripts from 'self' only) needs neither a script nor a style attribute. Three
# charts of 24 bars: a few kilobytes of markup, which no charting library would make smaller.
_CHART_WIDTH, _CHART_HEIGHT = 360, 180
_PLOT_LEFT, _PLOT_RIGHT, _PLOT_TOP, _PLOT_BOTTOM = 36.0, 354.0, 10.0, 150.0
_HOUR_LABEL_EVERY = 6  # an hour under the axis every six bars; each bar's <title> names its own


@dataclass(frozen=True)
class Bar:
    hour: datetime
    count: int
    slot_x: float  # the bar's whole column, which carries its tooltip even when the bar is 0 high
    slot_width: float
    x: float
    y: float
    width: float
    height: float
    hour_label: str  # under the axis, or empty

    @property
    def title(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:%M} UTC: {self.count}"

    @property
    def label_x(self) -> float:
        return round(self.slot_x + self.slot_width / 2, 2)


@dataclass(frozen=True)
class Gridline:
    y: float
    label: str


@dataclass(frozen=True)
class BarChart:
    series: HourlySeries
    bars: tuple[Bar, ...]
    gridlines: tuple[Gridline, ...]
    width: int = _CHART_WIDTH
    height: int = _CHART_HEIGHT
    plot_left: float = _PLOT_LEFT
    plot_right: float = _PLOT_RIGHT
    plot_bottom: float = _PLOT_BOTTOM

    @property
    def hour_label_y(self) -> float:
        return self.plot_bottom + 16

    @property
    def axis_label_x(self) -> float:
        return self.plot_left - 5


def _scale_top(peak: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above the peak: round gridline numbers."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if step * top >= peak:
                return step * top
        top *= 10


def _count_text(count: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if count >= 10 * size and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def _bar_chart(series: HourlySeries) -> BarChart:
    top = _scale_top(series.peak.count)
    plot_height = _PLOT_BOTTOM - _PLOT_TOP
    slot = (_PLOT_RIGHT - _PLOT_LEFT) / len(series.buckets)
    bars = []
    for index, bucket in enumerate(series.buckets):
        # A bar that counts anything is at least one unit high, so a 1 beside a 1000 still shows.
        height = max(bucket.count / top * plot_height, 1.0) if bucket.count else 0.0
        slot_x = _PLOT_LEFT + index * slot
        bars.append(
            Bar(
                hour=bucket.hour,
                count=bucket.count,
                slot_x=round(slot_x, 2),
                slot_width=round(slot, 2),
                x=round(slot_x + slot * 0.15, 2),
                y=round(_PLOT_BOTTOM - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
                hour_label=f"{bucket.hour:%H}:00" if bucket.hour.hour % _HOUR_LABEL_EVERY == 0 else "",
            )
        )
    marks = [0, top // 2, top] if top % 2 == 0 else [0, top]
    gridlines = tuple(
        Gridline(y=round(_PLOT_BOTTOM - mark / top * plot_height, 2), label=_count_text(mark)) for mark in marks
    )
    return BarChart(series=series, bars=tuple(bars), gridlines=gridlines)


@method_decorator(never_cache, name="dispatch")
class ActivityView(StaffPermissionMixin, View):
    """GET only (anything else is a 405); the query string is ignored."""

    permission_required = "idp.view_activity"

    def get(self, request: HttpRequest) -> HttpResponse:
        overview = activity_overview(now=timezone.now())
        context = {
            "overview": overview,
            "charts": [_bar_chart(series) for series in overview.series],
            "window_text": _duration_text(int(overview.rotation_window.total_seconds())),
        }
        return render(request, "idp/activity.html", context)
