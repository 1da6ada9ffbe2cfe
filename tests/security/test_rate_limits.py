"""Rate limits through HTTP: each endpoint group answers 429 with Retry-After and the JSON error
once over its limit, per client IP, per signed-in user (per client and per API key, counting only
requests that proved them: test_rate_limit_poisoning.py); the counters
live in Redis, shared by every process; X-Forwarded-For counts only from a trusted proxy; and a
Redis outage lets requests through rather than failing them."""

from __future__ import annotations

import base64
import logging

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.test import Client

import audit
from accounts.selectors import Caller
from accounts.services import admin_role_ensure, role_grant
from apikeys.services import apikey_create
from audit.models import AuditEvent
from tests.factories import make_user, signed_in_client

LIMITED_BODY = {"error": "rate_limited", "error_description": "too many requests, retry later"}
# (group, method, path, form data): one request of each endpoint group, valid or not; what the
# endpoint answers does not matter, only that the limiter counts it.
GROUPS = [
    ("token", "post", "/oauth/token/", {"grant_type": "client_credentials"}),
    ("introspect", "post", "/oauth/introspect/", {"token": "nothing"}),
    ("revoke", "post", "/oauth/revoke/", {"token": "nothing"}),
    ("authorize", "get", "/oauth/authorize/", {"response_type": "code", "client_id": "nobody"}),
    ("signin", "post", "/accounts/login/", {"username": "nobody-at-all", "password": "wrong"}),
    ("api", "get", "/api/v1/audit/", {}),
]


def api_key(public_id: str) -> str:
    """A value of an API key's shape (not a real key: the limiter counts it before auth refuses it)."""
    return f"idpk_{public_id}_{'x' * 43}abcdef"


def basic(client_id: str, secret: str = "wrong") -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def assert_limited(reply) -> None:
    assert reply.status_code == 429
    assert 0 < int(reply.headers["Retry-After"]) <= 60
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.json() == LIMITED_BODY


@pytest.fixture
def limits(settings):
    """Every limit generous, so a test lowers only the one it is about."""
    settings.IDP_RATE_LIMITS = {name: "1000/minute" for name in django_settings.IDP_RATE_LIMITS}
    return settings.IDP_RATE_LIMITS


