"""Prometheus metrics: every count is prometheus_client's, in the process where the event happens.

- Web processes (gunicorn) count requests, tokens, introspections, sign-in failures and lockouts,
  API-key uses and the rotations made from the dashboard or the API. Each gunicorn worker writes
  its own files in PROMETHEUS_MULTIPROC_DIR (deploy/gunicorn.conf.py); GET /metrics
  (idp.ops.views.metrics), answered by whichever worker, sums every file there. Counting costs no
  network call.
- Celery workers count task outcomes, queue lag and the scheduled rotations the same way: the
  worker's main process and its prefork pool processes write files in a directory of the worker's
  own (idp.celery), and the main process serves their sum on IDP_WORKER_METRICS_PORT
  (worker_metrics_serve). Beat only publishes: it counts nothing.
- The broker's queue lengths are read at scrape time through kombu's public API (a passive
  queue_declare), so a queue nobody consumes shows, which lag measured when a task starts cannot.

Security facts (who got a token, whose sign-in failed, which key rotated) are the audit table's;
the counters here count them once their audit row commits, for rates and alerts.

Label values are bounded by code: URL routes (never raw paths), registered task names, known
grants, algorithms and triggers.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import resolve
from kombu.exceptions import ChannelError, OperationalError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from audit.context import client_ip

log = logging.getLogger("idp.ops.metrics")

# The _created series double every family and mean nothing to rate(); multiprocess mode has none.
disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PUBLISHED_AT_HEADER = "idp_published_at"
# Set by deploy/gunicorn.conf.py when the server starts and empties the metrics directory.
GUNICORN_STARTED_AT = "IDP_GUNICORN_STARTED_AT"
_PROCESS_STARTED_AT = time.time()
# A scrape must never wait long on an unreachable broker.
_BROKER_TIMEOUTS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
_TOKEN_MAX = 512
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_GRANTS = ("authorization_code", "client_credentials", "refresh_token")
_ALGORITHMS = ("RS256", "ES256", "EdDSA")

# --- Counted by the process the event happens in ---------------------------------------------------

# Seconds; the token endpoint hashes a client secret (HMAC) and the sign-in page a password (Argon2).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))
# Seconds a task waited: from a busy moment's queue to a worker gone for an hour.
_LAG_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, float("inf"))

HTTP_REQUESTS = Counter(
    "idp_http_requests",
    "Requests answered, by URL route (unmatched: no route), method and status.",
    ["endpoint", "method", "status"],
)
HTTP_DURATION = Histogram(
    "idp_http_request_duration_seconds",
    "Time from the first middleware to the response, by URL route, method and status.",
    ["endpoint", "method", "status"],
    buckets=_LATENCY_BUCKETS,
)
TOKENS_ISSUED = Counter("idp_tokens_issued", "Access tokens issued, by grant type.", ["grant"])
INTROSPECTIONS = Counter("idp_introspections", "Introspection answers to authenticated clients, by result.", ["result"])
SIGNIN_FAILURES = Counter("idp_signin_failures", "Sign-ins refused for a wrong username or password.")
SIGNIN_LOCKOUTS = Counter("idp_signin_lockouts", "Lockouts started by repeated failed sign-ins.")
SIGNING_KEY_ROTATIONS = Counter(
    "idp_signing_key_rotations", "Signing keys that became active, by algorithm.", ["algorithm"]
)
APIKEY_ROTATIONS = Counter("idp_apikey_rotations", "API keys rotated, by trigger (scheduled or manual).", ["trigger"])
CELERY_TASKS = Counter(
    "idp_celery_tasks", "Celery task executions, by task and outcome (success, failure, retry).", ["task", "outcome"]
)
CELERY_QUEUE_LAG = Histogram(
    "idp_celery_queue_lag_seconds",
    "Seconds a task waited in its queue before a worker started it (from its eta when it has one).",
    ["queue"],
    buckets=_LAG_BUCKETS,
)

# Known label values start at zero, so rate() and alerts see the series before the first event.
for _grant in (*_GRANTS, "other"):
    TOKENS_ISSUED.labels(grant=_grant)
for _result in ("active", "inactive"):
    INTROSPECTIONS.labels(result=_result)
for _algorithm in (*_ALGORITHMS, "other"):
    SIGNING_KEY_ROTATIONS.labels(algorithm=_algorithm)
for _trigger in ("scheduled", "manual"):
    APIKEY_ROTATIONS.labels(trigger=_trigger)


def introspection_counted(*, active: bool) -> None:
    INTROSPECTIONS.labels(result="active" if active else "inactive").inc()


# --- What a scrape reads -----------------------------------------------------------------------------


class _ThisProcess:
    """The default registry of a process without PROMETHEUS_MULTIPROC_DIR (runserver, tests)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def _counted(path: str | None = None) -> CollectorRegistry:
    """Every count of this server: all files in the multiprocess directory (the dead processes'
    too: counters are totals), or this process's own registry when there is none."""
    registry = CollectorRegistry()
    if path or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(_ThisProcess())
    return registry


