"""One table: every OAuth endpoint and every /api/v1 endpoint, each crossed with every way a request
can be hostile as a whole (bytes that are not UTF-8, odd unicode, wrong content types, JSON where
a form is expected and the reverse, duplicated parameters, 10 KB values, SQL and XSS strings, huge
Authorization headers). Each answer is below 500, a refused write is a 4xx in the RFC 6749 §5.2
shape, no answer leaks internals, and the database is unchanged: row counts and a checksum of
every table.

Sent through Django's test client, in process: the live server's own request handler refuses
long headers before the application sees them, and production's server is gunicorn (its header
limits are tests/security/test_header_limits.py). The tokens are real, minted by the provider.
The other hostile-input tests, and what they share, are listed in tests/hostile.py.
"""

# Fixtures imported from tests/api/conftest.py are parameters of the tests below.
# ruff: noqa: F811

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.db import connection
from django.test import Client

from accounts.services import role_grant, user_deactivate
from idp.oauth import clients as idp_clients
from tests.api.conftest import (  # noqa: F401 - fixtures
    SYSTEM,
    _fast_password_hashing,
    admin,
    management,
    role_with,
    service_subject,
    unique,
)
from tests.conftest import POST_LOGOUT_REDIRECT_URI, REDIRECT_URI
from tests.factories import UserFactory, make_client, make_machine_client, signed_in_client
from tests.hostile import RFC_DESCRIPTION, RFC_ERROR
from tests.security import responses

# Tables whose content a request may change without storing anything of the caller's: sessions
# (a signed-in browser's session is rewritten on each visit).
VOLATILE_TABLES = {"django_session", "idp_browsersession"}


def database_snapshot() -> dict[str, tuple[int, str]]:
    """(row count, md5 of every row) of every table in the schema."""
    snapshot = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
        tables = [name for (name,) in cursor.fetchall() if name not in VOLATILE_TABLES]
        for table in tables:
            quoted = connection.ops.quote_name(table)
            cursor.execute(
                f"SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')"  # noqa: S608
                f" FROM {quoted} t"
            )
            snapshot[table] = cursor.fetchone()
    return snapshot


@dataclass(frozen=True)
class Endpoint:
    """One endpoint and a well-formed request to it; `target` is the parameter hostile values go
    into. `form`: parameters as a query (GET) or form body (POST); `json`: a JSON body."""

    name: str
    method: str
    path: Callable[[dict[str, Any]], str]
    params: Callable[[dict[str, Any]], dict[str, Any]]
    target: str
    auth: str = "none"  # "basic": the client's credentials, "bearer": the admin's token, "session"
    body: str = "form"  # "form" or "json"
    # Writes refuse what they cannot take; reads may ignore a parameter they do not know.
    must_refuse: bool = True
    # A free-text target takes SQL- or HTML-looking text and odd unicode as the text it is.
    free_text: bool = False

    def __str__(self) -> str:
        return self.name


AUTHORIZE = {"response_type": "code", "client_id": "{client}", "redirect_uri": REDIRECT_URI, "scope": "openid"}
AUTHORIZE_PKCE = {**AUTHORIZE, "code_challenge": "E" * 43, "code_challenge_method": "S256", "state": "s"}


def oauth(name: str, method: str, path: str, params: dict[str, str], target: str, **kwargs: Any) -> Endpoint:
    return Endpoint(name, method, lambda w: path, lambda w: fill(params, w), target, **kwargs)


def fill(params: dict[str, Any], world: dict[str, Any]) -> dict[str, Any]:
    client_id = world["client"].application.client_id
    return {key: (client_id if value == "{client}" else value) for key, value in params.items()}


