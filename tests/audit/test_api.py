"""GET /api/v1/audit/: who may read the trail, what each filter selects, how the cursor walks a
growing trail, what hostile query strings get, and that no secret of the recorded flows shows.

Events are recorded through audit.record and through real requests (the API, sign-ins), so
request ids, addresses and hashes are the real ones. Most requests go through Django's test client
with an API key; the bearer-token callers need tokens from the live server.
"""

# The API tests' and the API-key tests' fixtures are imported by name below, then requested as
# arguments: F401 and F811 do not apply to pytest fixtures.
# ruff: noqa: F401, F811

from __future__ import annotations

import base64
import importlib
import ipaddress
import json
import re
import secrets
from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.db import connection

import audit
from accounts.models import Permission, Role
from accounts.selectors import Caller
from accounts.services import admin_role_ensure, role_grant, role_update
from apikeys.models import ApiKey
from apikeys.services import apikey_create, apikey_reveal, apikey_rotate, apikeys_rotate_due
from audit import chain
from audit.models import AuditEvent
from tests.api.conftest import (
    ALL_PERMISSIONS,
    console,
    error_of,
    management,
    role_with,
    service_subject,
    unique,
    user_subject,
)
from tests.apikeys.conftest import (
    _fast_password_hashing,
    issue_key,
    key_headers,
    owner,
)
from tests.factories import USER_PASSWORD, make_user

AUDIT = "/api/v1/audit/"
AUDIT_READ = "audit.read"
SYSTEM = audit.Actor.system("tests")
PLUS_TWO = timezone(timedelta(hours=2))
migration = importlib.import_module("accounts.migrations.0005_audit_read_permission")


@pytest.fixture
def admin_role(db) -> Role:
    """The global role idp-admin as migrations 0004 and 0005 leave it: every management permission
    and audit.read. Made again here because live-server tests flush the database. (Overrides the
    API-key fixtures' admin_role, so their owner and keys hold it too.)"""
    role = admin_role_ensure(actor=SYSTEM)
    held = set(role.permissions.values_list("codename", flat=True))
    return role_update(role_id=role.pk, permissions=held | {AUDIT_READ}, actor=SYSTEM)


@pytest.fixture
def reader(issue_key) -> dict[str, str]:
    """Request headers of an API key with scope idp.manage and role idp-admin."""
    return key_headers(issue_key().secret)


def walk(client, headers: dict[str, str], query: dict[str, Any] | str = "") -> list[dict[str, Any]]:
    """Every event the query selects, following next links to the end."""
    url: str | None = f"{AUDIT}?{query if isinstance(query, str) else urlencode(query)}"
    events: list[dict[str, Any]] = []
    while url:
        reply = client.get(url, headers=headers)
        assert reply.status_code == 200, reply.content[:300]
        body = reply.json()
        events += body["results"]
        url = body["next"]
    return events


def fresh_address() -> str:
    """A documentation IPv6 address no earlier sign-in used: the brute-force watch counts failures
    per address in Redis, across tests."""
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | secrets.randbits(64)))


def ids(events: list[dict[str, Any]]) -> list[int]:
    return [event["id"] for event in events]


def record_events() -> dict[str, Any]:
    """Events differing in every filtered field, recorded through audit.record."""
    user = make_user()
    record = audit.record  # short lines below
    record(
        audit.Action.APIKEY_REVOKED,
        actor=audit.Actor.user(user),
        target=audit.Target("apikey", "k-one"),
        client_id="client-one",
        data={"reason": "leaked"},
    )
    record(audit.Action.APIKEY_CREATED, actor=audit.Actor.user(user), target=audit.Target("apikey", "k-two"))
    record(audit.Action.LOGIN_FAILED, actor=audit.Actor.anonymous(), outcome="failure", data={"account": "unknown"})
    record(audit.Action.TOKEN_ISSUED, actor=audit.Actor("client", "client-one"), client_id="client-one")
    record(audit.Action.ALERT_BRUTEFORCE, actor=audit.Actor.system("bruteforce-watch"), outcome="alert")
    audit.seal()
    return {"user": user}


# --- Who may read ---------------------------------------------------------------------------------


def test_without_a_credential_the_trail_is_401(client, admin_role):
    reply = client.get(AUDIT)
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_token"
    assert reply["WWW-Authenticate"].startswith("Bearer ")