def _queue_names() -> list[str]:
    from idp.celery import app  # the Celery app is idp's own; imported late, it reads settings

    names = [app.conf.task_default_queue]
    names += [queue.name for queue in app.conf.task_queues or [] if queue.name not in names]
    return names


def _queue_lengths() -> list[tuple[str, int]]:
    """(queue, messages waiting) for each of our queues, from the broker through kombu's public API:
    a passive queue_declare answers the message count and creates nothing. A queue the broker does
    not hold (Redis drops an empty one) has nothing waiting."""
    from idp.celery import app

    lengths = []
    with app.connection_for_read(url=settings.CELERY_BROKER_URL, transport_options=_BROKER_TIMEOUTS) as connection:
        connection.ensure_connection(max_retries=0)
        for queue in _queue_names():
            # A channel per queue: on AMQP brokers a failed passive declare closes its channel.
            with connection.channel() as channel:
                try:
                    lengths.append((queue, channel.queue_declare(queue=queue, passive=True).message_count))
                except ChannelError:
                    lengths.append((queue, 0))
    return lengths


class BrokerCollector:
    """At scrape time: each queue's length, with idp_celery_broker_up so a scrape that could not
    read the broker says so instead of showing zeros."""

    def collect(self) -> Iterable[Metric]:
        broker_up = GaugeMetricFamily("idp_celery_broker_up", "1 if the broker's queues could be read by this scrape.")
        length = GaugeMetricFamily("idp_celery_queue_length", "Messages waiting in the queue.", labels=["queue"])
        try:
            lengths: list[tuple[str, int]] | None = _queue_lengths()
        except (OperationalError, OSError, redis.RedisError):
            log.warning("metrics: could not read the broker's queues", exc_info=True)
            lengths = None
        broker_up.add_metric([], 1.0 if lengths is not None else 0.0)
        yield broker_up
        if lengths is not None:
            for queue, waiting in lengths:
                length.add_metric([queue], waiting)
            yield length


@functools.cache
def _scrape_registry() -> CollectorRegistry:
    registry = _counted()
    registry.register(BrokerCollector())
    return registry


def metrics_exposition() -> bytes:
    """The text exposition of every metric (format 0.0.4, which every Prometheus reads)."""
    return generate_latest(_scrape_registry())


