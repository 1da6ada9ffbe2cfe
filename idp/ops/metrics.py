"""Prometheus metrics, scraped at GET /metrics (idp.pages.views.metrics).

Processes must agree on every number, so nothing here is one process's memory alone:

- What only a web process does (serve a request, issue a token, answer an introspection, refuse a
  sign-in) is counted by that process in prometheus_client's metrics. Under gunicorn they live in
  files, one set per worker, in PROMETHEUS_MULTIPROC_DIR (deploy/gunicorn.conf.py); a scrape
  answered by any worker sums all of them. Counting costs no network call.
- What happens in Celery workers, beat and commands as well (key rotations, task outcomes and
  queue lag) is counted in one Redis hash (REDIS_URL) that every process increments and the
  scrape reads (SharedCollector). These events are rare: a round trip each costs nothing.
- The backlog (queue length, age of the oldest waiting message) is read from the broker at
  scrape time, so a queue nobody consumes shows, which lag measured when a task starts cannot.

Label values are bounded by code: URL routes (never raw paths), registered task names, known
grants and algorithms.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import resolve
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

from audit.context import client_ip

log = logging.getLogger("idp.ops.metrics")

# The _created series double every family and mean nothing to rate(); multiprocess mode has none.
disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# A scrape, a task outcome or a rotation must never wait on an unreachable Redis for long.
_REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
_SHARED_KEY = "idp:metrics"
PUBLISHED_AT_HEADER = "idp_published_at"
_TOKEN_MAX = 512
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_GRANTS = ("authorization_code", "client_credentials", "refresh_token")

# --- Counted by the web process that served the request ---------------------------------------------

# Seconds; the token endpoint hashes a client secret (HMAC) and the sign-in page a password (Argon2).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))

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

# Known label values start at zero, so rate() and alerts see the series before the first event.
for _grant in (*_GRANTS, "other"):
    TOKENS_ISSUED.labels(grant=_grant)
for _result in ("active", "inactive"):
    INTROSPECTIONS.labels(result=_result)


def introspection_counted(*, active: bool) -> None:
    INTROSPECTIONS.labels(result="active" if active else "inactive").inc()


# --- Counted in Redis, by whichever process it happens in ------------------------------------------


@dataclass(frozen=True)
class SharedMetric:
    name: str
    documentation: str
    labelnames: tuple[str, ...]
    buckets: tuple[float, ...] = ()  # a histogram when given; +Inf is implied

    def field(self, part: str, labels: tuple[str, ...]) -> str:
        return json.dumps([self.name, part, *labels])


SIGNING_KEY_ROTATIONS = SharedMetric(
    "idp_signing_key_rotations", "Signing keys that became active, by algorithm.", ("algorithm",)
)
APIKEY_ROTATIONS = SharedMetric(
    "idp_apikey_rotations", "API keys rotated, by trigger (scheduled or manual).", ("trigger",)
)
CELERY_TASKS = SharedMetric(
    "idp_celery_tasks", "Celery task executions, by task and outcome (success, failure, retry).", ("task", "outcome")
)
CELERY_QUEUE_LAG = SharedMetric(
    "idp_celery_queue_lag_seconds",
    "Seconds a task waited in its queue before a worker started it (from its eta when it has one).",
    ("queue",),
    buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
SHARED_METRICS = (SIGNING_KEY_ROTATIONS, APIKEY_ROTATIONS, CELERY_TASKS, CELERY_QUEUE_LAG)


@functools.cache
def redis_for(url: str) -> redis.Redis:
    """A client of the Redis at `url` with short timeouts; one connection pool per process (redis-py
    opens a new pool in a forked child by itself)."""
    return redis.Redis.from_url(url, **_REDIS_OPTIONS)  # type: ignore[arg-type]


def _shared_write(write: Callable[[Any], None]) -> None:
    """Apply one pipelined write to the shared counters. Never raises: losing a count is better
    than failing the rotation or task that is being counted."""
    if not settings.REDIS_URL:
        return  # the embedded development default has one process: nothing to share with
    try:
        pipe = redis_for(settings.REDIS_URL).pipeline(transaction=False)
        write(pipe)
        pipe.execute()
    except redis.RedisError:
        log.warning("metrics: could not update the shared counters in Redis", exc_info=True)


def shared_inc(metric: SharedMetric, labels: tuple[str, ...], amount: int = 1) -> None:
    _shared_write(lambda pipe: pipe.hincrby(_SHARED_KEY, metric.field("total", labels), amount))


def shared_observe(metric: SharedMetric, labels: tuple[str, ...], value: float) -> None:
    bucket = next((index for index, bound in enumerate(metric.buckets) if value <= bound), len(metric.buckets))

    def write(pipe: Any) -> None:
        pipe.hincrby(_SHARED_KEY, metric.field(f"b{bucket}", labels), 1)
        pipe.hincrby(_SHARED_KEY, metric.field("count", labels), 1)
        pipe.hincrbyfloat(_SHARED_KEY, metric.field("sum", labels), value)

    _shared_write(write)


def _shared_families(stored: dict[bytes, bytes]) -> Iterator[Metric]:
    """The stored fields as metric families; fields of metrics no longer defined are skipped."""
    values: dict[str, dict[tuple[str, ...], dict[str, float]]] = {metric.name: {} for metric in SHARED_METRICS}
    for raw_field, raw_value in stored.items():
        try:
            name, part, *labels = json.loads(raw_field)
            value = float(raw_value)
        except (ValueError, TypeError):
            continue
        if name in values:
            values[name].setdefault(tuple(labels), {})[part] = value
    for metric in SHARED_METRICS:
        series = {
            labels: parts for labels, parts in values[metric.name].items() if len(labels) == len(metric.labelnames)
        }
        if not metric.buckets:
            family = CounterMetricFamily(metric.name, metric.documentation, labels=metric.labelnames)
            for labels, parts in sorted(series.items()):
                family.add_metric(list(labels), parts.get("total", 0.0))
            yield family
            continue
        histogram = HistogramMetricFamily(metric.name, metric.documentation, labels=metric.labelnames)
        for labels, parts in sorted(series.items()):
            cumulative, buckets = 0.0, []
            for index, bound in enumerate((*metric.buckets, float("inf"))):
                cumulative += parts.get(f"b{index}", 0.0)
                buckets.append((floatToGoString(bound), cumulative))
            histogram.add_metric(list(labels), buckets, parts.get("sum", 0.0))
        yield histogram


def _queue_names() -> list[str]:
    from idp.celery import app  # the Celery app is idp's own; imported late, it reads settings

    names = [app.conf.task_default_queue]
    names += [queue.name for queue in app.conf.task_queues or [] if queue.name not in names]
    return names


def _queue_backlog(now: float) -> Iterator[tuple[str, int, float]]:
    """(queue, messages waiting, age in seconds of the oldest waiting one) from a Redis broker.

    kombu's Redis transport keeps each queue as lists, one per priority step (LPUSH to publish,
    BRPOP to consume), so the oldest waiting message is the rightmost of each list. Its age is
    read from the publish time our before_task_publish receiver stamps in its headers."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    client = redis_for(settings.CELERY_BROKER_URL)
    for queue in _queue_names():
        keys = [queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
            pipe.lindex(key, -1)
        replies = pipe.execute()
        length = sum(replies[0::2])
        oldest = min((_published_at(message, now=now) for message in replies[1::2] if message), default=now)
        yield queue, length, max(0.0, now - oldest)


def _published_at(message: bytes, *, now: float) -> float:
    """The stamp in a message's headers; a message without one (published by an older release)
    counts as just published."""
    try:
        stamp = json.loads(message).get("headers", {}).get(PUBLISHED_AT_HEADER)
    except (ValueError, AttributeError):
        return now
    return float(stamp) if isinstance(stamp, int | float) else now


class SharedCollector:
    """At scrape time: the Redis counters and the broker's backlog, each with an *_up gauge so a
    scrape that could not read them says so instead of showing zeros."""

    def collect(self) -> Iterable[Metric]:
        store_up = GaugeMetricFamily(
            "idp_metrics_shared_store_up", "1 if the shared counters (Redis) could be read by this scrape."
        )
        stored: dict[bytes, bytes] | None = None
        if settings.REDIS_URL:
            try:
                stored = redis_for(settings.REDIS_URL).hgetall(_SHARED_KEY)
            except redis.RedisError:
                log.warning("metrics: could not read the shared counters from Redis", exc_info=True)
        store_up.add_metric([], 1.0 if stored is not None else 0.0)
        yield store_up
        if stored is not None:
            yield from _shared_families(stored)
        yield from self._backlog()

    def _backlog(self) -> Iterator[Metric]:
        if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
            return  # the filesystem broker of the embedded development default
        broker_up = GaugeMetricFamily("idp_celery_broker_up", "1 if the broker's queues could be read by this scrape.")
        length = GaugeMetricFamily("idp_celery_queue_length", "Messages waiting in the queue.", labels=["queue"])
        age = GaugeMetricFamily(
            "idp_celery_queue_oldest_age_seconds",
            "Age of the oldest message waiting in the queue (0 when empty).",
            labels=["queue"],
        )
        try:
            backlog = list(_queue_backlog(time.time()))
        except redis.RedisError:
            log.warning("metrics: could not read the broker's queues", exc_info=True)
            backlog = None
        broker_up.add_metric([], 1.0 if backlog is not None else 0.0)
        yield broker_up
        for queue, waiting, oldest_age in backlog or []:
            length.add_metric([queue], waiting)
            age.add_metric([queue], oldest_age)
        if backlog is not None:
            yield length
            yield age


class _ThisProcess:
    """The default registry of a process without PROMETHEUS_MULTIPROC_DIR (runserver, tests)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


@functools.cache
def _scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # every worker's files, the dead ones' too (counters are totals)
    else:
        registry.register(_ThisProcess())
    registry.register(SharedCollector())
    return registry


def metrics_exposition() -> bytes:
    """The text exposition of every metric (format 0.0.4, which every Prometheus reads)."""
    return generate_latest(_scrape_registry())


# --- Who may scrape ---------------------------------------------------------------------------------


@functools.cache
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def metrics_access_allowed(request: HttpRequest) -> bool:
    """From an address in IDP_METRICS_ALLOWED_NETWORKS (the client's address as our trusted
    proxies report it, audit.context.client_ip), or with the bearer token IDP_METRICS_TOKEN."""
    expected = settings.IDP_METRICS_TOKEN
    if expected:
        scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        presented = presented.strip()
        # Bytes, because compare_digest refuses str with non-ASCII characters (a client's choice).
        if (
            scheme.lower() == "bearer"
            and len(presented) <= _TOKEN_MAX
            and hmac.compare_digest(presented.encode("utf-8", "backslashreplace"), expected.encode())
        ):
            return True
    address = client_ip(request)
    if address is None or not settings.IDP_METRICS_ALLOWED_NETWORKS:
        return False
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return any(parsed in network for network in _networks(tuple(settings.IDP_METRICS_ALLOWED_NETWORKS)))


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
    shared_inc(SIGNING_KEY_ROTATIONS, (algorithm if algorithm in ("RS256", "ES256", "EdDSA") else "other",))


def _count_apikey_rotation(data: dict[str, Any]) -> None:
    shared_inc(APIKEY_ROTATIONS, ("scheduled" if data.get("scheduled") else "manual",))


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
    commits (a rolled-back token or rotation never happened)."""
    count = _AUDITED.get(instance.action) if created and not raw else None
    if count is not None:
        data = dict(instance.data)
        transaction.on_commit(lambda: count(data), using=kwargs.get("using"), robust=True)


def task_published(sender: Any = None, headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """before_task_publish: stamp the publish time, for the lag and the oldest message's age. A
    retry is a new publish and gets a new stamp."""
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
    shared_observe(CELERY_QUEUE_LAG, (queue,), max(0.0, time.time() - waited_since))


def _task_outcome(outcome: str) -> Callable[..., None]:
    def counted(sender: Any = None, **kwargs: Any) -> None:
        shared_inc(CELERY_TASKS, (str(getattr(sender, "name", "unknown")), outcome))

    return counted


task_succeeded = _task_outcome("success")
task_failed = _task_outcome("failure")
task_retried = _task_outcome("retry")


def receivers_connect() -> None:
    """Wired in IdpConfig.ready(), so web processes, workers and beat all count and stamp."""
    from celery import signals as celery_signals
    from django.db.models.signals import post_save

    from audit.models import AuditEvent

    post_save.connect(audit_event_saved, sender=AuditEvent, dispatch_uid="idp.ops.metrics.audit")
    celery_signals.before_task_publish.connect(task_published, dispatch_uid="idp.ops.metrics.published")
    celery_signals.task_prerun.connect(task_started, dispatch_uid="idp.ops.metrics.started")
    celery_signals.task_success.connect(task_succeeded, dispatch_uid="idp.ops.metrics.success")
    celery_signals.task_failure.connect(task_failed, dispatch_uid="idp.ops.metrics.failure")
    celery_signals.task_retry.connect(task_retried, dispatch_uid="idp.ops.metrics.retry")
