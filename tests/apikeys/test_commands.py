"""create_api_key, rotate_api_key and revoke_api_key, run through call_command as an operator
would run them: --json prints {"id", "key"} once, errors are CommandErrors that create nothing,
and a rotated key lives on for exactly the grace period --grace-hours set."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.services import role_create, role_grant
from apikeys.models import ApiKey
from apikeys.selectors import apikey_verify
from audit.models import AuditEvent
from tests.apikeys.conftest import SYSTEM, USERS, key_headers
from tests.factories import make_client


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def create(owner, *extra: str) -> dict[str, str]:
    return json.loads(run("create_api_key", "--user", owner.username, "--name", "ci deploy", *extra, "--json"))


def rotate(public_id: str) -> dict[str, str]:
    return json.loads(run("rotate_api_key", public_id, "--json"))


def actions(public_id: str) -> list[tuple[str, str, str]]:
    return list(
        AuditEvent.objects.filter(target_type="apikey", target_id=public_id).values_list(
            "action", "actor_type", "actor_id"
        )
    )


def test_create_prints_the_id_and_the_key_once_as_json(owner, admin_role):
    printed = create(owner, "--scope", "idp.manage", "--scope", "profile", "--role", "idp-admin")

    assert set(printed) == {"id", "key"}
    assert printed["key"].startswith(f"idpk_{printed['id']}_")
    row = ApiKey.objects.get(public_id=printed["id"])
    assert (row.user, row.application, row.name) == (owner, None, "ci deploy")
    assert sorted(row.scope_list) == ["idp.manage", "profile"]
    assert list(row.roles.all()) == [admin_role]
    assert (row.expires_at, row.rotate_every, row.next_rotation_at) == (None, None, None)
    assert row.grace_period == timedelta(hours=24), "the default grace period"
    verified = apikey_verify(presented=printed["key"])
    assert verified is not None and verified.key.pk == row.pk
    assert actions(row.public_id) == [("apikey.created", "system", "create_api_key")]


def test_create_without_json_prints_the_key_on_its_own_line(owner):
    printed = run("create_api_key", "--user", owner.username, "--name", "laptop")
    key = printed.strip().splitlines()[-1]
    assert apikey_verify(presented=key) is not None
    assert printed.count(key) == 1


def test_create_sets_lifetime_schedule_and_grace(owner):
    printed = create(owner, "--expires-in", "30", "--rotate-every", "7", "--grace-hours", "5")
    row = ApiKey.objects.get(public_id=printed["id"])

    assert row.expires_at - row.created_at == timedelta(days=30), "30 days from the moment it was made"
    assert row.rotate_every == timedelta(days=7)
    assert row.next_rotation_at - row.created_at == timedelta(days=7)
    assert row.grace_period == timedelta(hours=5)


def test_create_for_a_machine_client_and_for_a_users_client(owner, machine, admin_role, client):
    machine_key = json.loads(
        run(
            "create_api_key",
            "--client",
            machine.application.client_id,
            "--name",
            "cron",
            "--scope",
            "idp.manage",
            "--role",
            "idp-admin",
            "--json",
        )
    )
    row = ApiKey.objects.get(public_id=machine_key["id"])
    assert (row.user, row.application) == (None, machine.application)
    assert client.get(USERS, headers=key_headers(machine_key["key"])).status_code == 200

    console = make_client(scopes=["openid", "profile"]).application
    users_key = create(owner, "--client", console.client_id, "--scope", "profile")
    row = ApiKey.objects.get(public_id=users_key["id"])
    assert (row.user, row.application, row.scope) == (owner, console, "profile")


@pytest.fixture
def unheld_role(db):
    return role_create(name="auditor", permissions=["idp.users.read"], actor=SYSTEM)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--user", "nobody-here", "--name", "x"], "no user"),
        (["--client", "no-such-client", "--name", "x"], "no client"),
        (["--name", "x"], "give --user, --client or both"),
        (["--user", "{owner}", "--name", "x", "--role", "auditor"], "the owner does not hold: auditor"),
        (["--user", "{owner}", "--name", "x", "--role", "no-such-role"], "the owner does not hold"),
        (["--user", "{owner}", "--name", "x", "--scope", "openid"], "not allowed"),
        (["--user", "{owner}", "--name", "x", "--scope", "offline_access"], "not allowed"),
        (["--user", "{owner}", "--name", "x", "--scope", "root"], "not allowed"),
        (["--user", "{owner}", "--name", "   "], "name"),
        (["--user", "{owner}", "--name", "x" * 101], "name"),
        (["--user", "{owner}", "--name", "x", "--grace-hours", "-1"], "--grace-hours must be at least 0"),
        (["--user", "{owner}", "--name", "x", "--grace-hours", str(31 * 24)], "grace period"),
        (["--user", "{owner}", "--name", "x", "--expires-in", "-3"], "--expires-in must be at least 1"),
        (["--user", "{owner}", "--name", "x", "--rotate-every", "-1"], "--rotate-every must be at least 1"),
        (["--user", "{owner}", "--name", "x", "--expires-in", "soon"], "invalid int value"),
        # A lifetime or interval of zero days is no lifetime and no schedule: refused, not read
        # as "never expires" or "never rotates".
        (["--user", "{owner}", "--name", "x", "--expires-in", "0"], "expires-in"),
        (["--user", "{owner}", "--name", "x", "--rotate-every", "0"], "rotate-every"),
        (["--user", "{owner}"], "--name"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_create_refuses_with_a_command_error_and_creates_nothing(owner, unheld_role, arguments, message):
    before = (ApiKey.objects.count(), AuditEvent.objects.filter(action="apikey.created").count())
    arguments = [value.replace("{owner}", owner.username) for value in arguments]
    with pytest.raises(CommandError, match=message):
        run("create_api_key", *arguments, "--json")
    assert (ApiKey.objects.count(), AuditEvent.objects.filter(action="apikey.created").count()) == before


def test_create_refuses_a_deactivated_owner(owner):
    from accounts.services import user_deactivate

    user_deactivate(user_id=owner.pk, actor=SYSTEM)
    with pytest.raises(CommandError, match="deactivated"):
        create(owner)
    assert not ApiKey.objects.exists()


def test_rotate_prints_a_successor_that_keeps_owner_scopes_and_roles(owner, admin_role, client):
    extra = role_create(name="reader", permissions=["idp.roles.read"], actor=SYSTEM)
    role_grant(role=extra, user=owner, actor=SYSTEM)
    old = create(
        owner,
        "--scope",
        "idp.manage",
        "--scope",
        "email",
        "--role",
        "idp-admin",
        "--role",
        "reader",
        "--rotate-every",
        "7",
        "--grace-hours",
        "5",
    )

    new = rotate(old["id"])

    assert set(new) == {"id", "key"}
    assert new["id"] != old["id"] and new["key"] != old["key"]
    before, after = ApiKey.objects.get(public_id=old["id"]), ApiKey.objects.get(public_id=new["id"])
    assert after.rotated_from == before
    assert (after.user, after.application, after.name) == (before.user, before.application, before.name)
    assert sorted(after.scope_list) == sorted(before.scope_list) == ["email", "idp.manage"]
    assert set(after.roles.all()) == set(before.roles.all()) == {admin_role, extra}
    assert (after.rotate_every, after.grace_period) == (timedelta(days=7), timedelta(hours=5))
    for key in (old["key"], new["key"]):
        assert client.get(USERS, headers=key_headers(key)).status_code == 200, "both work in the grace period"
    assert actions(old["id"]) == [
        ("apikey.created", "system", "create_api_key"),
        ("apikey.rotated", "system", "rotate_api_key"),
    ]


@pytest.mark.parametrize("schedule", [[], ["--rotate-every", "7"]], ids=["by-hand-only", "scheduled"])
def test_a_rotated_key_lives_on_for_the_grace_hours(owner, client, schedule):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        old = create(owner, "--scope", "idp.manage", "--role", "idp-admin", "--grace-hours", "3", *schedule)
        new = rotate(old["id"])
    for after, old_status in ((timedelta(hours=2, minutes=59), 200), (timedelta(hours=3), 401)):
        with time_machine.travel(start + after, tick=False):
            assert client.get(USERS, headers=key_headers(old["key"])).status_code == old_status, after
            assert client.get(USERS, headers=key_headers(new["key"])).status_code == 200, after


def test_grace_hours_zero_stops_the_old_key_at_once(owner, client):
    old = create(owner, "--scope", "idp.manage", "--role", "idp-admin", "--grace-hours", "0")
    assert client.get(USERS, headers=key_headers(old["key"])).status_code == 200

    new = rotate(old["id"])

    assert apikey_verify(presented=old["key"]) is None
    reply = client.get(USERS, headers=key_headers(old["key"], "bearer"))
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_token"
    assert client.get(USERS, headers=key_headers(new["key"], "bearer")).status_code == 200


def test_rotating_twice_is_refused_and_makes_no_second_successor(owner):
    old = create(owner)
    rotate(old["id"])
    with pytest.raises(CommandError, match="already rotated"):
        rotate(old["id"])
    assert ApiKey.objects.filter(rotated_from__public_id=old["id"]).count() == 1
    assert [action for action, *_ in actions(old["id"])].count("apikey.rotated") == 1


@pytest.mark.parametrize("command", ["rotate_api_key", "revoke_api_key"])
def test_an_unknown_id_is_a_command_error(db, command):
    with pytest.raises(CommandError, match="no API key"):
        run(command, "doesNotExist")


def test_a_revoked_key_cannot_be_rotated(owner):
    old = create(owner)
    run("revoke_api_key", old["id"])
    with pytest.raises(CommandError, match="usable"):
        rotate(old["id"])
    assert not ApiKey.objects.filter(rotated_from__public_id=old["id"]).exists()


def test_revoke_stops_the_key_at_once_and_is_idempotent(owner, client):
    key = create(owner, "--scope", "idp.manage", "--role", "idp-admin")
    assert client.get(USERS, headers=key_headers(key["key"])).status_code == 200

    printed = run("revoke_api_key", key["id"], "--reason", "laptop stolen")
    assert key["id"] in printed and key["key"] not in printed
    assert client.get(USERS, headers=key_headers(key["key"])).status_code == 401

    run("revoke_api_key", key["id"])
    revoked = AuditEvent.objects.filter(action="apikey.revoked", target_id=key["id"])
    assert [(event.actor_id, event.data) for event in revoked] == [("revoke_api_key", {"reason": "laptop stolen"})]