def counter_values(*names: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples of the named counters (without _total) as this server's /metrics reads them: the
    sum over every process of the server (gunicorn's workers), since counting_since()."""
    wanted = {f"{name}_total": name for name in names}
    found: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in names}
    for family in _counted().collect():
        for sample in family.samples:
            if sample.name in wanted:
                found[wanted[sample.name]].append((dict(sample.labels), sample.value))
    return found


def counting_since() -> datetime:
    """When the counts counter_values() reads began: when gunicorn started (and emptied the metrics
    directory), or when this process started if it is not under gunicorn."""
    started = os.environ.get(GUNICORN_STARTED_AT) if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else None
    try:
        return datetime.fromtimestamp(float(started) if started else _PROCESS_STARTED_AT, tz=UTC)
    except ValueError:
        return datetime.fromtimestamp(_PROCESS_STARTED_AT, tz=UTC)


# --- Who may scrape ---------------------------------------------------------------------------------


@functools.cache
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def scrape_allowed(*, address: str | None, authorization: str) -> bool:
    """From an address in IDP_METRICS_ALLOWED_NETWORKS, or with the bearer token IDP_METRICS_TOKEN
    in `authorization` (the Authorization header's value). The one rule of every /metrics: the web
    server's and each worker's."""
    expected = settings.IDP_METRICS_TOKEN
    if expected:
        scheme, _, presented = authorization.partition(" ")
        presented = presented.strip()
        # Bytes, because compare_digest refuses str with non-ASCII characters (a client's choice).
        if (
            scheme.lower() == "bearer"
            and len(presented) <= _TOKEN_MAX
            and hmac.compare_digest(presented.encode("utf-8", "backslashreplace"), expected.encode())
        ):
            return True
    if address is None or not settings.IDP_METRICS_ALLOWED_NETWORKS:
        return False
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return any(parsed in network for network in _networks(tuple(settings.IDP_METRICS_ALLOWED_NETWORKS)))


def metrics_access_allowed(request: HttpRequest) -> bool:
    """scrape_allowed for a request to the web server: the address is the client's as our trusted
    proxies report it (audit.context.client_ip)."""
    return scrape_allowed(address=client_ip(request), authorization=request.META.get("HTTP_AUTHORIZATION", ""))


# --- A Celery worker's own /metrics ------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight never holds up the worker's shutdown


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the overridden signature
        pass  # a line per scrape would drown the worker's JSON log


def _worker_metrics_app(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # Prometheus connects directly: the peer's address is the client's, no proxy is trusted.
        allowed = scrape_allowed(
            address=environ.get("REMOTE_ADDR"), authorization=environ.get("HTTP_AUTHORIZATION", "")
        )
        if environ.get("PATH_INFO") != "/metrics" or not allowed:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not Found\n"]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"Method Not Allowed\n"]
        body = generate_latest(registry)
        start_response(
            "200 OK",
            [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")],
        )
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    return answer


def worker_metrics_serve(*, port: int, directory: str) -> WSGIServer:
    """Serve GET /metrics on `port` (every interface) from a daemon thread: the sum of the files
    that the worker's processes write in `directory`, under the web server's access rules.
    Raises OSError when the port cannot be bound."""
    server = make_server("", port, _worker_metrics_app(_counted(directory)), _Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="idp-worker-metrics", daemon=True).start()
    return server


# --- Requests ----------------------------------------------------------------------------------------


class RequestMetricsMiddleware:
    """Counts and times every request by its URL route, method and status. First in MIDDLEWARE, so
    answers from any middleware (a 429, a redirect, a 400) are counted too.

    In-process only (prometheus_client; files under gunicorn): no network call per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # STATIC_URL as Django gives it back: "/static/", or an absolute URL (files served elsewhere).
        self.static_prefix = settings.STATIC_URL if settings.STATIC_URL.startswith("/") else ""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        labels = (
            self._endpoint(request),
            request.method if request.method in _METHODS else "other",
            str(response.status_code),
        )
        HTTP_REQUESTS.labels(*labels).inc()
        HTTP_DURATION.labels(*labels).observe(elapsed)
        return response

    def _endpoint(self, request: HttpRequest) -> str:
        """The route pattern ("/oauth/token/", "/api/v1/users/<int:pk>/"), never the path: a path
        is the client's choice and would make a series per URL ever tried."""
        match = getattr(request, "resolver_match", None)
        if match is None:
            # Answered before the URL was resolved (rate limit, parameter guard, static files).
            if self.static_prefix and request.path_info.startswith(self.static_prefix):
                return "static"
            try:
                match = resolve(request.path_info, getattr(request, "urlconf", None))
            except Exception:  # noqa: BLE001 - any path a client sends: Resolver404, or worse, is "unmatched"
                return "unmatched"
        return "/" + match.route


# --- Events: audit rows, Celery signals --------------------------------------------------------------


def _count_token(data: dict[str, Any]) -> None:
    grant = data.get("grant")
    TOKENS_ISSUED.labels(grant=grant if grant in _GRANTS else "other").inc()


def _count_signing_key_rotation(data: dict[str, Any]) -> None:
    algorithm = data.get("algorithm")
    SIGNING_KEY_ROTATIONS.labels(algorithm=algorithm if algorithm in _ALGORITHMS else "other").inc()


def _count_apikey_rotation(data: dict[str, Any]) -> None:
    APIKEY_ROTATIONS.labels(trigger="scheduled" if data.get("scheduled") else "manual").inc()


_AUDITED: dict[str, Callable[[dict[str, Any]], None]] = {
    "token.issued": _count_token,
    "token.refreshed": _count_token,
    "login.failed": lambda data: SIGNIN_FAILURES.inc(),
    "login.locked_out": lambda data: SIGNIN_LOCKOUTS.inc(),
    "signing_key.rotated": _count_signing_key_rotation,
    "apikey.rotated": _count_apikey_rotation,
}


def audit_event_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    """post_save of audit.AuditEvent: count the events the metrics name, once their transaction
    commits (a rolled-back token or rotation never happened). The row is the fact; this is its
    count, in the process that recorded it."""
    count = _AUDITED.get(instance.action) if created and not raw else None
    if count is not None:
        data = dict(instance.data)
        transaction.on_commit(lambda: count(data), using=kwargs.get("using"), robust=True)


def task_published(sender: Any = None, headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """before_task_publish: stamp the publish time, for the lag. A retry is a new publish and gets
    a new stamp."""
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = time.time()


def task_started(sender: Any = None, task: Any = None, **kwargs: Any) -> None:
    """task_prerun: how long the message waited, counted from its eta when it had to wait for one."""
    request = getattr(task, "request", None)
    published = getattr(request, PUBLISHED_AT_HEADER, None)
    if not isinstance(published, int | float):
        return  # published before this version, or by something else
    waited_since = float(published)
    eta = getattr(request, "eta", None)
    if eta:
        try:
            waited_since = max(waited_since, datetime.fromisoformat(str(eta)).timestamp())
        except ValueError:
            pass
    queue = str((getattr(request, "delivery_info", None) or {}).get("routing_key") or "unknown")
    CELERY_QUEUE_LAG.labels(queue=queue).observe(max(0.0, time.time() - waited_since))


def _task_outcome(outcome: str) -> Callable[..., None]:
    def counted(sender: Any = None, **kwargs: Any) -> None:
        CELERY_TASKS.labels(task=str(getattr(sender, "name", "unknown")), outcome=outcome).inc()

    return counted


task_succeeded = _task_outcome("success")
task_failed = _task_outcome("failure")
task_retried = _task_outcome("retry")


def receivers_connect() -> None:
    """Wired in IdpConfig.ready(), so web processes and workers count, and everything that
    publishes stamps."""
    from celery import signals as celery_signals
    from django.db.models.signals import post_save

    from audit.models import AuditEvent

    post_save.connect(audit_event_saved, sender=AuditEvent, dispatch_uid="idp.ops.metrics.audit")
    celery_signals.before_task_publish.connect(task_published, dispatch_uid="idp.ops.metrics.published")
    celery_signals.task_prerun.connect(task_started, dispatch_uid="idp.ops.metrics.started")
    celery_signals.task_success.connect(task_succeeded, dispatch_uid="idp.ops.metrics.success")
    celery_signals.task_failure.connect(task_failed, dispatch_uid="idp.ops.metrics.failure")
    celery_signals.task_retry.connect(task_retried, dispatch_uid="idp.ops.metrics.retry")
