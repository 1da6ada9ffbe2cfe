"""Hostile API-key values, in X-API-Key, in Authorization and in the introspection endpoint's
token parameter: each gets a 4xx in the RFC shape (introspection: {"active": false}), never a 5xx
or a stack trace, and leaves the API-key table as it was.

The other hostile-input tests, and what they share, are listed in tests/hostile.py."""

from __future__ import annotations

import http.client
from urllib.parse import unquote, urlencode, urlsplit

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from apikeys.keyformat import key_new, public_id_new
from audit.models import AuditEvent
from tests.apikeys.conftest import INTROSPECT, USERS, basic_auth, key_headers
from tests.hostile import refusal_problems

INVALID_TOKEN_CHALLENGE = 'Bearer realm="idp", error="invalid_token"'


def hostile_values(key: str) -> list[tuple[str, str]]:
    """(label, value) pairs. Header values are text as a WSGI server hands them over: bytes
    decoded as ISO-8859-1 (PEP 3333), so invalid UTF-8 arrives as the characters of its bytes."""
    wrong_checksum = key[:-1] + ("A" if key[-1] != "A" else "B")
    return [
        ("10 KB", "A" * 10 * 1024),
        ("10 KB with the prefix", "idpk_" + "A" * 10 * 1024),
        ("invalid UTF-8", b"\xff\xfe\xc3\x28".decode("latin-1")),
        ("invalid UTF-8 after the prefix", "idpk_" + b"\xff\xfe".decode("latin-1") * 31),
        ("UTF-8 look-alike letters", "idpk_" + "ａ".encode().decode("latin-1") * 20 + key[65:]),
        ("NUL", "\x00"),
        ("NUL inside a key", key[:30] + "\x00" + key[31:]),
        ("CRLF", "idpk_x\r\nSet-Cookie: admin=1"),
        ("SQL injection", "' OR '1'='1' --"),
        ("SQL injection with the prefix", "idpk_' OR 1=1; DROP TABLE apikeys_apikey; --"),
        ("SQL wildcard public id", "idpk_%%%%%%%%%%%%_" + key[18:]),
        ("XSS", "<script>alert(1)</script>"),
        ("XSS with the prefix", "idpk_<img src=x onerror=alert(1)>"),
        ("valid shape, wrong checksum", wrong_checksum),
        ("valid checksum, unknown public id", key_new(public_id_new())),
        ("valid checksum, known id, another secret", key_new(key[5:17])),
        ("the prefix alone", "idpk_"),
        ("the key twice, joined as servers join duplicated headers", f"{key},{key}"),
        ("the key and garbage, joined", f"{key}, garbage"),
        ("empty", ""),
        ("spaces", "   "),
    ]


def api_key_table() -> list[str]:
    """Every column of every API-key row and key-role link, read with raw SQL."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM apikeys_apikey ORDER BY id")
        keys = cursor.fetchall()
        cursor.execute("SELECT * FROM apikeys_apikey_roles ORDER BY id")
        links = cursor.fetchall()
    return [repr(row) for row in keys + links]


@pytest.fixture
def raw_client():
    """Django's test client answering 500s as responses, so the table reports every failure."""
    return Client(raise_request_exception=False)


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization: Bearer", "Authorization"])
def test_hostile_key_values_on_the_api_are_401_and_change_nothing(raw_client, admin_key, header):
    assert raw_client.get(USERS, headers=key_headers(admin_key.secret)).status_code == 200  # marks the use now
    before, events = api_key_table(), AuditEvent.objects.count()
    found = []
    for label, value in hostile_values(admin_key.secret):
        meta = {
            "X-API-Key": {"HTTP_X_API_KEY": value},
            "Authorization: Bearer": {"HTTP_AUTHORIZATION": f"Bearer {value}"},
            "Authorization": {"HTTP_AUTHORIZATION": value},
        }[header]
        reply = raw_client.get(USERS, **meta)
        found += refusal_problems(label, reply, presented=value)
        if reply.status_code != 401:
            found.append(f"{label}: {reply.status_code}, not 401")
        elif not reply.get("WWW-Authenticate", "").startswith("Bearer"):
            found.append(f"{label}: 401 without a Bearer challenge")
    assert found == []
    assert api_key_table() == before
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization: Bearer"])
def test_a_bad_key_is_refused_with_the_invalid_token_challenge(raw_client, admin_key, header):
    for label, value in hostile_values(admin_key.secret):
        if not value.strip().startswith("idpk_"):
            continue  # Authorization values without the prefix are the bearer-token check's
        meta = {"HTTP_X_API_KEY": value} if header == "X-API-Key" else {"HTTP_AUTHORIZATION": f"Bearer {value}"}
        reply = raw_client.get(USERS, **meta)
        assert (reply.status_code, reply["WWW-Authenticate"]) == (401, INVALID_TOKEN_CHALLENGE), label
        assert reply.json()["error"] == "invalid_token", label


def introspection_body(value: str | bytes) -> bytes:
    return b"token=" + value if isinstance(value, bytes) else urlencode({"token": value}).encode()


