"""Who may call what: every /api/v1 endpoint and method, for every kind of caller.

One table (ENDPOINTS) names each operation, the permission it needs and how to make a request that
succeeds. Each case runs the whole table with one caller: no token, a token of the wrong scope, a
token whose subject holds every management permission but the one needed, and one whose subject
holds that permission alone. test_the_table_covers_every_operation keeps the table complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from audit.models import AuditEvent
from tests.api.conftest import ALL_PERMISSIONS, SYSTEM, Api, error_of, role_with, unique
from tests.factories import USER_PASSWORD, UserFactory, make_machine_client


class Targets:
    """Fresh objects for one request to act on, made through the services."""

    def user(self) -> Any:
        return UserFactory()

    def role(self) -> Any:
        return role_with([], name=unique("target-role"))

    def assignment(self) -> Any:
        from accounts.services import role_grant

        return role_grant(role=self.role(), user=self.user(), actor=SYSTEM)

    def client_id(self) -> str:
        return make_machine_client().application.client_id


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str  # as the schema names it
    permission: str
    request: Callable[[Targets], tuple[str, Any]]  # -> (path, JSON body) of a request that succeeds
    success: int

    def __str__(self) -> str:
        return f"{self.method} {self.route}"


ENDPOINTS = [
    Endpoint("GET", "/users/", "idp.users.read", lambda t: ("/users/", None), 200),
    Endpoint(
        "POST",
        "/users/",
        "idp.users.manage",
        lambda t: ("/users/", {"username": unique("new"), "email": "new@example.com", "password": USER_PASSWORD}),
        201,
    ),
    Endpoint(
        "POST",
        "/users/{user_id}/deactivate/",
        "idp.users.manage",
        lambda t: (f"/users/{t.user().pk}/deactivate/", {"reason": "left"}),
        200,
    ),
    Endpoint(
        "POST",
        "/users/{user_id}/mfa-reset/",
        "idp.mfa.reset",
        lambda t: (f"/users/{t.user().pk}/mfa-reset/", {"reason": "lost"}),
        204,
    ),
    Endpoint(
        "GET",
        "/users/{user_id}/sessions/",
        "idp.sessions.end",
        lambda t: (f"/users/{t.user().pk}/sessions/", None),
        200,
    ),
    Endpoint(
        "POST",
        "/users/{user_id}/sessions/end/",
        "idp.sessions.end",
        lambda t: (f"/users/{t.user().pk}/sessions/end/", {"reason": "lost"}),
        200,
    ),
    Endpoint(
        "DELETE",
        "/users/{user_id}/sessions/{session_id}/",
        "idp.sessions.end",
        lambda t: (f"/users/{t.user().pk}/sessions/999999999/", None),
        404,
    ),
    Endpoint("GET", "/permissions/", "idp.roles.read", lambda t: ("/permissions/", None), 200),
    Endpoint(
        "POST",
        "/permissions/",
        "idp.roles.manage",
        lambda t: ("/permissions/", {"codename": f"reports.p{unique('x')[-6:]}", "description": "d"}),
        201,
    ),
    Endpoint("GET", "/roles/", "idp.roles.read", lambda t: ("/roles/", None), 200),
    Endpoint(
        "POST", "/roles/", "idp.roles.manage", lambda t: ("/roles/", {"name": unique("role"), "permissions": []}), 201
    ),
    Endpoint("GET", "/roles/{role_id}/", "idp.roles.read", lambda t: (f"/roles/{t.role().pk}/", None), 200),
    Endpoint(
        "PATCH",
        "/roles/{role_id}/",
        "idp.roles.manage",
        lambda t: (f"/roles/{t.role().pk}/", {"description": "changed"}),
        200,
    ),
    Endpoint("DELETE", "/roles/{role_id}/", "idp.roles.manage", lambda t: (f"/roles/{t.role().pk}/", None), 204),
    Endpoint("GET", "/role-assignments/", "idp.roles.read", lambda t: ("/role-assignments/", None), 200),
    Endpoint(
        "POST",
        "/role-assignments/",
        "idp.roles.manage",
        lambda t: ("/role-assignments/", {"role": t.role().pk, "user": t.user().pk}),
        201,
    ),
    Endpoint(
        "DELETE",
        "/role-assignments/{assignment_id}/",
        "idp.roles.manage",
        lambda t: (f"/role-assignments/{t.assignment().pk}/", None),
        204,
    ),
    Endpoint("GET", "/clients/", "idp.clients.read", lambda t: ("/clients/", None), 200),
    Endpoint(
        "POST",
        "/clients/",
        "idp.clients.manage",
        lambda t: (
            "/clients/",
            {"name": "Reports", "client_type": "confidential", "grant": "client_credentials", "scopes": ["profile"]},
        ),
        201,
    ),
    Endpoint(
        "POST",
        "/clients/{client_id}/rotate-secret/",
        "idp.clients.manage",
        lambda t: (f"/clients/{t.client_id()}/rotate-secret/", {"grace_seconds": 0}),
        200,
    ),
    Endpoint(
        "POST",
        "/clients/{client_id}/disable/",
        "idp.clients.manage",
        lambda t: (f"/clients/{t.client_id()}/disable/", {}),
        200,
    ),
    Endpoint("GET", "/audit/", "audit.read", lambda t: ("/audit/", None), 200),
]


def run_table(api: Api, expect: Callable[[Endpoint], tuple[int, str | None]], before=None) -> list[str]:
    """Send every request of the table; the mismatches, each with what came back."""
    mismatches = []
    targets = Targets()
    for endpoint in ENDPOINTS:
        if before is not None:
            before(endpoint)
        path, body = endpoint.request(targets)
        events = AuditEvent.objects.count()
        reply = api.request(endpoint.method, path, json=body)
        status, error = expect(endpoint)
        if reply.status_code != status or (error is not None and error_of(reply) != error):
            mismatches.append(
                f"{endpoint}: expected {status} {error or ''}, got {reply.status_code} {reply.text[:200]}"
            )
        if status >= 400 and AuditEvent.objects.count() != events:
            mismatches.append(f"{endpoint}: a refused request changed something (an audit event appeared)")
    return mismatches


@pytest.mark.parametrize("token", [None, "not-a-token-this-provider-issued"], ids=["no_token", "unknown_token"])
def test_without_a_valid_token_every_operation_is_401(live_server, management, token):
    api = Api(live_server.url, token)
    assert run_table(api, lambda endpoint: (401, "invalid_token")) == []
    challenge = api.get("/roles/").headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer "), challenge


@pytest.fixture(params=["user", "service_account"])
def subject(request, user_subject, service_subject):
    return user_subject() if request.param == "user" else service_subject()


def test_a_token_without_scope_idp_manage_is_403_insufficient_scope_everywhere(subject):
    subject.hold(ALL_PERMISSIONS)  # even a full administrator's token needs the scope
    mismatches = run_table(subject.api(scope="profile"), lambda endpoint: (403, "insufficient_scope"))
    assert mismatches == []


def test_every_management_permission_but_the_one_needed_is_403(subject):
    def hold_all_but(endpoint: Endpoint) -> None:
        subject.hold(set(ALL_PERMISSIONS) - {endpoint.permission})

    mismatches = run_table(subject.api(), lambda endpoint: (403, "access_denied"), before=hold_all_but)
    assert mismatches == []


def test_the_one_permission_needed_is_enough(subject):
    def hold_only(endpoint: Endpoint) -> None:
        subject.hold([endpoint.permission])

    mismatches = run_table(subject.api(), lambda endpoint: (endpoint.success, None), before=hold_only)
    assert mismatches == []


def test_the_table_covers_every_operation():
    """Every operation the schema lists is in ENDPOINTS, and nothing else is."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    listed = {
        (method.upper(), path.removeprefix("/api/v1"))
        for path, operations in schema["paths"].items()
        for method in operations
    }
    assert listed == {(endpoint.method, endpoint.route) for endpoint in ENDPOINTS}
