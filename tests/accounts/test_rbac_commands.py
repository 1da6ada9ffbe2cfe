"""create_role and assign_role as scripts call them: exactly one JSON object on stdout with --json,
a CommandError (and nothing written) for bad input, every grant and revocation audited."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

import audit
from accounts.models import Permission, Role, RoleAssignment
from accounts.services import permission_ensure, role_create
from audit.models import AuditEvent
from tests.factories import make_client, make_machine_client, make_user

SYSTEM = audit.Actor.system("tests")


def run_json(command: str, *args: str) -> dict:
    out = StringIO()
    call_command(command, *args, "--json", stdout=out)
    output = out.getvalue()
    assert output.count("\n") <= 1, f"exactly one line of output, got {output!r}"
    return json.loads(output)


def actions() -> list[str]:
    return list(AuditEvent.objects.values_list("action", flat=True))


@pytest.fixture
def machine(db):
    return make_machine_client(scopes=[]).application


# --- create_role ---------------------------------------------------------------------------------


def test_create_role_creates_a_global_role_and_its_unknown_permissions(db):
    known = permission_ensure(codename="invoices.read", actor=SYSTEM)
    before = AuditEvent.objects.count()

    body = run_json(
        "create_role", "--name", "accountant", "--permission", "invoices.read", "--permission", "invoices.pay"
    )

    role = Role.objects.get(name="accountant")
    assert body == {
        "id": role.pk,
        "name": "accountant",
        "client_id": None,
        "permissions": ["invoices.pay", "invoices.read"],
    }
    assert role.application is None
    assert Permission.objects.get(codename="invoices.read") == known, "the known permission reused"
    assert actions()[before:] == ["permission.created", "role.created"], "the unknown one created"
    event = AuditEvent.objects.get(action="role.created", target_id=str(role.pk))
    assert (event.actor_type, event.actor_id) == ("system", "create_role")


def test_create_role_with_client_makes_that_clients_own_role(machine):
    role_create(name="operator", actor=SYSTEM)

    body = run_json("create_role", "--name", "operator", "--client", machine.client_id)

    role = Role.objects.get(pk=body["id"])
    assert role.application == machine, "a client role may share a global role's name"
    assert body["client_id"] == machine.client_id
    assert AuditEvent.objects.get(action="role.created", target_id=str(role.pk)).client_id == machine.client_id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", ""], "blank"),
        (["--name", "has space"], "Letters, digits"),
        (["--name=-leading"], "Letters, digits"),
        (["--name", "r;drop table"], "Letters, digits"),
        (["--name", "r" * 101], "at most 100"),
        (["--name", "ok", "--permission", "Invoices.Read"], "dotted lower-case"),
        (["--name", "ok", "--permission", "nodots"], "dotted lower-case"),
        (["--name", "ok", "--permission", "good.one", "--permission", "bad one"], "dotted lower-case"),
        (["--name", "ok", "--client", "no-such-client"], "no client"),
        # The constraint has no violation_error_message, so Django names the constraint instead.
        (["--name", "taken"], "already exists|accounts_role_global_name"),
    ],
)
def test_create_role_refuses_bad_input_and_creates_nothing(db, args, message):
    role_create(name="taken", actor=SYSTEM)
    roles, permissions, events = Role.objects.count(), Permission.objects.count(), AuditEvent.objects.count()

    with pytest.raises(CommandError, match=message):
        call_command("create_role", *args, "--json", stdout=StringIO())

    assert Role.objects.count() == roles
    assert Permission.objects.count() == permissions, "no permission left behind by a refused role"
    assert AuditEvent.objects.count() == events


# --- assign_role ---------------------------------------------------------------------------------


def test_assign_role_to_a_user_and_revoke_it_each_once(db):
    bob = make_user(username="bob")
    role = role_create(name="support", permissions=["tickets.read"], actor=SYSTEM)

    granted = run_json("assign_role", "--user", "bob", "--role", "support")
    again = run_json("assign_role", "--user", "bob", "--role", "support")

    assert granted == again == {"role": "support", "client_id": None, "user": "bob", "assigned": True}
    assert RoleAssignment.objects.filter(role=role, user=bob).count() == 1
    event = AuditEvent.objects.get(action="role.granted", data__role_id=role.pk)
    assert (event.actor_type, event.actor_id) == ("system", "assign_role")
    assert (event.target_type, event.target_id) == ("user", str(bob.pk))
    assert event.data == {"role": "support", "role_id": role.pk}

    revoked = run_json("assign_role", "--user", "bob", "--role", "support", "--revoke")
    revoked_again = run_json("assign_role", "--user", "bob", "--role", "support", "--revoke")

    assert revoked == revoked_again == {"role": "support", "client_id": None, "user": "bob", "assigned": False}
    assert not RoleAssignment.objects.filter(role=role).exists()
    for action in ("role.granted", "role.revoked"):
        assert AuditEvent.objects.filter(action=action, data__role_id=role.pk).count() == 1, "each recorded once"


def test_assign_role_to_a_group_and_to_a_service_account(machine):
    Group.objects.create(name="ops")
    role_create(name="deployer", application=machine, actor=SYSTEM)

    to_group = run_json("assign_role", "--group", "ops", "--role", "deployer", "--client", machine.client_id)
    to_machine = run_json(
        "assign_role", "--service-client", machine.client_id, "--role", "deployer", "--client", machine.client_id
    )

    assert to_group == {"role": "deployer", "client_id": machine.client_id, "group": "ops", "assigned": True}
    assert to_machine == {
        "role": "deployer",
        "client_id": machine.client_id,
        "service_client": machine.client_id,
        "assigned": True,
    }
    granted = AuditEvent.objects.filter(action="role.granted").order_by("id")
    assert [(event.target_type, event.client_id) for event in granted] == [
        ("auth.group", machine.client_id),
        ("client", machine.client_id),
    ]

    run_json("assign_role", "--group", "ops", "--role", "deployer", "--client", machine.client_id, "--revoke")
    assert list(RoleAssignment.objects.values_list("client__client_id", flat=True)) == [machine.client_id]
    assert AuditEvent.objects.get(action="role.revoked").target_type == "auth.group"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody", "--role", "support"], "no such user"),
        (["--group", "nobody", "--role", "support"], "no such group"),
        (["--service-client", "nobody", "--role", "support"], "no such client"),
        (["--user", "bob", "--role", "nothing"], "no role"),
        (["--user", "bob", "--role", "deployer"], "no role"),  # a client role needs its --client
        (["--role", "support"], "one of the arguments"),
        (["--user", "bob", "--group", "ops", "--role", "support"], "not allowed with"),
    ],
)
def test_assign_role_refuses_bad_input_and_changes_nothing(machine, args, message):
    make_user(username="bob")
    Group.objects.create(name="ops")
    role_create(name="support", actor=SYSTEM)
    role_create(name="deployer", application=machine, actor=SYSTEM)
    before = AuditEvent.objects.count()

    with pytest.raises(CommandError, match=message):
        call_command("assign_role", *args, "--json", stdout=StringIO())

    assert not RoleAssignment.objects.exists()
    assert AuditEvent.objects.count() == before


def test_assign_role_with_an_unknown_client_is_refused_not_read_as_global(db):
    make_user(username="bob")
    role_create(name="support", actor=SYSTEM)

    with pytest.raises(CommandError):
        call_command("assign_role", "--user", "bob", "--role", "support", "--client", "typo", stdout=StringIO())

    assert not RoleAssignment.objects.exists()


def test_assign_role_to_a_client_without_a_service_account_is_a_command_error(db):
    browser_client = make_client().application
    role_create(name="support", actor=SYSTEM)

    with pytest.raises(CommandError):
        call_command(
            "assign_role", "--service-client", browser_client.client_id, "--role", "support", stdout=StringIO()
        )

    assert not RoleAssignment.objects.exists()