def test_hostile_tokens_at_introspection_are_inactive_and_change_nothing(raw_client, admin_key, resource_server):
    authorization = basic_auth(resource_server.application.client_id, resource_server.client_secret)
    assert raw_client.get(USERS, headers=key_headers(admin_key.secret)).status_code == 200  # marks the use now
    before, events = api_key_table(), AuditEvent.objects.count()

    cases: list[tuple[str, str | bytes]] = list(hostile_values(admin_key.secret))
    cases += [
        ("raw invalid UTF-8 bytes", b"\xff\xfe\xc3\x28"),
        ("raw invalid UTF-8 after the prefix", b"idpk_" + b"\xff" * 62),
        ("percent-encoded NUL after the prefix", b"idpk_%00" + admin_key.secret[6:].encode()),
        ("a lone surrogate, percent-encoded", b"idpk_%ED%A0%80"),
    ]
    found = []
    for label, value in cases:
        reply = raw_client.post(
            INTROSPECT,
            introspection_body(value),
            content_type="application/x-www-form-urlencoded",
            headers={"Authorization": authorization},
        )
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if text == "" or "\x00" in unquote(text) or len(text) > settings.IDP_MAX_PARAMETER_LENGTH:
            # Refused before any view: empty (RFC 7662 §2.1 requires the token), NUL or oversized
            # (idp.http.middleware.ParameterGuardMiddleware).
            found += refusal_problems(label, reply, presented=text)
            if reply.status_code != 400 or reply.json().get("error") != "invalid_request":
                found.append(f"{label}: {reply.status_code} {reply.content[:100]!r}, not 400 invalid_request")
        elif reply.status_code != 200 or reply.json() != {"active": False}:
            found.append(f"{label}: {reply.status_code} {reply.content[:200]!r}, not {{'active': false}}")
        elif reply.get("Cache-Control") != "no-store":
            found.append(f"{label}: inactive answer without Cache-Control: no-store")
    assert found == []
    assert api_key_table() == before
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("garbage_first", [True, False], ids=["garbage-then-key", "key-then-garbage"])
def test_a_token_given_twice_at_introspection_is_never_active(raw_client, admin_key, resource_server, garbage_first):
    """Parameter pollution: a gateway that checks one copy and a server that reads the other must
    not disagree into an active answer. Whichever copy comes first, a duplicated token is not
    answered active (the header path agrees: a repeated X-API-Key is a 401). RFC 6749 §3.2 says
    request parameters MUST NOT be included more than once; oauthlib refuses duplicates at the
    token endpoint with invalid_request."""
    authorization = basic_auth(resource_server.application.client_id, resource_server.client_secret)
    pair = [("token", "garbage"), ("token", admin_key.secret)]
    reply = raw_client.post(
        INTROSPECT,
        urlencode(pair if garbage_first else pair[::-1]),
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": authorization},
    )
    assert reply.status_code in (200, 400), reply.content
    assert reply.json().get("active") is not True, reply.json()


def raw_request(live_server, headers: list[tuple[str, bytes]]) -> tuple[int, dict[str, str], bytes]:
    """GET /api/v1/users/ over a real socket, with header bytes exactly as given (repeats kept)."""
    address = urlsplit(live_server.url)
    connection_ = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection_.putrequest("GET", USERS)
        for name, value in headers:
            connection_.putheader(name, value)
        connection_.endheaders()
        response = connection_.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection_.close()


def test_raw_header_bytes_and_repeated_headers_over_real_http(live_server, admin_key):
    key = admin_key.secret.encode()
    cases = {
        "invalid UTF-8 bytes in X-API-Key": [("X-API-Key", b"idpk_\xff\xfe\x80" + b"A" * 59)],
        "invalid UTF-8 bytes in Authorization": [("Authorization", b"Bearer idpk_\xc3\x28\xff")],
        "10 KB X-API-Key": [("X-API-Key", b"idpk_" + b"A" * 10 * 1024)],
        "X-API-Key twice": [("X-API-Key", key), ("X-API-Key", key)],
        "X-API-Key twice, second garbage": [("X-API-Key", key), ("X-API-Key", b"garbage")],
        "Authorization twice": [("Authorization", b"Bearer " + key), ("Authorization", b"Bearer " + key)],
    }
    before = api_key_table()
    found = []
    for label, headers in cases.items():
        status, response_headers, body = raw_request(live_server, headers)
        text = body.decode("utf-8", "replace")
        if status != 401 or "Traceback" in text:
            found.append(f"{label}: {status} {text[:200]}")
            continue
        if not response_headers.get("WWW-Authenticate", "").startswith("Bearer"):
            found.append(f"{label}: no Bearer challenge")
        if '"error": "invalid_token"' not in text and '"error":"invalid_token"' not in text:
            found.append(f"{label}: {text[:200]}")
    assert found == []
    assert api_key_table() == before
    assert raw_request(live_server, [("X-API-Key", key)])[0] == 200, "the same key, sent once, works"