OPAQUE = {"auth": "basic", "free_text": True}
OAUTH = [
    oauth("authorize-get", "GET", "/oauth/authorize/", AUTHORIZE_PKCE, "scope", auth="session", must_refuse=False),
    oauth(
        "authorize-post", "POST", "/oauth/authorize/", {**AUTHORIZE_PKCE, "allow": "Authorize"}, "scope", auth="session"
    ),
    oauth(
        "token",
        "POST",
        "/oauth/token/",
        {"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT_URI, "code_verifier": "v" * 43},
        "code",
        auth="basic",
    ),
    oauth("token-refresh", "POST", "/oauth/token/", {"grant_type": "refresh_token"}, "refresh_token", auth="basic"),
    # RFC 7662 §2.2 and RFC 7009 §2.2: a token the server does not know is answered 200 (inactive,
    # or nothing to revoke), so a token that merely looks hostile is such a token.
    oauth("introspect", "POST", "/oauth/introspect/", {"token_type_hint": "access_token"}, "token", **OPAQUE),
    oauth("revoke", "POST", "/oauth/revoke/", {"token_type_hint": "access_token"}, "token", **OPAQUE),
    oauth("userinfo-get", "GET", "/oauth/userinfo/", {}, "access_token", auth="bearer", must_refuse=False),
    oauth("userinfo-post", "POST", "/oauth/userinfo/", {}, "access_token", auth="bearer", must_refuse=False),
    oauth(
        "logout-get",
        "GET",
        "/oauth/logout/",
        {"client_id": "{client}", "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI},
        "state",
        must_refuse=False,
    ),
    oauth(
        "logout-post",
        "POST",
        "/oauth/logout/",
        {"client_id": "{client}", "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI},
        "state",
        must_refuse=False,
    ),
    oauth("discovery", "GET", "/.well-known/openid-configuration", {}, "q", must_refuse=False),
    oauth("jwks", "GET", "/.well-known/jwks.json", {}, "q", must_refuse=False),
]


def api(name: str, method: str, path: Callable[[dict[str, Any]], str], params: Any, target: str, **kwargs: Any):
    body = "json" if method in ("POST", "PATCH") else "form"
    return Endpoint(
        name,
        method,
        lambda w: "/api/v1" + path(w),
        params if callable(params) else (lambda w: dict(params)),
        target,
        auth="bearer",
        body=body,
        must_refuse=method != "GET",
        **kwargs,
    )


API = [
    api("users-list", "GET", lambda w: "/users/", {"page_size": "10"}, "q"),
    api("users-create", "POST", lambda w: "/users/", {"email": "x@example.com", "password": "pw-" * 8}, "username"),
    # An already deactivated user: a free-text reason that is accepted changes nothing twice.
    api(
        "users-deactivate",
        "POST",
        lambda w: f"/users/{w['inactive_user'].pk}/deactivate/",
        {},
        "reason",
        free_text=True,
    ),
    # A user with no second factor: a reset that is accepted changes and records nothing.
    api(
        "users-mfa-reset",
        "POST",
        lambda w: f"/users/{w['inactive_user'].pk}/mfa-reset/",
        {},
        "reason",
        free_text=True,
    ),
    # Sessions of a user with none: ending them (all, or an unknown one) changes nothing.
    api("user-sessions-list", "GET", lambda w: f"/users/{w['inactive_user'].pk}/sessions/", {}, "q"),
    api("user-session-end", "DELETE", lambda w: f"/users/{w['inactive_user'].pk}/sessions/999999999/", {}, "q"),
    api(
        "user-sessions-end",
        "POST",
        lambda w: f"/users/{w['inactive_user'].pk}/sessions/end/",
        {},
        "reason",
        free_text=True,
    ),
    api("permissions-list", "GET", lambda w: "/permissions/", {}, "q"),
    api("permissions-create", "POST", lambda w: "/permissions/", {"description": "d"}, "codename"),
    api("roles-list", "GET", lambda w: "/roles/", {}, "client_id"),
    api("roles-create", "POST", lambda w: "/roles/", {"permissions": []}, "name"),
    api("role-get", "GET", lambda w: f"/roles/{w['role'].pk}/", {}, "q"),
    api("role-update", "PATCH", lambda w: f"/roles/{w['role'].pk}/", {}, "permissions"),
    api("role-delete", "DELETE", lambda w: "/roles/999999999/", {}, "q"),
    api("role-assignments-list", "GET", lambda w: "/role-assignments/", {}, "user"),
    api("role-assignments-create", "POST", lambda w: "/role-assignments/", lambda w: {"user": w["user"].pk}, "role"),
    api("role-assignment-revoke", "DELETE", lambda w: "/role-assignments/999999999/", {}, "q"),
    api("clients-list", "GET", lambda w: "/clients/", {}, "q"),
    api(
        "clients-create",
        "POST",
        lambda w: "/clients/",
        {"name": "Web", "client_type": "confidential", "grant": "authorization_code", "scopes": ["openid"]},
        "redirect_uris",
    ),
    api(
        "client-rotate-secret",
        "POST",
        lambda w: f"/clients/{w['target'].client_id}/rotate-secret/",
        {},
        "grace_seconds",
    ),
    # An already disabled client: as with deactivation, an accepted reason changes nothing.
    api(
        "client-disable",
        "POST",
        lambda w: f"/clients/{w['disabled'].client_id}/disable/",
        {},
        "reason",
        free_text=True,
    ),
    api("audit-list", "GET", lambda w: "/audit/", {}, "action"),
    api("schema", "GET", lambda w: "/schema/", {}, "format"),
]

ENDPOINTS = OAUTH + API

TEN_KB = "A" * 10 * 1024
SQL = "' OR '1'='1'; DROP TABLE accounts_user; --"
XSS = '"><script>alert(1)</script><img src=x onerror=alert(1)>'
ODD_UNICODE = {
    "rtl-override": "admin\u202egnp.exe",
    "zero-width": "ad\u200bmin\u200d\ufeff",
    "combining": "a" + "\u0301\u0302\u0303" * 200,
    "noncharacter": "x\uffff\ufffe",
    "emoji": "\U0001f4a9" * 50,
    "line-separator": "a\u2028b\u2029c",
}
# Raw bytes that UTF-8 forbids: a stray continuation byte, an overlong "/", an encoded surrogate.
BAD_BYTES = {
    "invalid-utf8": b"\xff\xfe",
    "overlong-utf8": b"\xc0\xaf",
    "surrogate-utf8": b"\xed\xa0\x80",
    "truncated-utf8": b"\xe2\x82",
}


@dataclass
class Prepared:
    """A request under construction: query, body and headers."""

    query: str = ""
    body: bytes = b""
    content_type: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def encode(endpoint: Endpoint, params: dict[str, Any], request: Prepared) -> None:
    """Put params where the endpoint reads them: the query, a form body or a JSON body."""
    if endpoint.method in ("GET", "DELETE"):
        request.query = urlencode(params, doseq=True, errors="surrogatepass")
    elif endpoint.body == "json":
        request.body, request.content_type = json.dumps(params).encode(), "application/json"
    else:
        request.body = urlencode(params, doseq=True, errors="surrogatepass").encode()
        request.content_type = "application/x-www-form-urlencoded"


def with_value(value: Any) -> Callable[[Endpoint, dict[str, Any], Prepared], None]:
    def spoil(endpoint: Endpoint, params: dict[str, Any], request: Prepared) -> None:
        encode(endpoint, {**params, endpoint.target: value}, request)

    return spoil


def with_raw_bytes(raw: bytes) -> Callable[[Endpoint, dict[str, Any], Prepared], None]:
    """The target's value as bytes no UTF-8 decoder accepts, in the query or the body as is."""

    def spoil(endpoint: Endpoint, params: dict[str, Any], request: Prepared) -> None:
        encode(endpoint, params, request)
        if endpoint.method in ("GET", "DELETE"):
            # WSGI carries the query string's bytes as latin-1 characters.
            prefix = f"{request.query}&" if request.query else ""
            request.query = f"{prefix}{endpoint.target}=" + raw.decode("latin-1")
        elif endpoint.body == "json":
            text = request.body[:-1] + (b", " if params else b"")
            request.body = text + b'"' + endpoint.target.encode() + b'": "' + raw + b'"}'
        else:
            prefix = request.body + b"&" if request.body else b""
            request.body = prefix + endpoint.target.encode() + b"=" + raw

    return spoil


def with_percent_encoded(raw: bytes) -> Callable[[Endpoint, dict[str, Any], Prepared], None]:
    """The same bytes percent-encoded, as a browser would send them."""

    def spoil(endpoint: Endpoint, params: dict[str, Any], request: Prepared) -> None:
        encode(endpoint, params, request)
        pair = f"{endpoint.target}={quote(raw)}"
        if endpoint.body == "json" and endpoint.method not in ("GET", "DELETE"):
            encode(endpoint, {**params, endpoint.target: quote(raw)}, request)  # JSON has no percent-decoding
        elif endpoint.method in ("GET", "DELETE"):
            request.query = f"{request.query}&{pair}" if request.query else pair
        else:
            request.body = (request.body + b"&" if request.body else b"") + pair.encode()

    return spoil


def duplicated(endpoint: Endpoint, params: dict[str, Any], request: Prepared) -> None:
    """RFC 6749 §3.1: parameters must not be included more than once."""
    first = params.get(endpoint.target, "a")
    if endpoint.body == "json" and endpoint.method not in ("GET", "DELETE"):
        encode(endpoint, params, request)
        duplicate = json.dumps({endpoint.target: first})[1:-1].encode()
        request.body = request.body[:-1] + (b", " if params else b"") + duplicate + b", " + duplicate + b"}"
    else:
        encode(endpoint, {**params, endpoint.target: [first, "b"]}, request)


def as_content_type(content_type: str, body: bytes | None = None):
    def spoil(endpoint: Endpoint, params: dict[str, Any], request: Prepared) -> None:
        encode(endpoint, params, request)
        if body is not None:
            request.body = body
        request.content_type = content_type

    return spoil


def json_where_form(endpoint: Endpoint, params: dict[str, Any], request: Prepared) -> None:
    """The other body encoding: JSON to a form endpoint, a form to a JSON endpoint."""
    encode(endpoint, params, request)
    if endpoint.body == "json":
        request.body = urlencode({**params, endpoint.target: "x"}, doseq=True).encode()
        request.content_type = "application/x-www-form-urlencoded"
    else:
        request.body = json.dumps({**params, endpoint.target: "x"}).encode()
        request.content_type = "application/json"


def with_authorization(value: str):
    def spoil(endpoint: Endpoint, params: dict[str, Any], request: Prepared) -> None:
        encode(endpoint, params, request)
        request.headers["Authorization"] = value

    return spoil


def with_header(name: str, value: str):
    def spoil(endpoint: Endpoint, params: dict[str, Any], request: Prepared) -> None:
        encode(endpoint, params, request)
        request.headers[name] = value

    return spoil


def many_fields(params: dict[str, Any]) -> dict[str, Any]:
    """More fields than DATA_UPLOAD_MAX_NUMBER_FIELDS."""
    return {**params, **{f"f{number}": "x" for number in range(1500)}}


@dataclass(frozen=True)
class Case:
    name: str
    spoil: Callable[[Endpoint, dict[str, Any], Prepared], None]
    # Content a free-text field may hold as text; everything else is refused by a write.
    is_text: bool = False
    # A part of the request the endpoint has no use for, so a valid request carrying it may pass.
    ignorable: bool = False
    # The request replaces the caller's credentials: it must not succeed anywhere they matter.
    replaces_credentials: bool = False


CASES = [
    Case("10kb-value", with_value(TEN_KB)),
    Case("nul-byte", with_value("a\x00b")),
    Case("body-over-the-upload-limit", with_value("A" * 300 * 1024)),  # DATA_UPLOAD_MAX_MEMORY_SIZE
    Case("too-many-fields", lambda endpoint, params, request: encode(endpoint, many_fields(params), request)),
    Case("sql", with_value(SQL), is_text=True),
    Case("xss", with_value(XSS), is_text=True),
    *(Case(f"unicode-{name}", with_value(value), is_text=True) for name, value in ODD_UNICODE.items()),
    Case("lone-surrogate", with_value("\ud800"), is_text=True),  # in a form: bytes as raw-surrogate-utf8
    # Django decodes a query or form with errors="replace": such bytes arrive as U+FFFD text.
    *(Case(f"raw-{name}", with_raw_bytes(raw), is_text=True) for name, raw in BAD_BYTES.items()),
    *(Case(f"percent-{name}", with_percent_encoded(raw), is_text=True) for name, raw in BAD_BYTES.items()),
    Case("duplicated-parameter", duplicated),
    Case("json-where-form-and-form-where-json", json_where_form),
    Case("content-type-xml", as_content_type("application/xml", b"<a>&xxe;</a>")),
    Case("content-type-text", as_content_type("text/plain", b"grant_type=client_credentials")),
    Case("content-type-multipart-no-boundary", as_content_type("multipart/form-data", b"--x\r\n\r\n")),
    # RFC 8259 §11: JSON has no charset parameter; a reader takes UTF-8 whatever it says.
    Case("content-type-charset-bogus", as_content_type("application/json; charset=ebcdic-xx"), ignorable=True),
    Case("content-type-huge", as_content_type("application/" + "x" * 10_000)),
    Case("authorization-bearer-64kb", with_authorization("Bearer " + "A" * 64 * 1024), replaces_credentials=True),
    Case("authorization-basic-64kb", with_authorization("Basic " + "QUFB" * 16 * 1024), replaces_credentials=True),
    Case(
        "authorization-basic-not-utf8",
        with_authorization("Basic " + base64.b64encode(b"\xff\xfe:\xc0\xaf").decode()),
        replaces_credentials=True,
    ),
    Case("authorization-unknown-scheme", with_authorization("Negotiate " + SQL), replaces_credentials=True),
    Case("authorization-bearer-latin1", with_authorization("Bearer \xe9\xff"), replaces_credentials=True),
    Case("authorization-basic-latin1", with_authorization("Basic \xe9"), replaces_credentials=True),
    Case("cookie-64kb", with_header("Cookie", "sessionid=" + "A" * 64 * 1024), ignorable=True),
    Case("accept-garbage", with_header("Accept", "application/json;q=" + "9" * 5000), ignorable=True),
    Case("forwarded-host", with_header("X-Forwarded-Host", "evil.example"), ignorable=True),
]

BROWSER_PATHS = ("/oauth/authorize/", "/oauth/logout/")


@pytest.fixture
def world(admin, signing_key, alice) -> dict[str, Any]:
    inactive = UserFactory()
    user_deactivate(user_id=inactive.pk, actor=SYSTEM, reason="left")
    disabled = make_machine_client().application
    idp_clients.client_disable(application_id=disabled.pk, actor=SYSTEM, reason="gone")
    role = role_with([], name=unique("target"))
    user = UserFactory()
    role_grant(role=role, user=UserFactory(), actor=SYSTEM)
    return {
        "admin_token": admin.api().token,
        "client": make_client(redirect_uris=[REDIRECT_URI], post_logout_redirect_uris=[POST_LOGOUT_REDIRECT_URI]),
        "target": make_machine_client().application,
        "inactive_user": inactive,
        "disabled": disabled,
        "role": role,
        "user": user,
        "alice": alice,
    }


def client_for(endpoint: Endpoint, world: dict[str, Any]) -> Client:
    """Django's test client answering 500s as responses; signed in as alice where the endpoint
    needs a browser session."""
    if endpoint.auth == "session":
        return signed_in_client(world["alice"], raise_request_exception=False)
    return Client(raise_request_exception=False)


def send(endpoint: Endpoint, case: Case, world: dict[str, Any], client: Client):
    request = Prepared()
    if endpoint.auth == "basic":
        issued = world["client"]
        credentials = f"{issued.application.client_id}:{issued.client_secret}".encode()
        request.headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    elif endpoint.auth == "bearer":
        request.headers["Authorization"] = f"Bearer {world['admin_token']}"
    case.spoil(endpoint, endpoint.params(world), request)
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in request.headers.items()}
    if request.query:
        extra["QUERY_STRING"] = request.query
    return client.generic(
        endpoint.method,
        endpoint.path(world),
        data=request.body,
        content_type=request.content_type or "application/octet-stream",
        **extra,
    )


def problems(endpoint: Endpoint, case: Case, path: str, reply) -> list[str]:
    label = f"{endpoint}/{case.name}"
    found = responses.check(label, status=reply.status_code, headers=reply.headers, body=reply.content)
    status = reply.status_code
    if status >= 500:
        return [*found, f"{label}: {status} {reply.content[:200]!r}"]
    refused = endpoint.must_refuse and not (case.is_text and endpoint.free_text) and not case.ignorable
    # RFC 6749 §4.1.2.1: the authorization endpoint refuses by redirecting an error to the client.
    redirected_error = status in (302, 303) and reply.headers["Location"].startswith(REDIRECT_URI)
    redirected_error = redirected_error and "error=" in reply.headers["Location"]
    # The consent form answers a POST it cannot take by sending the browser back to the GET.
    redirected_error = redirected_error or (status == 303 and reply.headers["Location"].startswith(path))
    if refused and status < 400 and not redirected_error:
        found.append(f"{label}: {status}, expected a 4xx {reply.headers.get('Location', '')[:150]}")
    if status in (301, 302, 303):
        location = reply.headers["Location"]
        if not (location.startswith(("/", REDIRECT_URI, POST_LOGOUT_REDIRECT_URI, "http://testserver/"))):
            found.append(f"{label}: redirects elsewhere: {location[:100]}")
        if location.startswith(REDIRECT_URI) and "code=" in location:
            found.append(f"{label}: hostile input yielded a code")
    if status >= 400 and not path.startswith(BROWSER_PATHS):
        try:
            body = reply.json()
        except ValueError:
            return [*found, f"{label}: {status} without a JSON body: {reply.content[:100]!r}"]
        if not (isinstance(body, dict) and isinstance(body.get("error"), str) and RFC_ERROR.match(body["error"])):
            found.append(f"{label}: not the RFC 6749 error shape: {body}")
        elif not RFC_DESCRIPTION.match(body.get("error_description", "")):
            found.append(f"{label}: error_description outside the RFC character set: {body}")
    return found


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_hostile_requests_are_refused_and_change_nothing(settings, world, endpoint):
    """Every case against one endpoint; one test per endpoint keeps the set-up to one."""
    settings.IDP_RATE_LIMITS = dict.fromkeys(settings.IDP_RATE_LIMITS, "100000/minute")
    client = client_for(endpoint, world)  # signing in records; before the snapshot
    before = database_snapshot()
    found = []
    for case in CASES:
        found += problems(endpoint, case, endpoint.path(world), send(endpoint, case, world, client))
    assert not found, "\n".join(found)
    assert database_snapshot() == before


def test_the_table_covers_every_api_operation_in_the_schema(admin):
    """A new /api/v1 endpoint cannot be left out of the table."""
    schema = Client().get("/api/v1/schema/?format=json").json()
    documented = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    sample = {
        "inactive_user": type("U", (), {"pk": 1}),
        "disabled": type("A", (), {"client_id": "c"}),
        "target": type("A", (), {"client_id": "c"}),
        "role": type("R", (), {"pk": 1}),
    }
    covered = {
        (endpoint.method, re.sub(r"/(\d+|c)/", "/{}/", endpoint.path(sample)))
        for endpoint in API
        if endpoint.name != "schema"
    }
    assert documented <= covered, documented - covered


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("until=0341-02-27T02:44:07%2B23:23", 200),  # a real instant, with an offset PostgreSQL refuses
        ("since=2026-01-01T00:00:00-23:59", 200),
        ("since=0001-01-01T00:00:00%2B14:00", 200),  # year 0 in UTC, which PostgreSQL compares
        ("since=0001-01-01T00:00:00%2B20:00", 400),  # an offset only Python takes, and no UTC instant
        ("until=9999-12-31T23:59:59-20:00", 400),
    ],
)
def test_audit_time_filters_take_any_offset_python_takes(admin, query, status):
    """Found by schemathesis: an offset over 15:59 was a database error answered 500."""
    reply = Client(HTTP_AUTHORIZATION=f"Bearer {admin.api().token}").get(f"/api/v1/audit/?{query}")
    assert reply.status_code == status, reply.content[:200]
    if status == 400:
        assert reply.json()["error"] == "invalid_request"