@pytest.mark.django_db
@pytest.mark.parametrize(("group", "method", "path", "data"), GROUPS, ids=[group[0] for group in GROUPS])
def test_each_endpoint_group_allows_a_burst_up_to_its_limit_then_answers_429(limits, group, method, path, data):
    limits[f"{group}.ip"] = "3/minute"
    client = Client()
    for _ in range(3):
        assert getattr(client, method)(path, data).status_code != 429, "the burst passes"
    assert_limited(getattr(client, method)(path, data))
    assert_limited(getattr(client, method)(path, data))

    other = Client(REMOTE_ADDR="198.51.100.9")
    assert getattr(other, method)(path, data).status_code != 429, "another address has its own count"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    ["Basic \u00e9", "Basic !!!", "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Basic", "Bearer idpk_\u00e9"],
)
def test_malformed_credentials_are_counted_by_address_and_never_fail(limits, authorization):
    limits["token.ip"] = "1/minute"
    client = Client()
    reply = client.post("/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=authorization)
    assert reply.status_code == 401
    assert_limited(client.post("/oauth/token/", {}, HTTP_AUTHORIZATION=authorization))


@pytest.mark.django_db
def test_the_api_is_limited_per_user_across_their_keys(limits):
    limits["api.user"] = "2/minute"
    owner, other = make_user(), make_user()
    admins = admin_role_ensure(actor=audit.Actor.system("tests"))
    for user in (owner, other):  # the throttle runs after DRF's permission check
        role_grant(role=admins, user=user, actor=audit.Actor.system("tests"))
    first, second, others = (
        apikey_create(
            name=name,
            caller=Caller.operator(audit.Actor.user(user)),
            user=user,
            scopes=["idp.manage"],
            role_ids=[admins.pk],
        ).secret
        for name, user in (("first", owner), ("second", owner), ("other", other))
    )
    client = Client()
    assert client.get("/api/v1/users/", HTTP_X_API_KEY=first).status_code != 429
    assert client.get("/api/v1/users/", HTTP_X_API_KEY=second).status_code != 429
    assert_limited(Client(REMOTE_ADDR="203.0.113.9").get("/api/v1/users/", HTTP_X_API_KEY=first))
    assert_limited(client.get("/api/v1/users/", HTTP_AUTHORIZATION=f"Bearer {second}"))
    assert client.get("/api/v1/users/", HTTP_X_API_KEY=others).status_code != 429, "another user is not limited"


@pytest.mark.django_db
def test_the_authorization_endpoint_is_limited_per_signed_in_user(limits):
    limits["authorize.user"] = "2/minute"
    alice, bob = make_user(), make_user()
    browser = signed_in_client(alice)
    for _ in range(2):
        assert browser.get("/oauth/authorize/", {"client_id": "nobody"}).status_code != 429
    assert_limited(browser.get("/oauth/authorize/", {"client_id": "nobody"}))

    other = signed_in_client(bob)  # same address
    assert other.get("/oauth/authorize/", {"client_id": "nobody"}).status_code != 429


@pytest.mark.django_db(transaction=True)
def test_counters_are_shared_between_processes_through_redis(limits, live_server):
    limits["token.ip"] = "4/minute"
    data = {"grant_type": "client_credentials"}
    for _ in range(2):
        assert requests.post(f"{live_server.url}/oauth/token/", data=data, timeout=10).status_code != 429
    client = Client()  # REMOTE_ADDR 127.0.0.1, as the live server sees requests
    for _ in range(2):
        assert client.post("/oauth/token/", data).status_code != 429
    assert_limited(requests.post(f"{live_server.url}/oauth/token/", data=data, timeout=10))
    assert_limited(client.post("/oauth/token/", data))

    # In Redis, as any other process would read it.
    server = redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    assert [key.decode() for key in server.scan_iter(match="idp:rl:*token.ip/127.0.0.1*")]


@pytest.mark.django_db
def test_forwarded_for_is_ignored_from_an_untrusted_peer(limits):
    limits["token.ip"] = "2/minute"
    client = Client()
    for n in range(2):
        assert client.post("/oauth/token/", {}, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code != 429
    assert_limited(client.post("/oauth/token/", {}, HTTP_X_FORWARDED_FOR="198.51.100.99"))


@pytest.mark.django_db
def test_forwarded_for_is_honoured_from_a_trusted_proxy(limits, settings):
    settings.IDP_TRUSTED_PROXIES = ["127.0.0.0/8", "10.0.0.0/8"]
    limits["token.ip"] = "2/minute"
    client = Client()  # the proxy, at 127.0.0.1
    # The rightmost address that is not a proxy of ours: what the client wrote left of it is not believed.
    chain = "6.6.6.6, 198.51.100.1, 10.0.0.7"
    for _ in range(2):
        assert client.post("/oauth/token/", {}, HTTP_X_FORWARDED_FOR=chain).status_code != 429
    assert_limited(client.post("/oauth/token/", {}, HTTP_X_FORWARDED_FOR="7.7.7.7, 198.51.100.1"))
    assert client.post("/oauth/token/", {}, HTTP_X_FORWARDED_FOR="198.51.100.2").status_code != 429

    # Garbage in the header: the peer itself is the client.
    for _ in range(2):
        assert client.post("/oauth/token/", {}, HTTP_X_FORWARDED_FOR="not an address").status_code != 429
    assert_limited(client.post("/oauth/token/", {}, HTTP_X_FORWARDED_FOR="198.51.100.3, <script>"))


@pytest.mark.django_db
def test_audit_events_carry_the_forwarded_client_address_only_from_a_trusted_proxy(settings):
    Client().post("/accounts/login/", {"username": "nobody", "password": "x"}, HTTP_X_FORWARDED_FOR="198.51.100.20")
    settings.IDP_TRUSTED_PROXIES = ["127.0.0.1/32"]
    Client().post("/accounts/login/", {"username": "nobody", "password": "x"}, HTTP_X_FORWARDED_FOR="198.51.100.21")
    events = AuditEvent.objects.filter(action="login.failed").order_by("id")
    assert [event.source_ip for event in events] == ["127.0.0.1", "198.51.100.21"]


@pytest.mark.django_db
def test_redis_unreachable_lets_requests_through(limits, settings, caplog):
    from idp.http.ratelimit import _storage

    settings.IDP_RATE_LIMIT_STORAGE_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    limits["token.ip"] = "1/minute"
    caplog.set_level(logging.WARNING, logger="idp.http.ratelimit")
    client = Client()
    try:
        for _ in range(3):
            reply = client.post("/oauth/token/", {"grant_type": "client_credentials"})
            assert reply.status_code not in (429, 500)
    finally:
        _storage.cache_clear()
    assert any("rate limit storage unavailable" in record.getMessage() for record in caplog.records)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "entry",
    ["token.ip", "token.ip=", "nothing.ip=3/minute", "token.ip=often", "token.ip=3/fortnight"],
)
def test_a_malformed_rate_limit_setting_stops_startup(entry):
    from tests.idp.test_settings import manage, production_env

    result = manage("check", env=production_env(IDP_RATE_LIMITS=entry))
    assert result.returncode != 0
    assert "IDP_RATE_LIMITS" in result.stderr


@pytest.mark.django_db
def test_the_windows_go_on_counting_when_redis_has_forgotten_their_scripts(limits, settings, tmp_path):
    """A request's windows go to Redis as one pipeline of the limits library's scripts, by their
    digests (idp.http.ratelimit._redis_windows). A Redis that lost them (a restart, SCRIPT FLUSH) is
    sent them again, and the counts kept in its keys go on. On a Redis of this test's own: flushing
    the shared one's scripts would touch every other user of it."""
    import socket
    import subprocess
    import time

    from idp.http import ratelimit

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(  # noqa: S603
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],  # noqa: S607
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        own = redis.Redis(port=port)
        deadline = time.monotonic() + 30
        while True:  # a deadline for start-up, not a measurement
            try:
                own.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        settings.IDP_RATE_LIMIT_STORAGE_URL = f"redis://127.0.0.1:{port}/0"
        limits["token.ip"] = "3/minute"
        client = Client()
        # Naming a client adds a tested window (its failures from this address) to the spent one.
        form, named = {"grant_type": "client_credentials"}, {"HTTP_AUTHORIZATION": basic("some-client")}
        for _ in range(2):
            assert client.post("/oauth/token/", form, **named).status_code != 429
        # Redis forgets the test's script but keeps the hit's: only the refused window is sent
        # again, and the address is not counted twice for the third request.
        own.script_flush()
        own.script_load(
            ratelimit._limiter(settings.IDP_RATE_LIMIT_STORAGE_URL).storage.lua_acquire_moving_window.script
        )
        assert client.post("/oauth/token/", form, **named).status_code != 429
        assert_limited(client.post("/oauth/token/", form, **named))
    finally:
        server.terminate()
        server.wait(timeout=30)
