"""Roles and permissions in tokens, end to end: a real relying party (authlib) and a resource server
against the live server. Roles are plain names; a client sees global roles and its own, never
another client's; introspection computes them at the time of the call."""

from __future__ import annotations

from io import StringIO

import pytest
import requests
from django.contrib.auth.models import Group
from django.core.management import call_command

import audit
from accounts.models import RoleAssignment
from accounts.services import role_create, role_grant, role_revoke
from idp.models import AccessToken
from tests.conftest import REDIRECT_URI
from tests.factories import make_client, make_machine_client, relying_party, sign_in_at
from tests.relying_party import RelyingParty

SYSTEM = audit.Actor.system("tests")


@pytest.fixture
def app(db):
    """An authorization-code client registered for the roles scope."""
    return make_client(redirect_uris=[REDIRECT_URI], scopes=["openid", "profile", "roles"])


@pytest.fixture
def roles_rp(live_server, signing_key, app):
    return relying_party(live_server.url, app)


@pytest.fixture
def helpdesk(db):
    return Group.objects.create(name="helpdesk")


@pytest.fixture
def alice_roles(alice, app, helpdesk):
    """alice holds a global role directly, another through her group, a role of `app`, and a role
    of another client that `app` must never see."""
    other = make_client().application
    auditor = role_create(name="auditor", permissions=["audit.read"], actor=SYSTEM)
    support = role_create(name="support", permissions=["tickets.read", "tickets.write"], actor=SYSTEM)
    editor = role_create(name="editor", application=app.application, permissions=["docs.write"], actor=SYSTEM)
    owner = role_create(name="owner", application=other, permissions=["billing.manage"], actor=SYSTEM)
    alice.groups.add(helpdesk)
    role_grant(role=support, group=helpdesk, actor=SYSTEM)
    for role in (auditor, editor, owner):
        role_grant(role=role, user=alice, actor=SYSTEM)
    return {"auditor": auditor, "support": support, "editor": editor, "owner": owner}


EXPECTED_ROLES = ["auditor", "editor", "support"]
EXPECTED_PERMISSIONS = ["audit.read", "docs.write", "tickets.read", "tickets.write"]


def verified_tokens(rp: RelyingParty, user, scope: str) -> dict:
    """The user's tokens (factories.sign_in_at, then the exchange), with the ID token's claims
    verified against the published keys and the request's nonce, under "id_claims"."""
    result = sign_in_at(rp, user, scope=scope)
    tokens = rp.exchange(result)
    tokens["id_claims"] = rp.verify_id_token(tokens["id_token"], nonce=result.nonce)
    return tokens


def userinfo(rp: RelyingParty, access_token: str) -> dict:
    reply = requests.get(
        rp.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )
    assert reply.status_code == 200
    return reply.json()


def introspect(live_server, resource_server, token: str) -> dict:
    reply = requests.post(
        f"{live_server.url}/oauth/introspect/",
        data={"token": token},
        auth=(resource_server.application.client_id, resource_server.client_secret),
        timeout=10,
    )
    assert reply.status_code == 200
    return reply.json()


def test_scope_roles_puts_the_clients_view_of_the_users_roles_in_tokens(
    live_server, roles_rp, resource_server, alice, alice_roles
):
    tokens = verified_tokens(roles_rp, alice, "openid roles")

    assert tokens["id_claims"]["roles"] == EXPECTED_ROLES, "direct, group and own-client roles; not owner"
    assert userinfo(roles_rp, tokens["access_token"])["roles"] == EXPECTED_ROLES
    body = introspect(live_server, resource_server, tokens["access_token"])
    assert body["active"] is True
    assert body["sub"] == str(alice.pk)
    assert body["roles"] == EXPECTED_ROLES
    assert body["permissions"] == EXPECTED_PERMISSIONS


def test_without_scope_roles_there_is_no_roles_claim(roles_rp, alice, alice_roles):
    tokens = verified_tokens(roles_rp, alice, "openid profile")

    assert "roles" not in tokens["id_claims"]
    assert "roles" not in userinfo(roles_rp, tokens["access_token"])


def test_a_revoked_role_is_gone_from_the_next_answer_for_the_same_token(
    live_server, roles_rp, resource_server, alice, alice_roles
):
    tokens = verified_tokens(roles_rp, alice, "openid roles")
    assert "auditor" in introspect(live_server, resource_server, tokens["access_token"])["roles"]

    role_revoke(assignment=RoleAssignment.objects.get(role=alice_roles["auditor"], user=alice), actor=SYSTEM)

    body = introspect(live_server, resource_server, tokens["access_token"])
    assert body["active"] is True, "the token itself is untouched"
    assert body["roles"] == ["editor", "support"]
    assert "audit.read" not in body["permissions"]
    assert userinfo(roles_rp, tokens["access_token"])["roles"] == ["editor", "support"]


def test_leaving_a_group_takes_its_roles_away(live_server, roles_rp, resource_server, alice, alice_roles, helpdesk):
    tokens = verified_tokens(roles_rp, alice, "openid roles")

    alice.groups.remove(helpdesk)

    body = introspect(live_server, resource_server, tokens["access_token"])
    assert body["roles"] == ["auditor", "editor"]
    assert body["permissions"] == ["audit.read", "docs.write"]
    assert userinfo(roles_rp, tokens["access_token"])["roles"] == ["auditor", "editor"]


def test_a_service_accounts_roles_are_in_the_introspection_of_its_tokens(live_server, signing_key, resource_server):
    machine = make_machine_client()
    reporter = role_create(name="reporter", permissions=["reports.read"], actor=SYSTEM)
    sync = role_create(name="sync", application=machine.application, permissions=["sync.run"], actor=SYSTEM)
    elsewhere = role_create(name="elsewhere", application=make_client().application, permissions=["x.y"], actor=SYSTEM)
    for role in (reporter, sync, elsewhere):
        role_grant(role=role, client=machine.application, actor=SYSTEM)
    reply = requests.post(
        f"{live_server.url}/oauth/token/",
        data={"grant_type": "client_credentials"},
        auth=(machine.application.client_id, machine.client_secret),
        timeout=10,
    )
    token = reply.json()["access_token"]

    body = introspect(live_server, resource_server, token)
    assert body["sub"] == machine.application.client_id
    assert body["roles"] == ["reporter", "sync"], "global and its own client's roles only"
    assert body["permissions"] == ["reports.read", "sync.run"]

    call_command(
        "assign_role",
        "--service-client",
        machine.application.client_id,
        "--role",
        "reporter",
        "--revoke",
        stdout=StringIO(),
    )
    body = introspect(live_server, resource_server, token)
    assert body["roles"] == ["sync"]
    assert body["permissions"] == ["sync.run"]


def test_a_client_not_registered_for_roles_gets_invalid_scope(rp, alice, alice_roles):
    """`rp` is registered for openid, profile, email and offline_access only."""
    result = sign_in_at(rp, alice, scope="openid roles")

    assert result.params["error"] == "invalid_scope"
    assert result.params["state"] == result.state
    assert "code" not in result.params
    assert not AccessToken.objects.exists()