@pytest.mark.parametrize(
    ("caller", "status", "error"),
    [
        ("token_without_scope_idp_manage", 403, "insufficient_scope"),
        ("token_of_user_without_audit_read", 403, "access_denied"),
        ("token_of_idp_admin", 200, None),
        ("token_of_service_account_holding_only_audit_read", 200, None),
    ],
)
def test_bearer_tokens_read_the_trail_only_with_scope_and_permission(
    user_subject, service_subject, admin_role, caller, status, error
):
    if caller == "token_of_service_account_holding_only_audit_read":
        subject = service_subject()
        subject.hold([AUDIT_READ])
    else:
        subject = user_subject()
        if caller == "token_of_user_without_audit_read":
            subject.hold(set(ALL_PERMISSIONS) - {AUDIT_READ})  # every other management permission
        else:
            role_grant(role=admin_role, user=subject.holder["user"], actor=SYSTEM)
    api = subject.api(scope="profile" if caller == "token_without_scope_idp_manage" else "idp.manage")
    before = AuditEvent.objects.count()

    reply = api.get("/audit/?limit=200")

    assert reply.status_code == status, reply.text[:300]
    assert error_of(reply) == error
    if status == 200:
        assert [event["id"] for event in reply.json()["results"]][:1] == [AuditEvent.objects.latest("id").pk]
        # The token flow that made this token left token.issued; the token itself is nowhere.
        assert api.token not in reply.text
        assert "token.issued" in {event["action"] for event in reply.json()["results"]}
    assert AuditEvent.objects.count() == before, "reading the trail records nothing"


@pytest.mark.parametrize(
    ("permissions", "scopes", "status", "error"),
    [
        ("idp-admin", ["idp.manage"], 200, None),
        (["idp.users.read"], ["idp.manage"], 403, "access_denied"),
        ("idp-admin", ["profile"], 403, "insufficient_scope"),
    ],
    ids=["idp_admin", "without_audit_read", "without_scope_idp_manage"],
)
def test_api_keys_read_the_trail_only_with_scope_and_permission(
    client, issue_key, admin_role, owner, permissions, scopes, status, error
):
    role = admin_role
    if permissions != "idp-admin":
        role = role_with(permissions)
        role_grant(role=role, user=owner, actor=SYSTEM)
    issued = issue_key(scopes=scopes, role_ids=[role.pk])

    reply = client.get(AUDIT, headers=key_headers(issued.secret))

    assert reply.status_code == status, reply.content[:300]
    assert reply.json().get("error") == error


def test_the_migration_gives_idp_admin_audit_read_once_and_keeps_the_chain(db):
    role = admin_role_ensure(actor=SYSTEM)
    Permission.objects.filter(codename=AUDIT_READ).delete()
    last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    with connection.schema_editor() as editor:
        migration.grant_audit_read(apps, editor)
        migration.grant_audit_read(apps, editor)  # a re-run changes nothing and records nothing

    assert AUDIT_READ in role.permissions.values_list("codename", flat=True)
    recorded = AuditEvent.objects.filter(pk__gt=last).order_by("id")
    assert [(event.action, event.actor_id) for event in recorded] == [
        ("permission.created", "migration accounts.0005"),
        ("role.updated", "migration accounts.0005"),
    ]
    assert recorded[1].data == {"name": "idp-admin", "added": [AUDIT_READ], "removed": []}
    audit.seal()
    *_, state = chain.walk(event.as_chain_event() for event in AuditEvent.objects.order_by("position"))
    assert state.broken is None
    assert state.count == AuditEvent.objects.count()


# --- What it answers ------------------------------------------------------------------------------


def test_each_event_is_answered_with_every_recorded_field(client, reader):
    record_events()
    event = AuditEvent.objects.get(action="apikey.revoked")

    [answer] = walk(client, reader, {"action": "apikey.revoked"})

    assert answer == {
        "id": event.pk,
        "time": chain.timestamp(event.created_at),
        "action": "apikey.revoked",
        "actor": {"type": "user", "id": event.actor_id},
        "target": {"type": "apikey", "id": "k-one"},
        "client_id": "client-one",
        "outcome": "success",
        "source_ip": "",
        "user_agent": "",
        "request_id": "",
        "data": {"reason": "leaked"},
        "position": event.position,
        "hash": event.hash,
    }
    assert event.hash is not None


