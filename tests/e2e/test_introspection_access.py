"""RFC 7662 §4: the introspection endpoint tells what a token is worth only to resource servers,
the clients an operator marked so. Any other client, confidential or not, learns nothing; a refresh
token is introspected only by its own client."""

from __future__ import annotations

import pytest
import requests

import audit
from accounts.selectors import Caller
from accounts.services import admin_role_ensure, role_grant
from apikeys.services import apikey_create
from tests.factories import make_machine_client, tokens_at


def introspect(live_server, issued, token: str, **extra: str) -> requests.Response:
    return requests.post(
        f"{live_server.url}/oauth/introspect/",
        data={"token": token, **extra},
        auth=(issued.application.client_id, issued.client_secret),
        timeout=10,
    )


@pytest.fixture
def ordinary(db):
    """A confidential client that is no resource server."""
    return make_machine_client()


@pytest.fixture
def tokens(rp, alice):
    admins = admin_role_ensure(actor=audit.Actor.system("tests"))
    role_grant(role=admins, user=alice, actor=audit.Actor.system("tests"))
    return tokens_at(rp, alice)


def test_a_client_that_is_no_resource_server_learns_nothing(live_server, ordinary, tokens):
    reply = introspect(live_server, ordinary, tokens["access_token"])
    assert reply.status_code == 403, reply.text
    assert reply.json()["error"] == "unauthorized_client"
    for secret_fact in ("alice", "permissions", "roles", "idp.users.manage", "active"):
        assert secret_fact not in reply.text


def test_a_client_that_is_no_resource_server_learns_nothing_of_api_keys(live_server, ordinary, alice):
    admins = admin_role_ensure(actor=audit.Actor.system("tests"))
    role_grant(role=admins, user=alice, actor=audit.Actor.system("tests"))
    key = apikey_create(
        name="ci", caller=Caller.operator(audit.Actor.system("tests")), user=alice, role_ids=[admins.pk]
    )
    reply = introspect(live_server, ordinary, key.secret)
    assert reply.status_code == 403
    assert "alice" not in reply.text


def test_a_resource_server_introspects_any_access_token(live_server, resource_server, tokens):
    reply = introspect(live_server, resource_server, tokens["access_token"])
    assert reply.status_code == 200
    answer = reply.json()
    assert answer["active"] is True and answer["username"] == "alice"
    assert "idp.users.manage" in answer["permissions"]


def test_a_refresh_token_is_introspected_only_by_its_own_client(
    live_server, resource_server, tokens, rp, issued_client
):
    foreign = introspect(live_server, resource_server, tokens["refresh_token"], token_type_hint="refresh_token")
    assert foreign.status_code == 200
    assert foreign.json() == {"active": False}

    issued_client.application.is_resource_server = True
    issued_client.application.save(update_fields=["is_resource_server"])
    own = introspect(live_server, issued_client, tokens["refresh_token"], token_type_hint="refresh_token")
    assert own.json()["active"] is True
    assert own.json()["token_type"] == "refresh_token"


def test_create_client_marks_a_resource_server(db):
    import json
    from io import StringIO

    from django.core.management import call_command

    from idp.models import Application

    out = StringIO()
    call_command(
        "create_client",
        "--name",
        "gateway",
        "--type",
        "confidential",
        "--grant",
        "client_credentials",
        "--introspect",
        "--json",
        stdout=out,
    )
    client_id = json.loads(out.getvalue())["client_id"]
    assert Application.objects.get(client_id=client_id).is_resource_server
