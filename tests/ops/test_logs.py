"""The log (idp.ops.logs): a JSON line per request with its request id, client, user and source IP, every
other record as JSON too, a 500's traceback under the request id its answer shows, and no secret
anywhere, even at IDP_LOG_LEVEL=DEBUG.

What is read is the server's stdout as a log collector gets it: the lines the configured handler
writes, the live server's thread included (it runs in this process)."""

# Fixtures imported from tests/apikeys/conftest.py are parameters of the tests below.
# ruff: noqa: F811

from __future__ import annotations

import html
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from django.test import Client

from tests.apikeys.conftest import admin_key, admin_role, issue_key, machine, owner  # noqa: F401 - fixtures
from tests.factories import USER_PASSWORD
from tests.ops.error_urls import FAILURE
from tests.relying_party import parse_form

REQUEST_FIELDS = {
    "time",
    "level",
    "logger",
    "event",
    "request_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "client_id",
    "user_id",
    "source_ip",
}
# The tests' own side logs in this process too (HTTP clients, factories), unlike a real client's:
# none of it is the server's.
TEST_SIDE_LOGGERS = ("urllib3", "requests", "authlib", "factory", "faker")
SHOWN_ONCE = re.compile(r'<code id="apikey-secret"[^>]*>([^<]+)</code>')
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class ServerLog:
    stream: io.StringIO

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def entries(self) -> list[dict[str, Any]]:
        """Every line, each one JSON object (json.loads fails the test on any other line)."""
        return [json.loads(line) for line in self.text.splitlines()]

    def requests(self, **fields: Any) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.entries()
            if entry["logger"] == "idp.request" and all(entry.get(name) == value for name, value in fields.items())
        ]

    def request(self, reply: Any) -> dict[str, Any]:
        """The one request line of a reply, found by its X-Request-ID header."""
        [line] = self.requests(request_id=reply.headers["X-Request-ID"])
        return line


@pytest.fixture
def server_log() -> Iterator[ServerLog]:
    """The configured console handler writes into a buffer; the root logger is at DEBUG, as
    IDP_LOG_LEVEL=DEBUG would put it, so what keeps secrets out is the configuration, not a quiet
    level."""
    root = logging.getLogger()
    [console] = [handler for handler in root.handlers if handler.get_name() == "console"]
    assert isinstance(console, logging.StreamHandler)
    stream = io.StringIO()
    previous_stream = console.setStream(stream)
    levels = {name: logging.getLogger(name).level for name in ("", *TEST_SIDE_LOGGERS)}
    root.setLevel(logging.DEBUG)
    for name in TEST_SIDE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield ServerLog(stream)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if previous_stream is not None:
            console.setStream(previous_stream)


def assert_utc_iso_time(value: str) -> None:
    assert value.endswith("Z"), value
    assert datetime.fromisoformat(value).utcoffset() == timedelta(0)


# --- The flows, end to end ---------------------------------------------------------------------