def test_the_answer_holds_what_a_reader_needs_to_check_the_chain(client, reader):
    """Walked oldest first, the events as answered link up from the genesis hash: the API shows
    every hashed field exactly as recorded."""
    record_events()
    events = list(reversed(walk(client, reader, {"limit": 3})))

    def as_recorded(event: dict[str, Any]) -> dict[str, Any]:
        fields = {name: event[name] for name in ("time", "action", "client_id", "outcome", "data", "hash")}
        fields |= {"source_ip": event["source_ip"], "user_agent": event["user_agent"]}
        fields |= {"request_id": event["request_id"], "id": event["id"]}
        fields |= {"actor_type": event["actor"]["type"], "actor_id": event["actor"]["id"]}
        return fields | {"target_type": event["target"]["type"], "target_id": event["target"]["id"]}

    *_, state = chain.walk(as_recorded(event) for event in events)
    assert state.broken is None
    assert state.count == len(events) == AuditEvent.objects.count()


def test_events_from_requests_carry_their_request_id_address_and_user_agent(client, reader, settings):
    settings.IDP_TRUSTED_PROXIES = ["127.0.0.1/32"]  # the test client's peer, as the proxy
    address = fresh_address()  # a fresh one: no brute-force alert
    client.post(
        "/accounts/login/",
        {"username": "nobody-" + unique("x"), "password": "wrong"},
        headers={"X-Request-ID": "req-login-1", "User-Agent": "probe/1.0", "X-Forwarded-For": address},
    )

    [event] = walk(client, reader, {"request_id": "req-login-1"})

    assert (event["action"], event["outcome"]) == ("login.failed", "failure")
    assert (event["source_ip"], event["user_agent"]) == (address, "probe/1.0")
    assert event["actor"] == {"type": "anonymous", "id": ""}


# --- Filters --------------------------------------------------------------------------------------


FILTERS: list[tuple[str, Callable[[dict[str, Any]], dict[str, str]], Callable[[dict, dict], bool]]] = [
    ("action", lambda w: {"action": "apikey.revoked"}, lambda e, w: e["action"] == "apikey.revoked"),
    ("action_family", lambda w: {"action": "apikey."}, lambda e, w: e["action"].startswith("apikey.")),
    ("actor_type", lambda w: {"actor_type": "anonymous"}, lambda e, w: e["actor_type"] == "anonymous"),
    (
        "actor",
        lambda w: {"actor_type": "user", "actor_id": str(w["user"].pk)},
        lambda e, w: (e["actor_type"], e["actor_id"]) == ("user", str(w["user"].pk)),
    ),
    ("actor_id", lambda w: {"actor_id": "client-one"}, lambda e, w: e["actor_id"] == "client-one"),
    ("target_type", lambda w: {"target_type": "apikey"}, lambda e, w: e["target_type"] == "apikey"),
    (
        "target",
        lambda w: {"target_type": "apikey", "target_id": "k-two"},
        lambda e, w: (e["target_type"], e["target_id"]) == ("apikey", "k-two"),
    ),
    ("client_id", lambda w: {"client_id": "client-one"}, lambda e, w: e["client_id"] == "client-one"),
    ("outcome", lambda w: {"outcome": "failure"}, lambda e, w: e["outcome"] == "failure"),
    ("request_id", lambda w: {"request_id": "req-roles-1"}, lambda e, w: e["request_id"] == "req-roles-1"),
    ("since", lambda w: {"since": w["middle"].isoformat()}, lambda e, w: e["created_at"] >= w["middle"]),
    ("until", lambda w: {"until": w["middle"].isoformat()}, lambda e, w: e["created_at"] < w["middle"]),
    (
        "since_with_an_offset",
        lambda w: {"since": w["middle"].astimezone(PLUS_TWO).isoformat()},
        lambda e, w: e["created_at"] >= w["middle"],
    ),
    (
        "since_and_until",
        lambda w: {"since": w["first"].isoformat(), "until": w["middle"].isoformat()},
        lambda e, w: w["first"] <= e["created_at"] < w["middle"],
    ),
    (
        "combined",
        lambda w: {"action": "apikey.", "client_id": "client-one", "outcome": "success"},
        lambda e, w: e["action"].startswith("apikey.") and e["client_id"] == "client-one" and e["outcome"] == "success",
    ),
    ("no_match", lambda w: {"actor_id": "nobody-at-all"}, lambda e, w: False),
]


