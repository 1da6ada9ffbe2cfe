"""Nobody gets more through the API than they hold: no granting, reshaping or creating roles with
permissions the caller lacks, no changing one's own roles, no staff flags. Each refusal leaves the
database as it was."""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth.models import Group

from accounts.models import MANAGEMENT_PERMISSIONS, Permission, Role, RoleAssignment, User
from accounts.services import role_create, role_grant
from audit.models import AuditEvent
from idp.models import Application
from tests.api.conftest import ALL_PERMISSIONS, SYSTEM, error_of, role_with, unique
from tests.factories import USER_PASSWORD, UserFactory, make_machine_client, make_user

# A roles administrator: may grant and shape roles, but holds nothing about users or clients.
ROLES_ADMIN = ["idp.roles.read", "idp.roles.manage"]


def snapshot() -> dict[str, object]:
    """Everything an escalation could change."""
    return {
        "users": sorted(User.objects.values_list("pk", "username", "is_active", "is_staff", "is_superuser")),
        "roles": sorted(Role.objects.values_list("pk", "name", "description")),
        "role_permissions": sorted(Role.permissions.through.objects.values_list("role_id", "permission_id")),
        "assignments": sorted(RoleAssignment.objects.values_list("pk", "role_id", "user_id", "group_id", "client_id")),
        "permissions": sorted(Permission.objects.values_list("codename", flat=True)),
        "clients": sorted(Application.objects.values_list("pk", "is_active", "client_secret")),
        "audit_events": AuditEvent.objects.count(),
    }


@pytest.fixture
def roles_admin(user_subject):
    subject = user_subject()
    subject.hold(ROLES_ADMIN)
    subject.api()  # its token now, so snapshots do not count its token.issued event
    return subject


def refused(reply, status: int = 403, error: str = "access_denied") -> bool:
    return reply.status_code == status and error_of(reply) == error


def test_granting_a_role_with_a_permission_the_caller_lacks_is_refused(roles_admin):
    victim = UserFactory()
    stronger = role_with(["idp.roles.manage", "idp.users.manage"], name=unique("stronger"))
    before = snapshot()

    reply = roles_admin.api().post("/role-assignments/", {"role": stronger.pk, "user": victim.pk})

    assert refused(reply), reply.text
    assert "do not hold" in reply.json()["error_description"]
    assert snapshot() == before


def test_the_admin_role_cannot_be_granted_by_a_roles_administrator(roles_admin, management):
    reply = roles_admin.api().post("/role-assignments/", {"role": management.pk, "user": UserFactory().pk})
    assert refused(reply)
    assert not RoleAssignment.objects.filter(role=management).exists()


@pytest.mark.parametrize("kind", ["user", "service_account"])
def test_nobody_grants_a_role_to_themselves(user_subject, service_subject, kind):
    subject = user_subject() if kind == "user" else service_subject()
    subject.hold(ROLES_ADMIN)
    weaker = role_with(["idp.roles.read"], name=unique("weaker"))
    holder = (
        {"user": subject.holder["user"].pk} if kind == "user" else {"client_id": subject.holder["client"].client_id}
    )
    api = subject.api()
    before = snapshot()

    reply = api.post("/role-assignments/", {"role": weaker.pk, **holder})

    assert refused(reply), reply.text
    assert snapshot() == before


def test_nobody_grants_a_role_to_a_group_they_belong_to(roles_admin):
    group = Group.objects.create(name=unique("ops"))
    group.user_set.add(roles_admin.holder["user"])
    role = role_with([])
    before = snapshot()

    reply = roles_admin.api().post("/role-assignments/", {"role": role.pk, "group": group.pk})

    assert refused(reply)
    assert snapshot() == before


def test_nobody_revokes_their_own_role(roles_admin):
    own = RoleAssignment.objects.get(user=roles_admin.holder["user"])
    before = snapshot()

    reply = roles_admin.api().delete(f"/role-assignments/{own.pk}/")

    assert refused(reply)
    assert snapshot() == before


def test_revoking_a_role_with_a_permission_the_caller_lacks_is_refused(roles_admin, management):
    full_admin = role_grant(role=management, user=UserFactory(), actor=SYSTEM)
    before = snapshot()

    reply = roles_admin.api().delete(f"/role-assignments/{full_admin.pk}/")

    assert refused(reply)
    assert snapshot() == before


def test_creating_a_role_with_a_permission_the_caller_lacks_is_refused(roles_admin):
    before = snapshot()
    for permissions in (["idp.users.manage"], ["idp.roles.read", "idp.clients.manage"], ["brand.new"]):
        reply = roles_admin.api().post("/roles/", {"name": unique("sneaky"), "permissions": permissions})
        assert refused(reply), (permissions, reply.text)
    assert snapshot() == before


