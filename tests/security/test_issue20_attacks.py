"""Attacks on account self-service, sessions, single logout and federation, as an outsider and as
the least-privileged insider: each test is a hole that was open, and stays shut.

- A self-registered user whose address is unverified gets no token at any client; an API key
  (dashboard, management API, introspection by a resource server) is such a credential too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

import audit
from accounts.selectors import Caller
from accounts.services import user_email_change, user_email_verify, user_register
from apikeys.models import ApiKey
from apikeys.services import apikey_create
from tests.apikeys.conftest import basic_auth
from tests.factories import USER_PASSWORD, make_resource_server, make_user, signed_in_client

SYSTEM = audit.Actor.system("tests")
INTROSPECT = "/oauth/introspect/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]


def _introspect(client: Any, token: str) -> dict[str, Any]:
    server = make_resource_server()
    reply = client.post(
        INTROSPECT,
        urlencode({"token": token}),
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": basic_auth(server.application.client_id, server.client_secret)},
    )
    assert reply.status_code == 200, reply.content
    return reply.json()


# --- Self-registered, unverified: no credential of any kind -------------------------------------------


def test_an_unverified_self_registered_user_cannot_mint_an_api_key_on_the_dashboard(db):
    user = user_register(username="newcomer", email="newcomer@example.com", password=USER_PASSWORD)
    assert user is not None and not user.email_verified
    browser = signed_in_client(user, second_factor=False)

    reply = browser.post("/dashboard/keys/new/", {"name": "my key", "grace_hours": 24})

    assert reply.status_code == 400
    assert not ApiKey.objects.filter(user=user).exists()


def test_an_api_key_of_a_self_registered_user_whose_address_is_unverified_again_is_refused(client, db):
    user = user_register(username="newcomer", email="newcomer@example.com", password=USER_PASSWORD)
    assert user is not None
    user = user_email_verify(user_id=user.pk, email=user.email, actor=audit.Actor.user(user), via="link")
    issued = apikey_create(name="k", caller=Caller.operator(SYSTEM), user=user, scopes=["idp.manage"])
    assert _introspect(client, issued.secret)["active"] is True

    # A new address, unverified: as with refresh tokens, the key stops working until it is verified.
    user_email_change(user_id=user.pk, email="elsewhere@example.com", actor=audit.Actor.user(user))
    assert _introspect(client, issued.secret) == {"active": False}
    reply = client.get("/api/v1/users/", headers={"X-API-Key": issued.secret})
    assert reply.status_code == 401

    user_email_verify(user_id=user.pk, email="elsewhere@example.com", actor=audit.Actor.user(user), via="link")
    assert _introspect(client, issued.secret)["active"] is True


def test_users_not_self_registered_keep_their_api_keys_with_an_unverified_address(client, db):
    user = make_user()
    assert not user.email_verified
    issued = apikey_create(name="k", caller=Caller.operator(SYSTEM), user=user)
    assert _introspect(client, issued.secret)["active"] is True
