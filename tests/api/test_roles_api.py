"""Permissions, roles and role assignments through the API: what they do, and the audit trail
every grant and revocation leaves."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from accounts.models import Role, RoleAssignment
from accounts.selectors import subject_access
from accounts.services import role_grant
from audit.models import AuditEvent
from tests.api.conftest import ALL_PERMISSIONS, SYSTEM, role_with, unique
from tests.factories import UserFactory, make_client, make_machine_client


def events(action: str) -> list[tuple[str, str, str, str]]:
    """(actor type, actor id, target type, target id) of the events the API's callers caused (the
    tests' own setup acts as the system)."""
    return list(
        AuditEvent.objects.filter(action=action)
        .exclude(actor_type="system")
        .values_list("actor_type", "actor_id", "target_type", "target_id")
    )


@pytest.mark.parametrize("kind", ["user", "service_account"])
def test_grants_and_revocations_through_the_api_are_audited_with_actor_and_target(user_subject, service_subject, kind):
    caller = user_subject() if kind == "user" else service_subject()
    caller.hold(ALL_PERMISSIONS)
    api = caller.api()
    role = role_with(["idp.users.read"], name=unique("auditors"))
    user, group = UserFactory(), Group.objects.create(name=unique("group"))
    machine = make_machine_client(scopes=[]).application
    holders = [
        ({"user": user.pk}, ("user", str(user.pk))),
        ({"group": group.pk}, ("auth.group", str(group.pk))),
        ({"client_id": machine.client_id}, ("client", machine.client_id)),
    ]

    granted = []
    for holder, _ in holders:
        reply = api.post("/role-assignments/", {"role": role.pk, **holder})
        assert reply.status_code == 201, reply.text
        assert reply.json()["role"] == role.pk and reply.json()["role_name"] == role.name
        granted.append(reply.json()["id"])
    assert events("role.granted") == [(*caller.actor, *target) for _, target in holders]
    granted_data = AuditEvent.objects.filter(action="role.granted", data__role_id=role.pk).values_list(
        "data", flat=True
    )
    assert all(data == {"role": role.name, "role_id": role.pk} for data in granted_data)
    assert "idp.users.read" in subject_access(user_id=user.pk).permissions

    for assignment_id in granted:
        assert api.delete(f"/role-assignments/{assignment_id}/").status_code == 204
    assert events("role.revoked") == [(*caller.actor, *target) for _, target in holders]
    assert not RoleAssignment.objects.filter(role=role).exists()
    assert subject_access(user_id=user.pk).permissions == []


def test_granting_a_role_already_held_changes_and_records_nothing(admin):
    role, user = role_with([]), UserFactory()
    first = admin.api().post("/role-assignments/", {"role": role.pk, "user": user.pk})
    again = admin.api().post("/role-assignments/", {"role": role.pk, "user": user.pk})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert len(events("role.granted")) == 1


def test_a_role_from_creation_to_deletion(admin):
    api = admin.api()
    machine = make_machine_client(scopes=[]).application
    assert api.post("/permissions/", {"codename": "reports.read", "description": "Read reports"}).status_code == 201
    duplicate = api.post("/permissions/", {"codename": "reports.read"})
    assert duplicate.status_code == 400 and duplicate.json()["error_description"].startswith("codename:")

    # reports.read is held by nobody, so not even a full administrator can bundle it.
    assert api.post("/roles/", {"name": "reporter", "permissions": ["reports.read"]}).status_code == 403

    created = api.post(
        "/roles/",
        {"name": "reporter", "description": "Reads", "client_id": machine.client_id, "permissions": ["idp.roles.read"]},
    )
    assert created.status_code == 201, created.text
    role = created.json()
    assert role == {
        "id": role["id"],
        "name": "reporter",
        "description": "Reads",
        "client_id": machine.client_id,
        "permissions": ["idp.roles.read"],
        "require_mfa": False,
    }
    assert api.post("/roles/", {"name": "reporter", "client_id": machine.client_id}).status_code == 400
    assert api.get(f"/roles/?client_id={machine.client_id}").json()["results"] == [role]
    assert api.get(f"/roles/{role['id']}/").json() == role

    changed = api.patch(f"/roles/{role['id']}/", {"permissions": ["idp.users.read", "idp.clients.read"]})
    assert changed.status_code == 200
    assert changed.json()["permissions"] == ["idp.clients.read", "idp.users.read"]
    assert changed.json()["description"] == "Reads"
    update = AuditEvent.objects.get(action="role.updated")
    assert update.data == {
        "name": "reporter",
        "added": ["idp.clients.read", "idp.users.read"],
        "removed": ["idp.roles.read"],
    }

    holder = UserFactory()
    role_grant(role=Role.objects.get(pk=role["id"]), user=holder, actor=SYSTEM)
    assert api.delete(f"/roles/{role['id']}/").status_code == 204
    assert api.get(f"/roles/{role['id']}/").status_code == 404
    # Its holder lost it through role_revoke, audited, before the role went.
    assert events("role.revoked") == [(*admin.actor, "user", str(holder.pk))]
    assert AuditEvent.objects.filter(action="role.deleted", target_id=str(role["id"])).exists()


def test_a_grant_names_exactly_one_existing_holder(admin):
    api = admin.api()
    role, user = role_with([]), UserFactory()
    group = Group.objects.create(name=unique("group"))
    web_client = make_client().application  # an authorization-code client has no service account
    cases = [
        ({"role": role.pk}, "holder:"),
        ({"role": role.pk, "user": user.pk, "group": group.pk}, "holder:"),
        ({"role": role.pk, "user": 999_999_999}, "user: no such object"),
        ({"role": 999_999_999, "user": user.pk}, "role: no such object"),
        ({"role": role.pk, "client_id": "nope"}, "client_id: no such object"),
        ({"role": role.pk, "client_id": web_client.client_id}, "client_id: only a client_credentials client"),
    ]
    for body, description in cases:
        reply = api.post("/role-assignments/", body)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["error_description"].startswith(description), (body, reply.text)
    assert not RoleAssignment.objects.filter(role=role).exists()