@pytest.fixture
def world(client, reader, settings) -> dict[str, Any]:
    """Varied events: recorded directly, and one through the API with a request id."""
    settings.IDP_TRUSTED_PROXIES = ["127.0.0.1/32"]  # the test client's peer: its X-Request-ID counts
    first = AuditEvent.objects.order_by("-id").first()
    made = record_events()
    reply = client.post(
        "/api/v1/roles/",
        {"name": unique("filtered"), "permissions": []},
        content_type="application/json",
        headers={**reader, "X-Request-ID": "req-roles-1"},
    )
    assert reply.status_code == 201, reply.content
    events = list(AuditEvent.objects.order_by("id"))
    recorded = [event for event in events if first is None or event.pk > first.pk]
    return {
        **made,
        "first": recorded[0].created_at,
        "middle": recorded[len(recorded) // 2].created_at,
        "events": [{**event.as_chain_event(), "created_at": event.created_at} for event in events],
    }


@pytest.mark.parametrize(
    ("query", "selects"), [(query, selects) for _, query, selects in FILTERS], ids=[name for name, *_ in FILTERS]
)
def test_each_filter_selects_exactly_the_matching_events(client, reader, world, query, selects):
    expected = sorted((event["id"] for event in world["events"] if selects(event, world)), reverse=True)

    answered = ids(walk(client, reader, query(world)))

    assert answered == expected, query(world)
    assert len(expected) < len(world["events"]), "the filter narrows"


# --- Cursor pagination -----------------------------------------------------------------------------


def test_the_cursor_walks_every_event_once_while_new_ones_are_appended(client, reader):
    for index in range(23):
        audit.record(audit.Action.ROLE_CREATED, actor=SYSTEM, data={"n": index})
    existing = list(AuditEvent.objects.order_by("-id").values_list("id", flat=True))

    seen: list[int] = []
    url: str | None = f"{AUDIT}?limit=5"
    pages = 0
    while url:
        body = client.get(url, headers=reader).json()
        assert len(body["results"]) <= 5
        seen += ids(body["results"])
        url = body["next"]
        pages += 1
        # Events appended between pages land before the first page; they shift nothing.
        audit.record(audit.Action.ROLE_UPDATED, actor=SYSTEM, data={"page": pages})

    assert seen == existing, "newest first, no duplicate, no gap"
    assert pages == -(-len(existing) // 5)
    everything = list(AuditEvent.objects.order_by("-id").values_list("id", flat=True))
    assert set(everything) - set(existing), "events were appended during the walk"
    assert ids(walk(client, reader)) == everything, "a new walk starts from the newest"


def test_the_previous_link_goes_back_to_the_page_before(client, reader):
    for index in range(12):
        audit.record(audit.Action.ROLE_CREATED, actor=SYSTEM, data={"n": index})
    first = client.get(f"{AUDIT}?limit=4", headers=reader).json()
    second = client.get(first["next"], headers=reader).json()
    assert first["previous"] is None
    assert ids(client.get(second["previous"], headers=reader).json()["results"]) == ids(first["results"])
    assert set(ids(first["results"])).isdisjoint(ids(second["results"]))


def test_the_page_size_is_bounded_and_a_bad_one_falls_back_to_the_default(client, reader):
    for index in range(205 - AuditEvent.objects.count()):
        audit.record(audit.Action.ROLE_CREATED, actor=SYSTEM, data={"n": index})
    sizes = {}
    for limit in ("7", "200", "201", "10000000000000000000000", "0", "-3", "x", ""):
        reply = client.get(f"{AUDIT}?{urlencode({'limit': limit})}", headers=reader)
        assert reply.status_code == 200, (limit, reply.content[:200])
        sizes[limit] = len(reply.json()["results"])

    assert sizes == {"7": 7, "200": 200, "201": 200, "10000000000000000000000": 200, "0": 50, "-3": 50, "x": 50, "": 50}


# --- Hostile input (every other hostile-input test is listed in tests/hostile.py) ---------------


def _cursor(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


HUGE = "A" * 10 * 1024
RFC_DESCRIPTION = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]*$")  # RFC 6749 §5.2: no " or \
# (label, query string, expected): a status, or NONE (200 and an empty list: a harmless string
# that matches nothing) or SOME (200 and events: a value with a meaning, such as a limit that is
# capped or not a number and falls back to the default).
NONE, SOME = "200 none", "200 some"
HOSTILE: list[tuple[str, str, int | str]] = [
    *[
        (f"{name}=10KB", urlencode({name: HUGE}), 400)
        for name in ("action", "actor_id", "client_id", "since", "cursor")
    ],
    *[
        (f"{name}=NUL", urlencode({name: "a\x00b"}), 400)
        for name in ("action", "actor_id", "target_type", "request_id")
    ],
    ("actor_id over its column", urlencode({"actor_id": "a" * 256}), 400),
    ("request_id over its column", urlencode({"request_id": "r" * 65}), 400),
    ("action with SQL", urlencode({"action": "' OR '1'='1' --"}), 400),
    ("action with HTML", urlencode({"action": "<script>alert(1)</script>"}), 400),
    ("action upper case", urlencode({"action": "APIKEY."}), 400),
    ("actor_id with SQL", urlencode({"actor_id": "' OR '1'='1' --"}), NONE),
    ("client_id with SQL", urlencode({"client_id": "x'; DROP TABLE audit_auditevent; --"}), NONE),
    ("target_type with HTML", urlencode({"target_type": "<script>alert(1)</script>"}), NONE),
    ("outcome with a template", urlencode({"outcome": "{{7*7}}"}), NONE),
    ("request_id with a header break", urlencode({"request_id": "a\r\nSet-Cookie: x=y"}), NONE),
    ("actor_id a lone surrogate", "actor_id=%ED%A0%80", NONE),
    ("actor_id not UTF-8", "actor_id=%FF%FE", NONE),
    ("since a word", "since=yesterday", 400),
    ("since month 13", "since=2024-13-01T00:00:00Z", 400),
    ("since hour 25", "since=2024-01-01T25:00:00Z", 400),
    ("since offset +99:00", urlencode({"since": "2024-01-01T00:00:00+99:00"}), 400),
    ("since a number", "since=1e400", 400),
    ("since year 0", "since=0000-01-01T00:00:00Z", 400),
    ("since year 10000", "since=10000-01-01T00:00:00Z", 400),
    ("since the first instant", urlencode({"since": "0001-01-01T00:00:00+14:00"}), SOME),
    ("until the last instant", urlencode({"until": "9999-12-31T23:59:59.999999-14:00"}), SOME),
    ("since SQL", urlencode({"since": "2024-01-01' OR '1'='1"}), 400),
    ("a date without a time: its midnight UTC", "since=2024-01-01", SOME),
    ("cursor not base64", "cursor=%25%25%25", 400),
    ("cursor of base64 and more", urlencode({"cursor": _cursor("p=5") + "!"}), 400),
    ("cursor of a word", urlencode({"cursor": _cursor("p=abc")}), 400),
    ("cursor past bigint", urlencode({"cursor": _cursor("p=" + "9" * 30)}), 400),
    ("cursor of a negative id", urlencode({"cursor": _cursor("p=-1")}), 400),
    ("cursor with SQL", urlencode({"cursor": _cursor("p=1 OR 1=1")}), 400),
    ("cursor with a bad reverse flag", urlencode({"cursor": _cursor("r=x&p=5")}), 400),
    ("cursor with a huge offset", urlencode({"cursor": _cursor("o=" + "9" * 5000)}), 400),
    ("cursor not ASCII", urlencode({"cursor": "é"}), 400),
    ("cursor far past the end", urlencode({"cursor": _cursor("p=1")}), NONE),
    ("limit huge", "limit=" + "9" * 4000, SOME),
    ("limit NaN", "limit=NaN", SOME),
    ("unknown parameter", "actorid=5", 400),
    ("operator injection", "actor_id[$ne]=x", 400),
    ("ordering", "ordering=-hash", 400),
    ("offset", "offset=10", 400),
    ("format=json", "format=json", 400),
    ("a format DRF does not render", "format=api", 404),  # DRF's content negotiation, before the view
    ("a parameter name of 10KB", HUGE + "=1", 400),
]


def test_hostile_query_strings_get_a_4xx_or_an_empty_list_and_change_nothing(client, reader):
    record_events()
    before = (AuditEvent.objects.count(), AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first())
    problems = []
    for label, query, expected in HOSTILE:
        reply = client.get(f"{AUDIT}?{query}", headers=reader)
        status = 200 if expected in (NONE, SOME) else expected
        if reply.status_code != status:
            problems.append(f"{label}: expected {status}, got {reply.status_code} {reply.content[:200]!r}")
            continue
        body = reply.json()
        if status == 200:
            if (body["results"] == []) != (expected == NONE):
                problems.append(f"{label}: matched {len(body['results'])} events")
        elif set(body) != {"error", "error_description"} or not isinstance(body["error"], str):
            problems.append(f"{label}: not the RFC 6749 error shape: {body}")
        elif not RFC_DESCRIPTION.match(body["error_description"]):
            problems.append(f"{label}: description outside the RFC character set: {body}")
        if b"Traceback" in reply.content or b"django." in reply.content:
            problems.append(f"{label}: leaks internals")
    assert problems == [], "\n".join(problems)
    after = (AuditEvent.objects.count(), AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first())
    assert after == before


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_the_trail_is_read_only(client, reader, method):
    record_events()
    before = AuditEvent.objects.count()

    reply = getattr(client, method)(
        AUDIT, data=json.dumps({"action": "x"}), content_type="application/json", headers=reader
    )

    assert reply.status_code == 405
    assert reply.json()["error"] == "invalid_request"
    assert "GET" in reply["Allow"]
    assert AuditEvent.objects.count() == before


def test_a_refused_caller_learns_nothing_from_hostile_input(client):
    """Without a credential the answer is 401 whatever the query: no 400 tells a stranger which
    filters exist."""
    for query in ("actorid=5", "since=yesterday", urlencode({"cursor": _cursor("p=abc")})):
        assert client.get(f"{AUDIT}?{query}").status_code == 401


# --- No secret in the trail ----------------------------------------------------------------------


def test_no_event_holds_a_secret_of_the_flows_that_recorded_it(client, reader, owner, admin_role, settings):
    settings.IDP_TRUSTED_PROXIES = ["127.0.0.1/32"]  # the test client's peer: its X-Request-ID counts
    hidden: list[str] = []  # raw secrets the flows handed out
    headers = {**reader, "X-Request-ID": "req-secrets"}
    created = client.post(
        "/api/v1/clients/",
        {"name": "Reports", "client_type": "confidential", "grant": "client_credentials", "scopes": ["profile"]},
        content_type="application/json",
        headers=headers,
    ).json()
    hidden.append(created["client_secret"])
    client_id = created["client"]["client_id"]
    rotated = client.post(
        f"/api/v1/clients/{client_id}/rotate-secret/",
        {"grace_seconds": 60},
        content_type="application/json",
        headers=headers,
    ).json()
    hidden.append(rotated["client_secret"])
    password = "a password only this test knows " + unique("p")
    made = client.post(
        "/api/v1/users/",
        {"username": unique("new"), "email": "new@example.com", "password": password},
        content_type="application/json",
        headers=headers,
    )
    assert made.status_code == 201
    hidden.append(password)
    issued = apikey_create(
        name="exporter",
        caller=Caller.operator(audit.Actor.user(owner)),
        user=owner,
        scopes=["idp.manage"],
        rotate_every=timedelta(days=1),
    )
    hidden.append(issued.secret)
    later = issued.key.created_at + timedelta(days=2)
    assert apikeys_rotate_due(now=later) >= 1  # the scheduler's successor waits, encrypted, to be revealed
    successor = ApiKey.objects.get(rotated_from=issued.key)
    hidden.append(apikey_reveal(key_id=successor.pk, caller=Caller.operator(audit.Actor.user(owner)), now=later))
    hidden.append(apikey_rotate(key_id=successor.pk, caller=Caller.operator(audit.Actor.user(owner)), now=later).secret)
    hidden.append(reader["X-API-Key"])
    client.post(
        "/accounts/login/",
        {"username": owner.username, "password": "a wrong password " + USER_PASSWORD},
        headers={"X-Request-ID": "req-secrets"},
    )
    hidden.append("a wrong password " + USER_PASSWORD)

    everything = client.get(f"{AUDIT}?limit=200", headers=reader).content.decode()
    answered = {event["action"] for event in walk(client, reader, {"request_id": "req-secrets"})}

    assert {"client.created", "client.secret_rotated", "user.created", "login.failed"} <= answered
    assert {"apikey.created", "apikey.rotated", "apikey.revealed"} <= {
        event["action"] for event in walk(client, reader, {"action": "apikey."})
    }
    for secret in hidden:
        assert secret not in everything
        # Nor a recognisable part of one (a prefix is fine to log, the rest is not).
        assert secret[-16:] not in everything