def test_a_role_cannot_be_given_a_permission_the_caller_lacks(roles_admin):
    role = role_with(["idp.roles.read"], name=unique("readers"))
    before = snapshot()

    reply = roles_admin.api().patch(f"/roles/{role.pk}/", {"permissions": ["idp.roles.read", "idp.users.manage"]})

    assert refused(reply)
    assert snapshot() == before


def test_a_role_holding_permissions_the_caller_lacks_cannot_be_changed_or_deleted(roles_admin, management):
    api = roles_admin.api()
    before = snapshot()
    for change in ({"description": "renamed"}, {"permissions": []}, {"permissions": ["idp.roles.read"]}):
        assert refused(api.patch(f"/roles/{management.pk}/", change)), change
    assert refused(api.delete(f"/roles/{management.pk}/"))
    assert snapshot() == before


def test_staff_flags_are_unknown_fields_on_every_write(admin):
    """Not even accepted and ignored: a request that tries to set them learns it cannot."""
    target = UserFactory()
    client = make_machine_client(scopes=[]).application
    role = role_with([], name=unique("plain"))
    new_user = {"username": unique("mallory"), "email": "m@example.com", "password": USER_PASSWORD}
    writes = [
        ("POST", "/users/", new_user),
        ("POST", f"/users/{target.pk}/deactivate/", {}),
        ("PATCH", f"/roles/{role.pk}/", {"description": "x"}),
        ("POST", "/role-assignments/", {"role": role.pk, "user": target.pk}),
        ("POST", f"/clients/{client.client_id}/disable/", {}),
        ("POST", f"/clients/{client.client_id}/rotate-secret/", {"grace_seconds": 0}),
    ]
    api = admin.api()
    before = snapshot()
    for method, path, body in writes:
        for flag in ("is_staff", "is_superuser"):
            for value in (True, False):
                reply = api.request(method, path, json={**body, flag: value})
                assert reply.status_code == 400, (method, path, flag, reply.text)
                assert reply.json() == {"error": "invalid_request", "error_description": f"{flag}: unknown field"}
    assert snapshot() == before


def test_nobody_deactivates_themselves_or_a_staff_account(user_subject):
    subject = user_subject()
    subject.hold(ALL_PERMISSIONS)
    staff = User.objects.create(username=unique("staff"), is_staff=True)
    api = subject.api()
    before = snapshot()

    for user in (subject.holder["user"], staff):
        reply = api.post(f"/users/{user.pk}/deactivate/", {})
        assert refused(reply), reply.text
    assert snapshot() == before


def test_a_user_holding_permissions_the_caller_lacks_cannot_be_deactivated(user_subject, management):
    subject = user_subject()
    subject.hold(["idp.users.read", "idp.users.manage"])
    full_admin = UserFactory()
    role_grant(role=management, user=full_admin, actor=SYSTEM)
    api = subject.api()
    before = snapshot()

    reply = api.post(f"/users/{full_admin.pk}/deactivate/", {})

    assert refused(reply)
    assert snapshot() == before


def test_registering_an_idp_manage_client_needs_every_management_permission(service_subject):
    subject = service_subject()
    subject.hold(["idp.clients.read", "idp.clients.manage"])
    api = subject.api()
    before = snapshot()

    reply = api.post(
        "/clients/",
        {"name": "Phish", "client_type": "confidential", "grant": "authorization_code",
         "redirect_uris": ["https://rp.example/cb"], "scopes": ["openid", "idp.manage"], "skip_consent": True},
    )  # fmt: skip

    assert refused(reply)
    assert snapshot() == before


def test_nobody_disables_the_client_their_token_came_from(admin):
    before = snapshot()
    reply = admin.api().post(f"/clients/{admin.holder['client'].client_id}/disable/", {})
    assert refused(reply)
    assert snapshot() == before


def test_a_clients_own_role_never_administers_the_provider(live_server, signing_key):
    """A role belonging to some client, even one bundling every management permission, gives no
    access to the management API: only global roles do."""
    machine = make_machine_client(scopes=["idp.manage"])
    own = role_create(
        name="self-made-admin", application=machine.application, permissions=list(MANAGEMENT_PERMISSIONS), actor=SYSTEM
    )
    role_grant(role=own, client=machine.application, actor=SYSTEM)
    token = requests.post(
        f"{live_server.url}/oauth/token/",
        data={"grant_type": "client_credentials", "scope": "idp.manage"},
        auth=(machine.application.client_id, machine.client_secret),
        timeout=10,
    ).json()["access_token"]
    make_user(username="bystander")

    reply = requests.get(f"{live_server.url}/api/v1/users/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert reply.status_code == 403
    assert reply.json()["error"] == "access_denied"
