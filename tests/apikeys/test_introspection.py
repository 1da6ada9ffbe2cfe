"""RFC 7662 introspection answers API keys as it answers access tokens, with token_type
"api_key": a resource server verifies both the same way. An unusable key is {"active": false} and
nothing more; an API key is not an access token, so userinfo refuses it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from accounts.models import MANAGEMENT_PERMISSIONS
from accounts.selectors import Caller
from accounts.services import role_create, role_grant, user_deactivate
from apikeys.keyformat import key_new, public_id_new
from apikeys.services import apikey_revoke, apikey_rotate
from idp.oauth.clients import client_disable
from tests.apikeys.conftest import INTROSPECT, SYSTEM, basic_auth
from tests.factories import make_client

ADMIN_PERMISSIONS = sorted(MANAGEMENT_PERMISSIONS)


@pytest.fixture
def issuer(client) -> str:
    """The issuer the discovery document announces: introspection's iss must be the same."""
    return client.get("/.well-known/openid-configuration").json()["issuer"]


def active(reply) -> dict[str, Any]:
    assert reply.status_code == 200, reply.content
    assert reply["Cache-Control"] == "no-store"
    body = reply.json()
    assert body["active"] is True, body
    return body


def assert_inactive(reply) -> None:
    assert reply.status_code == 200, reply.content
    assert reply["Cache-Control"] == "no-store"
    assert reply.json() == {"active": False}


def test_a_users_key_answers_exactly_the_token_members(introspect, issuer, owner, admin_key):
    assert active(introspect(admin_key.secret)) == {
        "active": True,
        "token_type": "api_key",
        "scope": "idp.manage",
        "sub": str(owner.pk),
        "username": owner.username,
        "iat": int(admin_key.key.created_at.timestamp()),
        "iss": issuer,
        "roles": ["idp-admin"],
        "permissions": ADMIN_PERMISSIONS,
    }


def test_a_machine_clients_key_answers_as_the_client(introspect, issuer, machine, issue_key):
    issued = issue_key(user=None, application=machine.application, scopes=["idp.manage", "profile"])
    client_id = machine.application.client_id
    answer = active(introspect(issued.secret))
    assert sorted(answer.pop("scope").split()) == ["idp.manage", "profile"]  # RFC 7662: space-separated
    assert answer == {
        "active": True,
        "token_type": "api_key",
        "sub": client_id,
        "client_id": client_id,
        "iat": int(issued.key.created_at.timestamp()),
        "iss": issuer,
        "roles": ["idp-admin"],
        "permissions": ADMIN_PERMISSIONS,
    }


def test_a_users_key_for_a_client_carries_that_clients_roles_too(introspect, issuer, owner, admin_role, issue_key):
    app = make_client(scopes=["openid", "profile", "idp.manage"]).application
    editor = role_create(name="editor", application=app, permissions=["docs.edit"], actor=SYSTEM)
    other_app = make_client().application
    elsewhere = role_create(name="elsewhere", application=other_app, permissions=["other.thing"], actor=SYSTEM)
    role_grant(role=editor, user=owner, actor=SYSTEM)
    role_grant(role=elsewhere, user=owner, actor=SYSTEM)
    issued = issue_key(application=app, scopes=["profile"], role_ids=[admin_role.pk, editor.pk])

    assert active(introspect(issued.secret)) == {
        "active": True,
        "token_type": "api_key",
        "scope": "profile",
        "sub": str(owner.pk),
        "username": owner.username,
        "client_id": app.client_id,
        "iat": int(issued.key.created_at.timestamp()),
        "iss": issuer,
        "roles": ["editor", "idp-admin"],
        "permissions": sorted([*ADMIN_PERMISSIONS, "docs.edit"]),
    }


def test_a_key_answers_like_the_same_clients_access_token(client, introspect, machine, issue_key):
    """What a resource server reads is the same for a machine client's key and its access token:
    subject, client, scope, roles, permissions and issuer; only token_type and exp differ."""
    token_reply = client.post(
        "/oauth/token/",
        "grant_type=client_credentials&scope=idp.manage",
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": basic_auth(machine.application.client_id, machine.client_secret)},
    )
    token_answer = active(introspect(token_reply.json()["access_token"]))
    key_answer = active(introspect(issue_key(user=None, application=machine.application).secret))

    assert set(key_answer) == set(token_answer) - {"exp"}
    shared = ("active", "sub", "client_id", "scope", "roles", "permissions", "iss")
    assert {name: key_answer[name] for name in shared} == {name: token_answer[name] for name in shared}
    assert (token_answer["token_type"], key_answer["token_type"]) == ("Bearer", "api_key")


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "api_key", "nonsense"])
def test_a_token_type_hint_does_not_change_a_keys_answer(introspect, admin_key, hint):
    assert active(introspect(admin_key.secret, token_type_hint=hint)) == active(introspect(admin_key.secret))


def test_exp_is_the_expiry(introspect, issue_key):
    expires_at = timezone.now().replace(microsecond=0) + timedelta(days=30)
    issued = issue_key(expires_at=expires_at)
    assert active(introspect(issued.secret))["exp"] == int(expires_at.timestamp())


def test_exp_is_the_end_of_the_grace_period_and_the_successor_has_none(introspect, issue_key):
    old = issue_key(grace_period=timedelta(hours=6))
    new = apikey_rotate(key_id=old.key.pk, caller=Caller.operator(SYSTEM))
    old.key.refresh_from_db()

    assert active(introspect(old.secret))["exp"] == int(old.key.grace_ends_at.timestamp())
    answer = active(introspect(new.secret))
    assert "exp" not in answer
    assert answer["iat"] == int(new.key.created_at.timestamp())
    assert (answer["scope"], answer["roles"], answer["sub"]) == ("idp.manage", ["idp-admin"], str(old.key.user_id))


