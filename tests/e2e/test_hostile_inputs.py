"""Hostile input on every endpoint: a clear 4xx with an RFC-style error, never a 5xx or a stack
trace, and nothing stored or changed.

The table crosses each parameter of each endpoint with each hostile value; a second table covers
what is wrong with the request itself (body type, size, encoding, headers). The values, and the
other hostile-input tests, are in tests/hostile.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.db import connection

from tests.conftest import REDIRECT_URI
from tests.factories import USER_PASSWORD, signed_in_session
from tests.hostile import VALUES
from tests.relying_party import parse_form

# Values that every parameter must refuse outright, whatever it means.
ALWAYS_400 = {"nul", "10kb"}

TABLES = ("idp_accesstoken", "idp_refreshtoken", "idp_grant", "idp_idtoken", "idp_application", "accounts_user")


@dataclass(frozen=True)
class Target:
    """One endpoint, one parameter, and a valid request around it."""

    name: str
    method: str
    path: str
    parameter: str
    base: dict[str, str]
    client_auth: bool = False
    signed_in: bool = False


AUTHORIZE = {"response_type": "code", "client_id": "CLIENT", "redirect_uri": REDIRECT_URI, "scope": "openid"}
CODE_GRANT = {"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT_URI, "code_verifier": "v" * 43}


def base(request: dict[str, str], without: str, **extra: str) -> dict[str, str]:
    """A valid request with one parameter taken out (the one the hostile value goes into)."""
    return {key: value for key, value in {**request, **extra}.items() if key != without}


def token(parameter: str, request: dict[str, str] = CODE_GRANT, **kwargs) -> Target:
    return Target(f"token-{parameter}", "POST", "/oauth/token/", parameter, base(request, parameter), **kwargs)


def authorize(parameter: str, method: str = "GET", **extra: str) -> Target:
    name = f"authorize-{method.lower()}-{parameter}"
    return Target(name, method, "/oauth/authorize/", parameter, base(AUTHORIZE, parameter, **extra), signed_in=True)


TARGETS = [
    token("grant_type", client_auth=True),
    token("code", client_auth=True),
    token("redirect_uri", client_auth=True),
    token("code_verifier", client_auth=True),
    token("refresh_token", {"grant_type": "refresh_token"}, client_auth=True),
    token("scope", {"grant_type": "refresh_token", "refresh_token": "x"}, client_auth=True),
    token("client_id"),
    token("client_secret", {**CODE_GRANT, "client_id": "CLIENT"}),
    Target("introspect-token", "POST", "/oauth/introspect/", "token", {}, client_auth=True),
    Target("introspect-hint", "POST", "/oauth/introspect/", "token_type_hint", {"token": "x"}, client_auth=True),
    Target("revoke-token", "POST", "/oauth/revoke/", "token", {}, client_auth=True),
    Target("revoke-hint", "POST", "/oauth/revoke/", "token_type_hint", {"token": "x"}, client_auth=True),
    authorize("client_id"),
    authorize("redirect_uri"),
    authorize("response_type"),
    authorize("scope"),
    authorize("state"),
    authorize("nonce"),
    authorize("code_challenge", code_challenge_method="S256"),
    authorize("prompt"),
    authorize("max_age"),
    authorize("id_token_hint"),
    authorize("claims"),
    authorize("request"),
    authorize("request_uri"),
    authorize("response_type", method="POST"),
    authorize("client_id", method="POST", allow="Authorize"),
    Target("logout-id_token_hint", "GET", "/oauth/logout/", "id_token_hint", {}),
    Target("logout-redirect", "GET", "/oauth/logout/", "post_logout_redirect_uri", {"client_id": "CLIENT"}),
    Target("logout-client_id", "GET", "/oauth/logout/", "client_id", {"state": "s"}),
    Target("userinfo-access_token", "POST", "/oauth/userinfo/", "access_token", {}),
    Target("discovery-query", "GET", "/.well-known/openid-configuration", "q", {}),
    Target("jwks-query", "GET", "/.well-known/jwks.json", "q", {}),
    Target("login-username", "POST", "/accounts/login/", "username", {"password": USER_PASSWORD}),
    Target("login-next", "POST", "/accounts/login/", "next", {"username": "alice", "password": USER_PASSWORD}),
]


def row_counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        counts = {}
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
            counts[table] = cursor.fetchone()[0]
        return counts


def assert_safe_answer(reply: requests.Response, *, value: str) -> None:
    """What every answer to hostile input has in common."""
    assert reply.status_code < 500, f"{reply.status_code}: {reply.text[:300]}"
    body = reply.text
    assert "Traceback" not in body and 'File "/' not in body, "no stack trace"
    assert "psycopg" not in body and "django.db" not in body, "no internals"
    assert "Set-Cookie: injected" not in str(reply.headers) and "injected" not in reply.cookies, "no header injection"
    if value == VALUES["html"]:
        assert "<script>alert(1)</script>" not in body, "echoed input is escaped"
    if reply.status_code >= 400 and reply.headers.get("Content-Type", "").startswith("application/json"):
        error = reply.json()
        assert isinstance(error.get("error"), str) and error["error"], "RFC 6749 §5.2 error shape"
        assert error["error"].replace("_", "").isalpha()


@pytest.fixture
def browser(live_server, alice):
    """A signed-in browser (alice), as the authorization endpoint sees a real user."""
    return signed_in_session(live_server.url, alice)


def send(live_server, target: Target, value: str, *, client, browser) -> requests.Response:
    client_id = client.application.client_id
    data = {key: (client_id if item == "CLIENT" else item) for key, item in target.base.items()}
    data[target.parameter] = value
    session = browser if target.signed_in else requests.Session()
    auth = (client_id, client.client_secret) if target.client_auth else None
    url = f"{live_server.url}{target.path}"
    if target.path == "/accounts/login/" or (target.method == "POST" and target.signed_in):
        page = session.get(f"{live_server.url}/accounts/login/", timeout=10)
        data["csrfmiddlewaretoken"] = parse_form(page.text)[1]["csrfmiddlewaretoken"]
        session.headers["Referer"] = url
    if target.method == "GET":
        return session.get(url, params=data, auth=auth, allow_redirects=False, timeout=10)
    return session.post(url, data=data, auth=auth, allow_redirects=False, timeout=10)


def check_hostile_value(live_server, target: Target, value_name: str, *, client, browser) -> None:
    value = VALUES[value_name]
    before = row_counts()

    reply = send(live_server, target, value, client=client, browser=browser)

    assert_safe_answer(reply, value=value)
    if value_name in ALWAYS_400:
        assert reply.status_code == 400, f"{reply.status_code}: {reply.text[:200]}"
        assert reply.json()["error"] == "invalid_request"
    if reply.status_code in (301, 302, 303):
        location = urljoin(reply.url, reply.headers["Location"])
        to_client = location.startswith(REDIRECT_URI)
        to_us = urlsplit(location).netloc == urlsplit(live_server.url).netloc
        assert to_client or to_us, f"redirects only to the registered client or to this server: {location[:200]}"
        if to_client and target.path == "/oauth/authorize/":
            assert "error=" in location, "hostile input never yields a code"
    assert row_counts() == before, "nothing is stored or changed"


@pytest.mark.parametrize("target", TARGETS, ids=[target.name for target in TARGETS])
def test_hostile_parameter_values(live_server, signing_key, issued_client, browser, target):
    """Each hostile value in turn; one test per parameter keeps the live-server set-up to one."""
    failures = []
    for value_name in VALUES:
        try:
            check_hostile_value(live_server, target, value_name, client=issued_client, browser=browser)
        except AssertionError as failure:
            failures.append(f"{value_name}: {failure}")
    assert not failures, "\n".join(failures)


@dataclass(frozen=True)
class Malformed:
    name: str
    path: str
    kwargs: dict
    status: int


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MACHINE = {"grant_type": "client_credentials"}


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": f"Basic {credentials}"}


MALFORMED = [
    Malformed("token-json-body", "/oauth/token/", {"json": MACHINE}, 400),
    Malformed("token-xml-body", "/oauth/token/", {"data": "<a>b</a>", "headers": {"Content-Type": "text/xml"}}, 400),
    Malformed("token-invalid-utf8", "/oauth/token/", {"data": b"grant_type=\xff\xfe", "headers": FORM}, 400),
    Malformed("token-bad-percent", "/oauth/token/", {"data": "grant_type=%zz%", "headers": FORM}, 400),
    Malformed("token-duplicate-grant", "/oauth/token/", {"data": [*MACHINE.items(), ("grant_type", "x")]}, 400),
    Malformed("token-huge-body", "/oauth/token/", {"data": {**MACHINE, "pad": "x" * 3_000_000}}, 413),
    Malformed("token-too-many-fields", "/oauth/token/", {"data": [(f"f{i}", "x") for i in range(1500)]}, 413),
    Malformed("token-basic-not-base64", "/oauth/token/", {"data": MACHINE, "headers": basic("%%%not-base64")}, 401),
    Malformed("token-basic-no-colon", "/oauth/token/", {"data": MACHINE, "headers": basic("bm9jb2xvbg==")}, 401),
    Malformed("token-basic-10kb", "/oauth/token/", {"data": MACHINE, "headers": basic("QUFB" * 2500)}, 401),
    Malformed(
        "introspect-basic-latin1", "/oauth/introspect/", {"data": {"token": "x"}, "headers": basic("\u00e9")}, 401
    ),
    Malformed("introspect-json-body", "/oauth/introspect/", {"json": {"token": "x"}}, 401),
    Malformed("revoke-no-client", "/oauth/revoke/", {"data": {"token": "x"}}, 401),
    Malformed("userinfo-bearer-sql", "/oauth/userinfo/", {"headers": {"Authorization": "Bearer ' OR 1=1 --"}}, 401),
    Malformed(
        "userinfo-bearer-10kb", "/oauth/userinfo/", {"headers": {"Authorization": "Bearer " + "A" * 10_240}}, 401
    ),
    Malformed("userinfo-no-token", "/oauth/userinfo/", {}, 401),
    Malformed("unknown-oauth-path", "/oauth/does-not-exist/", {}, 404),
    Malformed("unknown-well-known", "/.well-known/%00", {}, 404),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[case.name for case in MALFORMED])
def test_malformed_requests(live_server, signing_key, issued_client, case):
    before = row_counts()
    reply = requests.post(f"{live_server.url}{case.path}", allow_redirects=False, timeout=30, **case.kwargs)

    assert reply.status_code == case.status, f"{reply.status_code}: {reply.text[:300]}"
    assert_safe_answer(reply, value="")
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json()["error"]
    assert row_counts() == before


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/oauth/token/", "/oauth/introspect/", "/oauth/revoke/", "/.well-known/jwks.json"])
def test_wrong_methods_are_405_with_an_error_body(live_server, signing_key, path, method):
    reply = requests.request(method, f"{live_server.url}{path}", timeout=10)
    assert reply.status_code == 405
    assert_safe_answer(reply, value="")
    assert reply.json()["error"] == "invalid_request"