def test_the_flows_log_a_line_per_request_and_none_of_their_secrets(
    live_server, rp, alice, machine, owner, admin_key, server_log
):
    base = live_server.url
    endpoints = rp.metadata
    hidden: dict[str, str] = {"password": USER_PASSWORD, "client secret": rp.client_secret}
    basic = (rp.client_id, rp.client_secret)

    # Sign-in: a wrong password first (the form comes back), then the whole code flow with PKCE
    # and consent, through authlib.
    wrong_password = "not " + USER_PASSWORD
    hidden["wrong password"] = wrong_password
    sign_in_page = rp.browser.get(f"{base}/accounts/login/", timeout=10)
    refused_sign_in = rp.sign_in_form(sign_in_page, alice.username, wrong_password)
    assert refused_sign_in.status_code == 200
    result = rp.authorize(username=alice.username, password=USER_PASSWORD)
    hidden |= {"code": result.params["code"], "code verifier": result.code_verifier}
    tokens = rp.exchange(result)
    hidden |= {f"first {name}": tokens[name] for name in ("access_token", "refresh_token", "id_token")}

    userinfo = requests.get(
        endpoints["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert userinfo.status_code == 200
    # A token in the query string (RFC 6750 §2.3): whatever the answer, its line keeps the path only.
    token_in_query = requests.get(
        endpoints["userinfo_endpoint"], params={"access_token": tokens["access_token"]}, timeout=10
    )
    assert token_in_query.status_code < 500
    refresh = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refresh.status_code == 200
    refreshed = refresh.json()
    hidden |= {f"refreshed {name}": refreshed[name] for name in ("access_token", "refresh_token", "id_token")}
    introspection = requests.post(
        endpoints["introspection_endpoint"], data={"token": refreshed["access_token"]}, auth=basic, timeout=10
    )
    assert introspection.json()["active"] is True
    revocation = requests.post(
        endpoints["revocation_endpoint"],
        data={"token": refreshed["refresh_token"], "token_type_hint": "refresh_token"},
        auth=basic,
        timeout=10,
    )
    assert revocation.status_code == 200
    wrong_secret = rp.client_secret[::-1]
    hidden["wrong client secret"] = wrong_secret
    refused_client = rp.token_request(auth=(rp.client_id, wrong_secret), grant_type="client_credentials")
    assert refused_client.status_code == 401

    # A machine client: client_credentials with its secret in the body, then the management API.
    hidden["machine's secret"] = machine.client_secret
    machine_token = requests.post(
        endpoints["token_endpoint"],
        data={
            "grant_type": "client_credentials",
            "scope": "idp.manage",
            "client_id": machine.application.client_id,
            "client_secret": machine.client_secret,
        },
        timeout=10,
    )
    assert machine_token.status_code == 200
    hidden["machine's access token"] = machine_token.json()["access_token"]
    machine_bearer = {"Authorization": "Bearer " + hidden["machine's access token"]}
    by_machine = requests.get(f"{base}/api/v1/users/", headers=machine_bearer, timeout=10)
    assert by_machine.status_code == 200

    # API keys: one made on the dashboard (its page shows it once), one by the service; both used.
    form_url = f"{base}/dashboard/keys/new/"
    _, fields = parse_form(rp.browser.get(form_url, timeout=10).text)
    made_key = rp.browser.post(form_url, data={**fields, "name": "log test", "grace_hours": "1"}, timeout=10)
    assert made_key.status_code == 200, made_key.text[:300]
    dashboard_key = html.unescape(SHOWN_ONCE.search(made_key.text).group(1)).strip()
    hidden |= {"dashboard's key": dashboard_key, "service's key": admin_key.secret}
    by_dashboard_key = requests.get(f"{base}/api/v1/users/", headers={"X-API-Key": dashboard_key}, timeout=10)
    assert by_dashboard_key.status_code == 403  # a key without scopes: known, and refused
    by_key = requests.get(f"{base}/api/v1/users/", headers={"Authorization": f"Bearer {admin_key.secret}"}, timeout=10)
    assert by_key.status_code == 200
    key_introspection = requests.post(
        endpoints["introspection_endpoint"], data={"token": admin_key.secret}, auth=basic, timeout=10
    )
    assert key_introspection.json()["active"] is True

    # A client registered, and its secret rotated, through the API: each secret in one answer.
    registered = requests.post(
        f"{base}/api/v1/clients/",
        json={"name": "Reports", "client_type": "confidential", "grant": "client_credentials", "scopes": ["profile"]},
        headers={"X-API-Key": admin_key.secret},
        timeout=10,
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client"]["client_id"]
    rotated = requests.post(
        f"{base}/api/v1/clients/{client_id}/rotate-secret/",
        json={"grace_seconds": 60},
        headers={"X-API-Key": admin_key.secret},
        timeout=10,
    )
    assert rotated.status_code == 200, rotated.text
    hidden["registered secret"] = registered.json()["client_secret"]
    hidden["rotated secret"] = rotated.json()["client_secret"]

    # Not one secret, nor a recognisable part of one, in anything the server wrote.
    log = server_log.text
    for name, secret in hidden.items():
        assert secret not in log, f"the {name} is in the log"
        assert secret[-16:] not in log, f"the end of the {name} is in the log"

    # A line per request, with every field; each request its own id; never a query string.
    lines = server_log.requests()
    held = [refused_sign_in, userinfo, token_in_query, refresh, introspection, revocation, refused_client]
    held += [machine_token, by_machine, made_key, by_dashboard_key, by_key, key_introspection, registered, rotated]
    for reply in held:
        server_log.request(reply)  # exactly one line each
    for line in lines:
        assert set(line) == REQUEST_FIELDS, line
        assert line["event"] == "request" and line["level"] == "info"
        assert "?" not in line["path"]
        assert line["source_ip"] == "127.0.0.1"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert_utc_iso_time(line["time"])
    assert len({line["request_id"] for line in lines}) == len(lines)

    # Who each line names: the client that authenticated, the user it acted for.
    assert server_log.request(refresh) | {"duration_ms": 0, "time": ""} == {
        "time": "",
        "level": "info",
        "logger": "idp.request",
        "event": "request",
        "request_id": refresh.headers["X-Request-ID"],
        "method": "POST",
        "path": "/oauth/token/",
        "status": 200,
        "duration_ms": 0,
        "client_id": rp.client_id,
        "user_id": alice.pk,
        "source_ip": "127.0.0.1",
    }
    named = {
        "the code exchange": (server_log.requests(path="/oauth/token/", status=200)[0], rp.client_id, alice.pk),
        "userinfo": (server_log.request(userinfo), rp.client_id, alice.pk),
        "introspection": (server_log.request(introspection), rp.client_id, None),
        "revocation": (server_log.request(revocation), rp.client_id, None),
        "a wrong client secret": (server_log.request(refused_client), None, None),
        "client_credentials": (server_log.request(machine_token), machine.application.client_id, None),
        "the API with its token": (server_log.request(by_machine), machine.application.client_id, None),
        "the API with a key": (server_log.request(by_key), None, owner.pk),
        "a refused key": (server_log.request(by_dashboard_key), None, alice.pk),
        "a wrong password": (server_log.requests(path="/accounts/login/", method="POST", status=200)[0], None, None),
        "a sign-in": (server_log.requests(path="/accounts/login/", method="POST", status=302)[0], None, alice.pk),
        "consent": (server_log.requests(path="/oauth/authorize/", method="POST")[0], None, alice.pk),
        "the dashboard": (server_log.requests(path="/dashboard/keys/new/", method="POST")[0], None, alice.pk),
    }
    for what, (line, client_id, user_id) in named.items():
        assert (line["client_id"], line["user_id"]) == (client_id, user_id), what
    assert server_log.request(token_in_query)["path"] == "/oauth/userinfo/"
    assert server_log.requests(path="/oauth/authorize/", method="GET"), "the authorization request, without its query"


# --- Request ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "offered", "kept"),
    [
        (["127.0.0.1/32"], "req-from-the-proxy.1:a", True),
        ([], "req-from-the-client", False),  # not a trusted proxy: the client does not choose it
        (["10.0.0.0/8"], "req-from-the-client", False),
        (["127.0.0.1/32"], "two words", False),
        (["127.0.0.1/32"], "r" * 65, False),
        (["127.0.0.1/32"], "id\r\nSet-Cookie: x=y", False),
        (["127.0.0.1/32"], "", False),
    ],
)
def test_a_request_id_comes_from_a_trusted_proxy_or_is_made_here(
    client, db, settings, server_log, trusted, offered, kept
):
    settings.IDP_TRUSTED_PROXIES = trusted
    reply = client.get("/.well-known/openid-configuration", headers={"X-Request-ID": offered})
    assert reply.status_code == 200
    request_id = reply["X-Request-ID"]
    if kept:
        assert request_id == offered
    else:
        assert GENERATED_ID.fullmatch(request_id), request_id
    assert server_log.request(reply)["request_id"] == request_id


# --- Server errors -----------------------------------------------------------------------------


@pytest.mark.urls("tests.ops.error_urls")
@pytest.mark.parametrize(
    ("path", "json_answer"),
    [("/fail/", False), ("/oauth/fail/", True), ("/api/v1/fail/", True)],
)
def test_a_server_error_is_logged_with_its_traceback_and_answered_with_its_request_id_only(
    db, server_log, path, json_answer
):
    reply = Client(raise_request_exception=False).get(path)

    assert reply.status_code == 500
    request_id = reply["X-Request-ID"]
    body = reply.content.decode()
    assert request_id in body
    for internal in ("Traceback", "RuntimeError", FAILURE, "error_urls"):
        assert internal not in body
    if json_answer:
        description = f"internal error, request id {request_id}"
        assert reply.json() == {"error": "server_error", "error_description": description}
    else:
        assert reply["Content-Type"].startswith("text/html")
        assert "<h1>Something went wrong" in body

    [failure] = [entry for entry in server_log.entries() if "exception" in entry]
    assert failure["request_id"] == request_id
    assert failure["level"] == "error"
    assert "Traceback (most recent call last)" in failure["exception"]
    assert f"RuntimeError: {FAILURE}" in failure["exception"]
    assert server_log.request(reply)["status"] == 500


# --- Hostile requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/no-such/%0A%7B%22level%22:%22error%22%7D", {}),  # a newline and JSON in the path
        ("/" + "a" * 5000, {}),
        ("/oauth/token/%00", {}),
        ("/%ff%fe/", {}),
        ("/.well-known/jwks.json", {"HTTP_X_REQUEST_ID": "\x00" * 10}),
        ("/.well-known/jwks.json", {"REMOTE_ADDR": "not an address"}),
        ("/.well-known/jwks.json", {"HTTP_X_FORWARDED_FOR": "garbage, 10.0.0.1"}),
        ("/api/v1/users/", {"HTTP_AUTHORIZATION": "Bearer " + "x" * 3000}),
        ("/api/v1/users/", {"HTTP_X_API_KEY": "idpk_AAAAAAAAAAAA_" + "b" * 49}),
    ],
)
def test_a_hostile_request_is_answered_below_500_with_exactly_one_well_formed_line(client, db, server_log, path, extra):
    reply = client.get(path, **extra)

    assert 200 <= reply.status_code < 500
    [line] = server_log.requests()
    assert line["status"] == reply.status_code
    assert len(line["path"]) <= 1000
    assert line["request_id"] == reply["X-Request-ID"]
    assert "b" * 20 not in server_log.text, "not even a wrong key's secret part"


