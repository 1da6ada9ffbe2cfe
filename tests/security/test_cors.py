"""CORS: only the token, revocation, userinfo, JWKS and discovery endpoints answer cross-origin
requests, and only for the origins in IDP_CORS_ALLOWED_ORIGINS or an active client's registered
allowed_origins. Never "*", never credentials."""

from __future__ import annotations

import pytest
import requests
from django.core.cache import cache

from idp.http.cors import origin_validate
from tests.accounts.test_admin import read_form
from tests.factories import make_client

ENV_ORIGIN = "https://spa.example.com"
CLIENT_ORIGIN = "https://app.example.org"
FOREIGN_ORIGIN = "https://evil.example.net"

CORS_PATHS = [
    "/oauth/token/",
    "/oauth/revoke/",
    "/oauth/userinfo/",
    "/.well-known/jwks.json",
    "/.well-known/openid-configuration",
]
CLOSED_PATHS = ["/api/v1/users/", "/oauth/introspect/", "/oauth/authorize/", "/accounts/login/", "/healthz"]


@pytest.fixture(autouse=True)
def _origins(settings, db, signing_key):
    settings.CORS_ALLOWED_ORIGINS = [ENV_ORIGIN]
    cache.delete("idp:cors:client-origins")  # the shared Redis outlives each test's database
    application = make_client().application
    application.allowed_origins = CLIENT_ORIGIN
    application.save()
    yield application
    cache.delete("idp:cors:client-origins")


def _request(client, path: str, origin: str):
    if path in {"/oauth/token/", "/oauth/revoke/"}:
        return client.post(path, {"grant_type": "client_credentials"}, HTTP_ORIGIN=origin)
    return client.get(path, HTTP_ORIGIN=origin)


def _preflight(client, path: str, origin: str):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


@pytest.mark.parametrize("origin", [ENV_ORIGIN, CLIENT_ORIGIN])
@pytest.mark.parametrize("path", CORS_PATHS)
def test_an_allowed_origin_may_call_the_browser_endpoints(client, path, origin):
    reply = _request(client, path, origin)
    assert reply["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Credentials" not in reply
    assert "origin" in reply["Vary"].lower()


@pytest.mark.parametrize("path", CORS_PATHS)
def test_a_foreign_origin_gets_no_cors_headers(client, path):
    reply = _request(client, path, FOREIGN_ORIGIN)
    assert "Access-Control-Allow-Origin" not in reply
    assert "Access-Control-Allow-Credentials" not in reply


@pytest.mark.parametrize("origin", [ENV_ORIGIN, CLIENT_ORIGIN])
@pytest.mark.parametrize("path", CLOSED_PATHS)
def test_other_endpoints_answer_no_origin_at_all(client, path, origin):
    reply = client.get(path, HTTP_ORIGIN=origin)
    assert "Access-Control-Allow-Origin" not in reply
    preflight = _preflight(client, path, origin)
    assert "Access-Control-Allow-Origin" not in preflight
    assert "Access-Control-Allow-Methods" not in preflight


@pytest.mark.parametrize("origin", [ENV_ORIGIN, CLIENT_ORIGIN])
@pytest.mark.parametrize("path", CORS_PATHS)
def test_a_preflight_from_an_allowed_origin_is_answered(client, path, origin):
    reply = _preflight(client, path, origin)
    assert reply.status_code == 200
    assert reply["Access-Control-Allow-Origin"] == origin
    assert {m.strip() for m in reply["Access-Control-Allow-Methods"].split(",")} == {"GET", "POST", "OPTIONS"}
    assert {h.strip() for h in reply["Access-Control-Allow-Headers"].split(",")} == {"authorization", "content-type"}
    assert int(reply["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in reply


def test_a_preflight_from_a_foreign_origin_allows_nothing(client):
    reply = _preflight(client, "/oauth/token/", FOREIGN_ORIGIN)
    assert "Access-Control-Allow-Origin" not in reply
    assert "Access-Control-Allow-Methods" not in reply


def test_a_disabled_clients_origins_stop_working(client, _origins, django_capture_on_commit_callbacks):
    assert _request(client, "/oauth/token/", CLIENT_ORIGIN)["Access-Control-Allow-Origin"] == CLIENT_ORIGIN
    with django_capture_on_commit_callbacks(execute=True):
        _origins.is_active = False
        _origins.save()
    assert "Access-Control-Allow-Origin" not in _request(client, "/oauth/token/", CLIENT_ORIGIN)


def test_a_newly_registered_origin_works_at_once(client, _origins, django_capture_on_commit_callbacks):
    new_origin = "https://other.example.org"
    assert "Access-Control-Allow-Origin" not in _request(client, "/oauth/token/", new_origin)
    with django_capture_on_commit_callbacks(execute=True):
        _origins.allowed_origins = f"{CLIENT_ORIGIN} {new_origin}"
        _origins.save()
    assert _request(client, "/oauth/token/", new_origin)["Access-Control-Allow-Origin"] == new_origin


def test_the_origin_must_match_exactly(client):
    for near_miss in ("http://app.example.org", "https://app.example.org:8443", "https://app.example.org.evil.net"):
        assert "Access-Control-Allow-Origin" not in _request(client, "/oauth/token/", near_miss), near_miss


def test_cors_through_the_running_server(live_server):
    """A browser's view: a preflight, then the call, with a client's registered origin."""
    url = f"{live_server.url}/oauth/token/"
    headers = {"Origin": CLIENT_ORIGIN}
    preflight = requests.options(url, headers={**headers, "Access-Control-Request-Method": "POST"}, timeout=10)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == CLIENT_ORIGIN
    reply = requests.post(url, data={"grant_type": "client_credentials"}, headers=headers, timeout=10)
    assert reply.status_code in (400, 401)
    assert reply.headers["Access-Control-Allow-Origin"] == CLIENT_ORIGIN
    assert "Access-Control-Allow-Credentials" not in reply.headers
    foreign = requests.post(url, data={}, headers={"Origin": FOREIGN_ORIGIN}, timeout=10)
    assert "Access-Control-Allow-Origin" not in foreign.headers


@pytest.mark.parametrize(
    "origin",
    [
        "http://app.example.org",  # plain http off loopback
        "https://app.example.org/",  # a path
        "https://app.example.org/cb",
        "https://app.example.org?x=1",
        "https://*.example.org",
        "ftp://app.example.org",
        "app.example.org",
        "https://user@app.example.org",
        "https://app.example.org:99999",
    ],
)
def test_a_registered_origin_must_be_an_origin(origin):
    with pytest.raises(Exception) as raised:
        origin_validate(origin)
    assert raised.type.__name__ == "ValidationError"


@pytest.mark.parametrize("origin", ["https://app.example.org", "https://app.example.org:8443", "http://127.0.0.1:3000"])
def test_a_proper_origin_is_accepted(origin):
    origin_validate(origin)


def test_the_client_admin_saves_valid_origins_and_refuses_others(admin_client, _origins):
    url = f"/admin/idp/application/{_origins.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'name="allowed_origins"' in page
    fields: dict[str, list[str]] = {}
    for name, value in read_form(page, "application_form"):
        fields.setdefault(name, []).append(value)

    refused = admin_client.post(url, {**fields, "allowed_origins": "https://a.example.org/path"})
    assert refused.status_code == 200, "the form again, with the error"
    assert "no path" in refused.content.decode()
    saved = admin_client.post(url, {**fields, "allowed_origins": "https://a.example.org  https://b.example.org"})
    assert saved.status_code == 302
    _origins.refresh_from_db()
    assert _origins.allowed_origins == "https://a.example.org https://b.example.org"
