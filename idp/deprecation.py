"""Retiring an endpoint: the Deprecation (RFC 9745), Sunset (RFC 8594) and Link headers.

Our policy (README, "API versioning"): a deprecated endpoint keeps working for at least six months
after it is marked, its replacement lives alongside it (under /api/v2/ when the change breaks
clients), and every one of its responses, errors included, says so in these headers.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponseBase
from django.utils.http import http_date
from django.views import View

# The notice a client gets between "deprecated" and "gone", at least.
MIN_NOTICE_MONTHS = 6

V = TypeVar("V", bound=Callable[..., Any])


@dataclass(frozen=True)
class Deprecation:
    """When an endpoint was deprecated, when it goes away, and where clients read why."""

    since: datetime
    sunset: datetime
    link: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            # RFC 9745 §2.1: an RFC 9651 Date, "@" and the Unix time in seconds.
            "Deprecation": f"@{int(self.since.timestamp())}",
            # RFC 8594 §3: an HTTP-date, that is an IMF-fixdate.
            "Sunset": http_date(self.sunset.timestamp()),
        }
        if self.link:
            # RFC 9745 §3 and RFC 8594 §6: the same page explains the deprecation and the sunset.
            headers["Link"] = f'<{self.link}>; rel="deprecation"; type="text/html", <{self.link}>; rel="sunset"'
        return headers


def _moment(value: date | datetime, name: str) -> datetime:
    """A date means its midnight in UTC; a datetime must be aware (we never guess a time zone)."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ImproperlyConfigured(f"deprecated(): {name} must be an aware datetime or a date")
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _months_later(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _respond(request: HttpRequest, call: Callable[[], HttpResponseBase], deprecation: Deprecation) -> HttpResponseBase:
    try:
        response = call()
    except Exception as exc:
        # An error is a response of this endpoint too: build it here, as Django's handler would
        # one layer up (same handler404/handler500, same logging and signal), and mark it.
        response = response_for_exception(request, exc)
    for name, value in deprecation.headers().items():
        if name == "Link" and response.has_header("Link"):
            value = f"{response['Link']}, {value}"  # RFC 8288 §3: one header may carry several links
        response[name] = value
    return response


def _wrap_function(view: V, deprecation: Deprecation) -> V:
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return _respond(request, lambda: view(request, *args, **kwargs), deprecation)

    wrapped.deprecation = deprecation  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def _wrap_dispatch(dispatch: Callable[..., HttpResponseBase], deprecation: Deprecation) -> Callable[..., Any]:
    @functools.wraps(dispatch)
    def wrapped(self: View, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return _respond(request, lambda: dispatch(self, request, *args, **kwargs), deprecation)

    return wrapped


def deprecated(*, since: date | datetime, sunset: date | datetime, link: str | None = None) -> Callable[[V], V]:
    """Mark a view as deprecated: every response it gives, errors included, carries
    ``Deprecation: @<unix seconds>``, ``Sunset: <IMF-fixdate>`` and, with ``link``, a
    ``Link: <link>; rel="deprecation"`` (and rel="sunset") to the page that explains the move.

    Decorates a function view, the callable ``as_view()`` returns, or a class-based view (DRF's
    ``APIView`` included; its exception handler's responses are marked too). A sunset less than
    six months after ``since`` is refused when the URLconf loads: that is the policy.
    """
    start, end = _moment(since, "since"), _moment(sunset, "sunset")
    if end < _months_later(start, MIN_NOTICE_MONTHS):
        raise ImproperlyConfigured(
            f"deprecated(): the sunset must be at least {MIN_NOTICE_MONTHS} months after the deprecation "
            f"({start:%Y-%m-%d} -> {end:%Y-%m-%d})"
        )
    deprecation = Deprecation(since=start, sunset=end, link=link)

    def decorate(view: V) -> V:
        if isinstance(view, type) and issubclass(view, View):
            view.dispatch = _wrap_dispatch(view.dispatch, deprecation)  # type: ignore[method-assign]
            view.deprecation = deprecation  # type: ignore[attr-defined]
            return view  # type: ignore[return-value]
        return _wrap_function(view, deprecation)

    return decorate


def deprecation_of(view: Callable[..., Any]) -> Deprecation | None:
    """The deprecation of a URL pattern's callback, or None when it is not deprecated."""
    found = getattr(view, "deprecation", None)
    if found is None:
        found = getattr(getattr(view, "view_class", None), "deprecation", None)
    return found if isinstance(found, Deprecation) else None