# --- The configuration -------------------------------------------------------------------------


def test_a_secret_shaped_value_is_masked_in_any_line(server_log):
    key = "idpk_AAAAAAAAAAAA_" + "s" * 49
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    logging.getLogger("idp.tests").warning("presented %s, %s and Authorization: Bearer opaque-token-1", key, jwt)

    [entry] = server_log.entries()
    assert entry["event"] == ("presented idpk_AAAAAAAAAAAA_[redacted], [redacted] and Authorization: Bearer [redacted]")
    assert entry["logger"] == "idp.tests" and entry["level"] == "warning"


@pytest.mark.parametrize(
    "logger",
    [
        "oauthlib.oauth2.rfc6749.grant_types.refresh_token",  # logs the refresh token itself at DEBUG
        "oauthlib.oauth2.rfc6749.endpoints.token",
        "oauth2_provider.oauth2_validators",
        "django.db.backends",
        "django.template",
    ],
)
def test_libraries_that_log_secrets_at_debug_stay_above_it(server_log, logger):
    assert logging.getLogger().isEnabledFor(logging.DEBUG)  # as with IDP_LOG_LEVEL=DEBUG
    assert not logging.getLogger(logger).isEnabledFor(logging.DEBUG)


def test_the_sealers_routine_lines_are_left_out_and_its_failures_kept(server_log):
    """Beat sends the audit sealer every second: its sent, received and succeeded lines would be
    most of the log. Another task's lines, and the sealer's warnings and errors, are written."""
    beat, trace = logging.getLogger("celery.beat"), logging.getLogger("celery.app.trace")
    beat.info("Scheduler: Sending due task %s (%s)", "seal-audit-chain", "idp.tasks.seal_audit_chain")
    trace.info(
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
        {"name": "idp.tasks.seal_audit_chain", "id": "1", "runtime": 0.01, "return_value": 3},
    )
    beat.info("Scheduler: Sending due task %s (%s)", "rotate-due-apikeys", "apikeys.tasks.rotate_due_apikeys")
    trace.error(
        "Task %(name)s[%(id)s] raised unexpected: %(exc)s",
        {"name": "idp.tasks.seal_audit_chain", "id": "2", "exc": "OperationalError"},
    )

    assert [entry["event"] for entry in server_log.entries()] == [
        "Scheduler: Sending due task rotate-due-apikeys (apikeys.tasks.rotate_due_apikeys)",
        "Task idp.tasks.seal_audit_chain[2] raised unexpected: OperationalError",
    ]
