"""GET /metrics: real flows move the metrics by exactly what they did; a Celery worker counts in its
prefork pool processes and serves their sum on its own /metrics (IDP_WORKER_METRICS_PORT), under
the same access rules; gunicorn's workers are summed (multiprocess files); the broker's queue
lengths are read at scrape time; and only allowed networks or the metrics token may scrape, anyone
else gets the 404 of an unknown path. No count lives in Redis."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.utils import timezone

import audit
from accounts.selectors import Caller
from apikeys.models import ApiKey
from apikeys.services import apikey_create, apikey_rotate
from apikeys.tasks import rotate_due_apikeys
from idp.celery import app as celery_app
from idp.keys.rotation import signing_key_rotate_now, signing_keys_ensure
from idp.ops.metrics import PUBLISHED_AT_HEADER
from idp.tasks import rotate_signing_keys
from tests.apikeys.test_rotation import remove_queued_notifications
from tests.apikeys.test_worker_kill import WAIT_SECONDS, delete_queue, stop
from tests.factories import make_client, make_user
from tests.ops import celery_tasks
from tests.ops.processes import (
    Server,
    free_port,
    gunicorn_start,
    gunicorn_stop,
    held_request,
    pool_processes,
    queue_name,
    samples_of,
    scrape,
    value,
    worker_start,
)
from tests.relying_party import parse_form

TOKEN = "metrics-token-" + "x" * 32
ALLOWED = "192.0.2.10"
OUTSIDE = "198.51.100.7"


def delta(before, after, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def metrics_access(settings):
    settings.IDP_METRICS_ALLOWED_NETWORKS = ["192.0.2.0/24"]
    settings.IDP_METRICS_TOKEN = TOKEN
    settings.IDP_TRUSTED_PROXIES = []


@pytest.fixture
def limits(settings):
    """Every limit generous, so a test lowers only the one it is about."""
    settings.IDP_RATE_LIMITS = {name: "1000/minute" for name in django_settings.IDP_RATE_LIMITS}
    return settings.IDP_RATE_LIMITS


# --- Real flows, one scrape before and one after ------------------------------------------------------


def sign_in_fails(base_url: str, username: str) -> requests.Response:
    browser = requests.Session()
    page = browser.get(f"{base_url}/accounts/login/", timeout=10)
    _action, fields = parse_form(page.text)
    fields.update(username=username, password="not-the-password-at-all")
    return browser.post(f"{base_url}/accounts/login/", data=fields, allow_redirects=False, timeout=10)


def test_real_flows_move_their_metrics_by_exactly_what_they_did(
    live_server, signing_key, metrics_access, limits, settings
):
    machine = make_client(grant="client_credentials", redirect_uris=[], scopes=["profile"])
    resource_server = make_client(grant="client_credentials", redirect_uris=[], scopes=[], is_resource_server=True)
    owner = make_user()
    issued = apikey_create(
        name="export", user=owner, scopes=["profile"], caller=Caller.operator(audit.Actor.user(owner))
    )
    settings.AXES_FAILURE_LIMIT = 2
    limits["revoke.ip"] = "1/minute"
    url = live_server.url
    before = scrape(url, TOKEN)

    token = requests.post(
        f"{url}/oauth/token/",
        data={"grant_type": "client_credentials", "scope": "profile"},
        auth=(machine.application.client_id, machine.client_secret),
        timeout=10,
    )
    assert token.status_code == 200, token.text
    server_auth = (resource_server.application.client_id, resource_server.client_secret)
    for presented, active in [(token.json()["access_token"], True), ("no-such-token", False), (issued.secret, True)]:
        reply = requests.post(f"{url}/oauth/introspect/", data={"token": presented}, auth=server_auth, timeout=10)
        assert reply.json()["active"] is active
    assert sign_in_fails(url, owner.username).status_code == 200, "the form again"
    assert sign_in_fails(url, owner.username).status_code == 429, "the second failure locks the account out"
    assert requests.post(f"{url}/oauth/revoke/", data={"token": "x"}, auth=server_auth, timeout=10).status_code == 200
    assert requests.post(f"{url}/oauth/revoke/", data={"token": "x"}, auth=server_auth, timeout=10).status_code == 429
    assert requests.get(f"{url}/no-such-page/12345", timeout=10).status_code == 404
    signing_key_rotate_now(algorithm="RS256", now=timezone.now() + timedelta(days=2), actor=audit.Actor.system("t"))
    apikey_rotate(key_id=issued.key.pk, caller=Caller.operator(audit.Actor.user(owner)))

    after = scrape(url, TOKEN)
    assert delta(before, after, "idp_tokens_issued_total", grant="client_credentials") == 1
    assert delta(before, after, "idp_introspections_total", result="active") == 2
    assert delta(before, after, "idp_introspections_total", result="inactive") == 1
    assert delta(before, after, "idp_apikey_uses_total") == 1, "the key introspected"
    assert delta(before, after, "idp_signin_failures_total") == 2
    assert delta(before, after, "idp_signin_lockouts_total") == 1
    assert delta(before, after, "idp_signing_key_rotations_total", algorithm="RS256") == 1
    assert delta(before, after, "idp_signing_key_rotations_total", algorithm="ES256") == 0
    assert delta(before, after, "idp_apikey_rotations_total", trigger="manual") == 1
    assert not [name for name, _ in after if name.startswith("idp_metrics_shared")], "no counter store in Redis"

    requests_moved = {
        ("/oauth/token/", "POST", "200"): 1,
        ("/oauth/introspect/", "POST", "200"): 3,
        ("/accounts/login/", "GET", "200"): 2,
        ("/accounts/login/", "POST", "200"): 1,
        ("/accounts/login/", "POST", "429"): 1,  # the lockout
        ("/oauth/revoke/", "POST", "200"): 1,
        ("/oauth/revoke/", "POST", "429"): 1,  # the rate limit, answered before the URL resolved
        ("unmatched", "GET", "404"): 1,
        ("/metrics", "GET", "200"): 1,  # the first scrape; the second is counted once it is answered
    }
    for (endpoint, method, status), moved in requests_moved.items():
        labels = {"endpoint": endpoint, "method": method, "status": status}
        assert delta(before, after, "idp_http_requests_total", **labels) == moved, labels
        assert delta(before, after, "idp_http_request_duration_seconds_count", **labels) == moved, labels
        assert delta(before, after, "idp_http_request_duration_seconds_bucket", le="+Inf", **labels) == moved
    assert not [labels for _, labels in after if any("12345" in label for _, label in labels)], "no raw path"


def test_a_route_with_a_parameter_is_one_series_whatever_the_id(client, db, metrics_access):
    before = samples_of(client.get("/metrics", REMOTE_ADDR=ALLOWED).content.decode())
    for user_id in (1, 2, 999999):
        assert client.post(f"/api/v1/users/{user_id}/deactivate/").status_code == 401
    after = samples_of(client.get("/metrics", REMOTE_ADDR=ALLOWED).content.decode())
    route = {"endpoint": "/api/v1/users/<object_id:user_id>/deactivate/", "method": "POST", "status": "401"}
    assert delta(before, after, "idp_http_requests_total", **route) == 3


# --- A Celery worker's own /metrics ------------------------------------------------------------------


class MetricsWorker:
    """A real prefork worker (one pool process) serving its metrics on a free loopback port."""

    def __init__(self, tmp_path, **env: str) -> None:
        self.port = free_port()
        self.queue = queue_name("metrics")
        environment = {"IDP_WORKER_METRICS_PORT": str(self.port), **env}
        self.worker = worker_start(self.queue, tmp_path / "worker.log", tmp_path / "unused", **environment)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def finished(self, *lines: str) -> None:
        self.worker.wait_for(lambda: all(line in self.worker.log() for line in lines), "every task finished")

    def stop(self) -> None:
        stop(self.worker.process)
        delete_queue(self.queue)


@pytest.fixture
def worker(transactional_db, tmp_path):
    started = MetricsWorker(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def test_task_outcomes_lag_and_rotations_are_counted_in_the_worker_and_served_by_it(live_server, worker):
    long_ago = timezone.now() - timedelta(days=40)
    signing_keys_ensure(actor=audit.Actor.system("tests"), now=long_ago)  # every chain due, successor ready
    owner = make_user()
    apikey_create(
        name="nightly",
        user=owner,
        scopes=["profile"],
        rotate_every=timedelta(hours=1),
        now=datetime.now(UTC) - timedelta(hours=2),
        caller=Caller.operator(audit.Actor.user(owner)),
    )
    web_before = scrape(live_server.url)
    before = scrape(worker.url)  # loopback may scrape in development, like the web server's

    sent = {
        "rotate_signing_keys": rotate_signing_keys.apply_async(queue=worker.queue),
        "rotate_due_apikeys": rotate_due_apikeys.apply_async(queue=worker.queue),
        "fail_always": celery_tasks.fail_always.apply_async(queue=worker.queue),
        "retry_once": celery_tasks.retry_once.apply_async(queue=worker.queue),
    }
    try:
        worker.finished(
            f"Task {rotate_signing_keys.name}[{sent['rotate_signing_keys'].id}] succeeded",
            f"Task {rotate_due_apikeys.name}[{sent['rotate_due_apikeys'].id}] succeeded",
            f"Task {celery_tasks.fail_always.name}[{sent['fail_always'].id}] raised",
            f"Task {celery_tasks.retry_once.name}[{sent['retry_once'].id}] retry",
            f"Task {celery_tasks.retry_once.name}[{sent['retry_once'].id}] succeeded",
        )
        after = scrape(worker.url)
        web_after = scrape(live_server.url)
    finally:
        remove_queued_notifications(set(ApiKey.objects.values_list("pk", flat=True)))

    outcomes = {
        (rotate_signing_keys.name, "success"): 1,
        (rotate_due_apikeys.name, "success"): 1,
        (celery_tasks.fail_always.name, "failure"): 1,
        (celery_tasks.fail_always.name, "success"): 0,
        (celery_tasks.retry_once.name, "retry"): 1,
        (celery_tasks.retry_once.name, "success"): 1,
    }
    for (task, outcome), moved in outcomes.items():
        assert delta(before, after, "idp_celery_tasks_total", task=task, outcome=outcome) == moved, (task, outcome)
    for algorithm in django_settings.SIGNING_ALGORITHMS:
        assert delta(before, after, "idp_signing_key_rotations_total", algorithm=algorithm) == 1, algorithm
    assert delta(before, after, "idp_apikey_rotations_total", trigger="scheduled") == 1
    # Five executions (the retried task twice) waited in this test's queue, each observed once.
    assert value(after, "idp_celery_queue_lag_seconds_count", queue=worker.queue) == 5
    assert value(after, "idp_celery_queue_lag_seconds_bucket", queue=worker.queue, le="+Inf") == 5
    assert value(after, "idp_celery_queue_lag_seconds_bucket", queue=worker.queue, le="0.1") <= 5
    assert 0 < value(after, "idp_celery_queue_lag_seconds_sum", queue=worker.queue) < 5 * 600
    # Counted where they happened, once: the web server's scrape has none of them.
    assert not [labels for name, labels in web_after if name == "idp_celery_tasks_total"]
    for algorithm in django_settings.SIGNING_ALGORITHMS:
        assert delta(web_before, web_after, "idp_signing_key_rotations_total", algorithm=algorithm) == 0


def test_a_pool_process_that_dies_keeps_its_counts(worker):
    def fail_once() -> None:
        sent = celery_tasks.fail_always.apply_async(queue=worker.queue)
        worker.finished(f"Task {celery_tasks.fail_always.name}[{sent.id}] raised")

    failures = {"task": celery_tasks.fail_always.name, "outcome": "failure"}
    fail_once()
    [first] = pool_processes(worker.worker)
    assert value(scrape(worker.url), "idp_celery_tasks_total", **failures) == 1, "counted in the pool process"

    os.kill(first, signal.SIGKILL)  # idle, so no task is lost; the worker starts another
    worker.worker.wait_for(lambda: pool_processes(worker.worker) - {first}, "a new pool process")
    fail_once()

    assert first not in pool_processes(worker.worker)
    assert value(scrape(worker.url), "idp_celery_tasks_total", **failures) == 2, "the dead process's count stays"


def test_a_workers_metrics_follow_the_web_servers_access_rules(transactional_db, tmp_path):
    # Loopback is not among the allowed networks here: only the token lets a scrape in.
    started = MetricsWorker(tmp_path, IDP_METRICS_ALLOWED_NETWORKS="192.0.2.0/24", IDP_METRICS_TOKEN=TOKEN)
    try:
        unknown = requests.get(f"{started.url}/no-such-page", timeout=10)
        refused = [
            requests.get(f"{started.url}/metrics", headers=headers, timeout=10)
            for headers in ({}, {"Authorization": "Bearer " + "y" * len(TOKEN)}, {"Authorization": f"Basic {TOKEN}"})
        ]
        elsewhere = requests.get(f"{started.url}/other", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        posted = requests.post(f"{started.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        samples = scrape(started.url, TOKEN)
    finally:
        started.stop()

    assert unknown.status_code == 404
    for reply in [*refused, elsewhere]:
        assert (reply.status_code, reply.content) == (404, unknown.content), "the same as any unknown path"
    assert posted.status_code == 405
    assert ("idp_signing_key_rotations_total", frozenset({("algorithm", "RS256")})) in samples, "the worker's own"


def test_a_worker_whose_metrics_port_is_taken_does_not_start(transactional_db, tmp_path):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - the worker binds every interface; so must the squatter
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(pytest.fail.Exception, match="the worker exited"):
            worker_start(
                queue_name("taken"), tmp_path / "worker.log", tmp_path / "unused", IDP_WORKER_METRICS_PORT=str(port)
            )
    log = (tmp_path / "worker.log").read_text()
    assert f"IDP_WORKER_METRICS_PORT={port}: cannot serve metrics there" in log


# --- The broker, read at scrape time ---------------------------------------------------------------------


def test_the_queue_length_is_read_from_the_broker(client, db, metrics_access):
    queue = celery_app.conf.task_default_queue
    before = samples_of(client.get("/metrics", REMOTE_ADDR=ALLOWED).content.decode())
    publishing = time.time()
    sent = celery_tasks.fail_always.apply_async(queue=queue)  # no worker consumes it here
    published = time.time()
    with redis.Redis.from_url(django_settings.CELERY_BROKER_URL) as broker:
        [raw] = [raw for raw in broker.lrange(queue, 0, -1) if sent.id.encode() in raw]
        try:
            published_at = json.loads(raw)["headers"][PUBLISHED_AT_HEADER]
            assert publishing <= published_at <= published, "stamped when published, for the lag"
            after = samples_of(client.get("/metrics", REMOTE_ADDR=ALLOWED).content.decode())
        finally:
            broker.lrem(queue, 0, raw)
    assert delta(before, after, "idp_celery_queue_length", queue=queue) == 1
    assert value(after, "idp_celery_broker_up") == 1


def test_an_unreachable_broker_is_reported_not_failed(client, db, metrics_access, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/1"
    started = time.monotonic()
    reply = client.get("/metrics", REMOTE_ADDR=ALLOWED)
    assert time.monotonic() - started < WAIT_SECONDS
    assert reply.status_code == 200
    samples = samples_of(reply.content.decode())
    assert value(samples, "idp_celery_broker_up") == 0
    assert not [name for name, _ in samples if name == "idp_celery_queue_length"], "unknown, not zero"
    assert [name for name, _ in samples if name == "idp_http_requests_total"], "this process's own metrics stay"


# --- gunicorn: two worker processes, one set of numbers --------------------------------------------------


def test_gunicorn_workers_are_summed_and_a_restart_starts_from_zero(transactional_db, tmp_path):
    resource_server = make_client(grant="client_credentials", redirect_uris=[], scopes=[], is_resource_server=True)
    directory = tmp_path / "prometheus"
    directory.mkdir()
    # What a previous run left: a file another server's worker wrote.
    stale = directory / "counter_99999.db"
    stale.write_bytes(b"left over")
    server = gunicorn_start(tmp_path / "gunicorn.log", PROMETHEUS_MULTIPROC_DIR=str(directory), IDP_METRICS_TOKEN=TOKEN)
    try:
        assert not stale.exists(), "emptied at start"
        with held_introspection(server, resource_server) as reply:
            # One worker reads the held request's body; the other serves every /healthz meanwhile.
            for _ in range(5):
                assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
        samples = scrape(server.url, TOKEN)
        pids = {path.name.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}
    finally:
        gunicorn_stop(server)

    assert reply[0].startswith(b"HTTP/1.1 200"), reply[0][:200]
    assert reply[0].endswith(b'{"active": false}'), reply[0][-200:]
    healthz = {"endpoint": "/healthz", "method": "GET", "status": "200"}
    introspect = {"endpoint": "/oauth/introspect/", "method": "POST", "status": "200"}
    assert value(samples, "idp_http_requests_total", **healthz) == 5
    assert value(samples, "idp_http_requests_total", **introspect) == 1, "counted by the other worker"
    assert len(pids) >= 2, "each worker counts in its own files"
    assert server.process.returncode == 0


def basic_auth(issued) -> str:
    pair = f"{quote(issued.application.client_id, safe='')}:{quote(issued.client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def held_introspection(server: Server, resource_server):
    """An introspection whose body arrives only when the block ends: it holds one gunicorn worker."""
    head = (
        f"POST /oauth/introspect/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: {basic_auth(resource_server)}\r\nContent-Type: application/x-www-form-urlencoded"
    )
    return held_request(server, head, urlencode({"token": "x" * 64}).encode())


# --- Who may scrape -----------------------------------------------------------------------------------

NOT_FOUND_PAGE = "/no-such-page"

# (address, extra headers, allowed)
CALLERS = {
    "allowed network, no token": (ALLOWED, {}, True),
    "allowed network, wrong token": (ALLOWED, {"HTTP_AUTHORIZATION": "Bearer wrong"}, True),
    "token from outside": (OUTSIDE, {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}, True),
    "token, lower-case scheme": (OUTSIDE, {"HTTP_AUTHORIZATION": f"bearer {TOKEN}"}, True),
    "no token from outside": (OUTSIDE, {}, False),
    "wrong token from outside": (OUTSIDE, {"HTTP_AUTHORIZATION": "Bearer " + "y" * len(TOKEN)}, False),
    "token prefix": (OUTSIDE, {"HTTP_AUTHORIZATION": f"Bearer {TOKEN[:-1]}"}, False),
    "token with more": (OUTSIDE, {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}x"}, False),
    "token as Basic": (OUTSIDE, {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"}, False),
    "token in the query": (OUTSIDE, {"QUERY_STRING": f"token={TOKEN}"}, False),
    "oversized token": (OUTSIDE, {"HTTP_AUTHORIZATION": "Bearer " + TOKEN * 2000}, False),
    "non-ASCII token": (OUTSIDE, {"HTTP_AUTHORIZATION": "Bearer " + "é✓" * 20}, False),
    "latin-1 bytes token": (OUTSIDE, {"HTTP_AUTHORIZATION": "Bearer " + "\xe9\xff" * 20}, False),
    "NUL token": (OUTSIDE, {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}\x00"}, False),
    "scheme only": (OUTSIDE, {"HTTP_AUTHORIZATION": "Bearer"}, False),
    "spoofed forwarded address": (OUTSIDE, {"HTTP_X_FORWARDED_FOR": ALLOWED}, False),
    "garbage forwarded address": (OUTSIDE, {"HTTP_X_FORWARDED_FOR": "not-an-ip, \x00"}, False),
}


@pytest.mark.django_db
@pytest.mark.parametrize("caller", CALLERS)
def test_only_allowed_networks_and_the_token_may_scrape(client, metrics_access, caller):
    address, headers, allowed = CALLERS[caller]
    reply = client.get("/metrics", REMOTE_ADDR=address, **headers)
    if allowed:
        assert reply.status_code == 200
        assert b"idp_http_requests_total" in reply.content
        assert reply["Cache-Control"] == "no-store"
    else:
        unknown = client.get(NOT_FOUND_PAGE, REMOTE_ADDR=address)
        assert (reply.status_code, reply.content) == (404, unknown.content), "the same as any unknown path"


@pytest.mark.django_db
def test_the_forwarded_address_counts_only_from_a_trusted_proxy(client, metrics_access, settings):
    settings.IDP_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=ALLOWED).status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=OUTSIDE).status_code == 404
    # The proxy's own address is not in the allowed networks: a visitor it forwards is judged alone.
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.2").status_code == 404


@pytest.mark.django_db
def test_an_ipv4_client_on_a_dual_stack_socket_is_matched_as_ipv4(client, metrics_access):
    assert client.get("/metrics", REMOTE_ADDR=f"::ffff:{ALLOWED}").status_code == 200


@pytest.mark.django_db
def test_nobody_scrapes_without_networks_or_token(client, settings):
    settings.IDP_METRICS_ALLOWED_NETWORKS = []
    settings.IDP_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "delete", "options"])
def test_other_methods_never_fail_on_metrics(client, metrics_access, method):
    reply = getattr(client, method)("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer " + "\u2603" * 9000)
    assert 400 <= reply.status_code < 500


@pytest.mark.django_db
def test_loopback_may_scrape_in_development_only():
    from tests.idp.test_settings import printed, production_env

    script = (
        "from django.conf import settings; "
        "print(len(settings.IDP_METRICS_ALLOWED_NETWORKS), bool(settings.IDP_METRICS_TOKEN))"
    )
    assert printed(script, production_env()) == ["0", "False"]
    assert printed(script, production_env(IDP_ENV="development", IDP_ISSUER=None)) == ["2", "False"]


@pytest.mark.parametrize(
    ("variable", "given"),
    [
        ("IDP_METRICS_ALLOWED_NETWORKS", "10.0.0.0/8,not-a-network"),
        ("IDP_METRICS_TOKEN", "too-short"),
        ("IDP_METRICS_TOKEN", "a token with spaces " + "x" * 40),
        ("IDP_METRICS_TOKEN", "x" * 257),
        ("IDP_WORKER_METRICS_PORT", "70000"),
        ("IDP_WORKER_METRICS_PORT", "metrics"),
    ],
)
def test_bad_metrics_settings_stop_startup_naming_the_variable(variable, given):
    from tests.idp.test_settings import manage, production_env

    result = manage("check", env=production_env(**{variable: given}))
    assert result.returncode != 0
    assert variable in result.stderr
    if variable == "IDP_METRICS_TOKEN":
        assert given not in result.stderr, "a secret is never echoed"
