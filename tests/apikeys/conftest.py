"""Shared fixtures of the API-key tests.

Keys are issued through ``apikeys.services.apikey_create`` (so hashing and audit rows are real),
owned by a user who holds the global ``idp-admin`` role, and used over HTTP through Django's test
client (``client``) or, where a test says so, the live server. Other API-key test modules
(rotation, worker, dashboard) import these fixtures and helpers; keep them general.

- ``admin_role``: the global idp-admin role (every management permission), as migration 0004
  seeds it; made again here because live-server tests flush the database.
- ``owner``: a user holding idp-admin; the default owner of ``issue_key``'s keys.
- ``issue_key(**options)``: ``apikey_create`` with defaults (owner, scope idp.manage, role
  idp-admin); any keyword overrides them. Returns ``IssuedKey`` (``.key`` row, ``.secret`` raw key).
- ``admin_key``: one such key, able to call ``GET /api/v1/users/``.
- ``machine``: a client_credentials client registered for idp.manage and profile whose service
  account holds idp-admin (for machine keys: ``issue_key(user=None, application=machine.application)``).
- ``resource_server``: a confidential client that authenticates to the introspection endpoint.
- ``introspect(token)``: POST /oauth/introspect/ as ``resource_server`` (HTTP Basic).
- ``key_headers(key, via)``: request headers presenting a key as ``X-API-Key`` or ``Authorization: Bearer``.

Every test here hashes passwords with MD5 (``_fast_password_hashing``): users are made by the dozen
and password storage has its own tests.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest

import audit
from tests.factories import make_machine_client, make_resource_server, make_user

SYSTEM = audit.Actor.system("tests")
# An endpoint needing a permission the idp-admin role holds (idp.users.read) and scope idp.manage.
USERS = "/api/v1/users/"
INTROSPECT = "/oauth/introspect/"
# The two ways a key is presented to /api/v1 (apikeys.authentication.ApiKeyAuthentication).
VIA = ("x-api-key", "bearer")


def key_headers(key: str, via: str = "x-api-key") -> dict[str, str]:
    """Headers presenting `key` as ``X-API-Key`` or as an ``Authorization: Bearer`` credential."""
    if via == "x-api-key":
        return {"X-API-Key": key}
    if via == "bearer":
        return {"Authorization": f"Bearer {key}"}
    raise ValueError(f"unknown way to present a key: {via}")


def basic_auth(client_id: str, secret: str) -> str:
    """An HTTP Basic header value for client authentication (RFC 6749 §2.3.1 form-encodes both)."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Argon2 costs about half a second per user; these tests are about keys, not passwords
    (which keep their own tests). Client secrets keep their real hasher."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]


@pytest.fixture
def admin_role(db):
    from accounts.services import admin_role_ensure

    return admin_role_ensure(actor=SYSTEM)


@pytest.fixture
def owner(admin_role):
    """A user holding the global idp-admin role: a key of theirs can carry it."""
    from accounts.services import role_grant

    user = make_user()
    role_grant(role=admin_role, user=user, actor=SYSTEM)
    return user


@pytest.fixture
def machine(admin_role):
    """A machine client (client_credentials) whose service account holds idp-admin."""
    from accounts.services import role_grant

    issued = make_machine_client(scopes=["idp.manage", "profile"])
    role_grant(role=admin_role, client=issued.application, actor=SYSTEM)
    return issued


@pytest.fixture
def resource_server(db):
    """A confidential client that only introspects, as an API gateway would."""
    return make_resource_server()


@pytest.fixture
def issue_key(owner, admin_role) -> Callable[..., Any]:
    """Issue a key through apikey_create: by default the owner's, with scope idp.manage and the
    idp-admin role. Keywords are apikey_create's and override the defaults (user=None plus
    application=... for a machine client's key)."""
    from accounts.selectors import Caller
    from apikeys.services import apikey_create

    def issue(**options: Any):
        arguments: dict[str, Any] = {
            "name": "deploy script",
            "caller": Caller.operator(SYSTEM),
            "user": owner,
            "scopes": ["idp.manage"],
            "role_ids": [admin_role.pk],
        }
        arguments.update(options)
        return apikey_create(**arguments)

    return issue


@pytest.fixture
def admin_key(issue_key):
    """The owner's key with scope idp.manage and role idp-admin: GET /api/v1/users/ answers 200."""
    return issue_key()


@pytest.fixture
def introspect(client, resource_server) -> Callable[..., Any]:
    """POST a token to the introspection endpoint as the resource server; returns the response."""
    authorization = basic_auth(resource_server.application.client_id, resource_server.client_secret)

    def call(token: str, **extra: str):
        return client.post(
            INTROSPECT,
            urlencode({"token": token, **extra}),
            content_type="application/x-www-form-urlencoded",
            headers={"Authorization": authorization},
        )

    return call
