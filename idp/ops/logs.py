"""Logs: one JSON object per line on stdout, for every request and every log record.

``settings.LOGGING_CONFIG`` names ``configure``: structlog renders our own events (the request
line of ``RequestLogMiddleware``) and the standard library's records (Django, DOT, Celery, ours)
through one formatter, ``json_formatter``, so a collector parses every line the same way. Each line
carries the request id of the request it belongs to (``audit.context``, also the X-Request-ID
response header), so support goes from an error page to the traceback and the request line.

No secret is ever logged: paths go without their query strings, the libraries that log request
bodies and tokens at DEBUG are held at INFO in settings.LOGGING, and ``_redact`` masks what a
secret looks like in any line as a last defence.
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

import structlog
from django.http import HttpRequest, HttpResponse
from django.utils.functional import LazyObject, empty
from structlog.typing import EventDict, WrappedLogger

from accounts.credentials import COMPACT_JWT
from apikeys.keyformat import KEY_HEAD
from audit.context import current as request_context

# A path is whatever the client asked for, up to gunicorn's request-line limit (8190): enough to
# recognise a probe, not 8 KB of it on every line.
PATH_MAX = 1000
REDACTED = "[redacted]"


@dataclass(slots=True)
class _RequestFacts:
    """What the views learn about the caller that the request line names (set through
    request_client_set / request_user_set while the request runs)."""

    client_id: str | None = None
    user_id: Any = None


_facts: ContextVar[_RequestFacts | None] = ContextVar("idp_request_log_facts", default=None)


def request_client_set(*, client_id: str) -> None:
    """Name the OAuth client this request authenticated as in its request line. Outside a request
    (a task, a command) it does nothing."""
    facts = _facts.get()
    if facts is not None:
        facts.client_id = client_id


def request_user_set(*, user_id: Any) -> None:
    """Name the user this request acts for (a token's owner) in its request line."""
    facts = _facts.get()
    if facts is not None:
        facts.user_id = user_id


def _request_user_id(request: HttpRequest) -> Any:
    """The signed-in user, or the one DRF authenticated (DRF sets request.user on Django's request
    too), without ever looking one up: a session user that no view asked for stays unknown rather
    than costing a session and a user query here."""
    user = getattr(request, "user", None)
    if isinstance(user, LazyObject):
        # The object once resolved, `empty` until then (django-stubs does not declare _wrapped).
        wrapped = cast(Any, user)._wrapped
        if wrapped is empty:
            return None
        user = wrapped
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


_log = structlog.stdlib.get_logger("idp.request")


class RequestLogMiddleware:
    """One line per request: method, path (never the query string: RFC 6750 §2.3 puts tokens
    there, and logout's id_token_hint lives there), status, duration, the client and the user the
    request proved, and the source IP and request id of audit.context. Runs inside
    AuditContextMiddleware, so a 500 answered by Django's handler is logged here too.

    No database or Redis call: the client and user come from what the request already learned.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        facts = _RequestFacts()
        token = _facts.set(facts)
        try:
            response = self.get_response(request)
        finally:
            _facts.reset(token)
        _log.info(
            "request",
            method=request.method,
            path=request.path[:PATH_MAX],
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            client_id=facts.client_id,
            user_id=facts.user_id if facts.user_id is not None else _request_user_id(request),
            source_ip=request_context().source_ip,
        )
        return response


# --- Rendering ---------------------------------------------------------------------------------


def _add_request_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    request_id = request_context().request_id
    if request_id:
        event_dict.setdefault("request_id", request_id)
    return event_dict


# Keys whose values are secrets whatever they hold, should a call ever pass one (log.info(...,
# token=...)): the value never reaches the line.
_SECRET_KEYS = frozenset(
    {
        "access_token",
        "api_key",
        "authorization",
        "client_secret",
        "code",
        "code_verifier",
        "cookie",
        "id_token",
        "password",
        "refresh_token",
        "secret",
        "token",
    }
)
# What a secret looks like in text: an API key (its public id may show, as on the dashboard), a
# JWT (access tokens, ID tokens, logout's id_token_hint), an Authorization header's credential,
# the token of a password reset or e-mail verification link (Django's token generator: a base-36
# timestamp and 32 hex digits), a segment of the link's path that every request line logs.
# Opaque tokens, codes and client secrets look like any random string; those are kept out by never
# logging them (settings.LOGGING holds the libraries that would at DEBUG).
_SECRET_SHAPES = re.compile(
    rf"(?P<key_head>{KEY_HEAD})[0-9A-Za-z]+"  # the key's head (prefix and public id) is kept
    rf"|\b{COMPACT_JWT}"
    r"|\b(?P<scheme>(?i:bearer|basic)\s+)[\w.~+/=-]{8,}"
    r"|(?<=/)[0-9a-z]{1,13}-[0-9a-f]{32}(?=/|$)"
)


def _scrub(match: re.Match[str]) -> str:
    kept = match.group("key_head") or match.group("scheme") or ""
    return kept + REDACTED


def _redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """A last defence: whatever a line holds (a message, a path, a traceback), no secret shape
    survives it."""
    for key, value in event_dict.items():
        if key in _SECRET_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = _SECRET_SHAPES.sub(_scrub, value)
    return event_dict


_LEADING = ("time", "level", "logger", "event", "request_id")


def _leading_fields_first(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """When, how bad, where from and what first: a person reading a line sees those before the rest."""
    ordered = {key: event_dict.pop(key) for key in _LEADING if key in event_dict}
    ordered.update(event_dict)
    return ordered


# For our events (at the call, in structlog) and the standard library's records (in the
# formatter, foreign_pre_chain) alike; both run in the thread of the request, so its context holds.
_SHARED_PROCESSORS: list[Any] = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _add_request_id,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
]


# Tasks beat runs every few seconds: their routine lines (sent, received, succeeded) would be most
# of a worker's log. Their warnings and errors, and every other task's lines, are kept.
ROUTINE_TASKS = (
    "idp.tasks.seal_audit_chain",
    "seal-audit-chain",
    "apikeys.tasks.record_apikey_uses",
    "record-apikey-uses",
)
_ROUTINE_LOGGERS = ("celery.beat", "celery.app.trace", "celery.worker.strategy")


class RoutineTaskFilter(logging.Filter):
    """Drops INFO and below from Celery about the tasks in ROUTINE_TASKS."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith(_ROUTINE_LOGGERS):
            return True
        message = record.getMessage()
        return not any(task in message for task in ROUTINE_TASKS)


def json_formatter() -> logging.Formatter:
    """The formatter of settings.LOGGING's handler: one JSON object per record, a traceback
    rendered into its "exception" field."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact,
            _leading_fields_first,
            structlog.processors.JSONRenderer(),
        ],
    )


def configure(config: dict[str, Any]) -> None:
    """settings.LOGGING_CONFIG: structlog hands its events to the standard library (which filters
    by level and formats them with json_formatter), then settings.LOGGING configures that."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # a disabled level costs one check, nothing more
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(config)