def test_exp_is_the_earlier_of_expiry_and_grace_end(introspect, issue_key):
    now = timezone.now()
    old = issue_key(expires_at=now + timedelta(hours=3), grace_period=timedelta(hours=6))
    apikey_rotate(key_id=old.key.pk, caller=Caller.operator(SYSTEM))
    assert active(introspect(old.secret))["exp"] == int((now + timedelta(hours=3)).timestamp())


# --- Inactive: {"active": false} and nothing else ---------------------------------------------


def _revoke(issued, **_: Any) -> None:
    apikey_revoke(key_id=issued.key.pk, actor=SYSTEM, reason="leaked")


def _deactivate_owner(issued, **_: Any) -> None:
    user_deactivate(user_id=issued.key.user_id, actor=SYSTEM)


def _disable_client(issued, **_: Any) -> None:
    client_disable(application_id=issued.key.application_id, actor=SYSTEM)


BREAKS: dict[str, Callable[..., None]] = {
    "revoked": _revoke,
    "owner deactivated": _deactivate_owner,
    "its client disabled": _disable_client,
}


@pytest.mark.parametrize("reason", list(BREAKS))
def test_a_key_made_unusable_is_inactive_at_once(introspect, machine, issue_key, reason):
    if reason == "its client disabled":
        issued = issue_key(user=None, application=machine.application)
    else:
        issued = issue_key()
    active(introspect(issued.secret))
    BREAKS[reason](issued)
    assert_inactive(introspect(issued.secret))


@pytest.mark.parametrize(
    ("after", "is_active"),
    [(timedelta(minutes=59), True), (timedelta(hours=1), False), (timedelta(days=2), False)],
    ids=["before", "at", "after"],
)
def test_an_expired_key_is_inactive(introspect, issue_key, after, is_active):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        issued = issue_key(expires_at=start + timedelta(hours=1))
    with time_machine.travel(start + after, tick=False):
        reply = introspect(issued.secret)
    if is_active:
        assert active(reply)["exp"] == int((start + timedelta(hours=1)).timestamp())
    else:
        assert_inactive(reply)


@pytest.mark.parametrize(
    ("after", "old_is_active"),
    [(timedelta(minutes=59), True), (timedelta(hours=1), False), (timedelta(days=2), False)],
    ids=["in-grace", "grace-over", "long-after"],
)
def test_a_rotated_key_is_inactive_past_its_grace_period(introspect, issue_key, after, old_is_active):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        old = issue_key(grace_period=timedelta(hours=1))
        new = apikey_rotate(key_id=old.key.pk, caller=Caller.operator(SYSTEM))
    with time_machine.travel(start + after, tick=False):
        old_reply, new_reply = introspect(old.secret), introspect(new.secret)
    active(new_reply)
    if old_is_active:
        active(old_reply)
    else:
        assert_inactive(old_reply)


@pytest.mark.parametrize("variant", ["unknown public id", "another secret", "one character off", "cut short"])
def test_keys_never_issued_are_inactive(introspect, admin_key, variant):
    key = admin_key.secret
    candidate = {
        "unknown public id": key_new(public_id_new()),
        "another secret": key_new(admin_key.key.public_id),
        "one character off": key[:30] + ("A" if key[30] != "A" else "B") + key[31:],
        "cut short": key[:-1],
    }[variant]
    assert_inactive(introspect(candidate))
    active(introspect(key))


def test_introspecting_a_key_needs_client_authentication(client, admin_key, resource_server):
    anonymous = client.post(INTROSPECT, {"token": admin_key.secret})
    wrong = client.post(
        INTROSPECT,
        f"token={admin_key.secret}",
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": basic_auth(resource_server.application.client_id, "wrong")},
    )
    for reply in (anonymous, wrong):
        assert reply.status_code == 401
        assert reply.json()["error"] == "invalid_client"
        assert "active" not in reply.json(), "an unauthenticated caller learns nothing about the key"


@pytest.mark.parametrize("extra_roles", [0, 3])
def test_introspecting_a_key_costs_one_query_whatever_its_roles(
    introspect, owner, admin_role, issue_key, django_assert_num_queries, extra_roles
):
    roles = [role_create(name=f"extra-{n}", permissions=[f"extra.p{n}"], actor=SYSTEM) for n in range(extra_roles)]
    for role in roles:
        role_grant(role=role, user=owner, actor=SYSTEM)
    issued = issue_key(role_ids=[admin_role.pk, *(role.pk for role in roles)])
    assert len(active(introspect(issued.secret))["roles"]) == 1 + extra_roles
    # The key with its owner, its client and its role ids, in one read. The resource server's client
    # and the owner's roles and permissions among them come from the shared cache
    # (docs/performance.md). (A new key is not answered from the cache in its first minute; after
    # that, asked again, no query at all: tests/e2e/test_introspection_cache.py.)
    with django_assert_num_queries(1):
        active(introspect(issued.secret))


# --- userinfo ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scopes", [["idp.manage"], ["profile", "email"]])
def test_userinfo_refuses_an_api_key(client, issue_key, scopes):
    issued = issue_key(scopes=scopes)
    for method in ("get", "post"):
        reply = getattr(client, method)("/oauth/userinfo/", headers={"Authorization": f"Bearer {issued.secret}"})
        assert reply.status_code == 401, (method, reply.status_code, reply.content)
        assert reply["WWW-Authenticate"].startswith("Bearer")
        assert reply.json()["error"] == "invalid_token"
        assert issued.key.user.username not in reply.content.decode()
