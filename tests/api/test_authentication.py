"""How the API recognises its callers: a bearer token from this provider in the Authorization
header, with scope idp.manage, of a subject still allowed in."""

from __future__ import annotations

import requests

from accounts.services import role_create, role_grant
from tests.api.conftest import ALL_PERMISSIONS, SYSTEM, Api, error_of


def test_a_token_anywhere_but_the_authorization_header_is_not_accepted(admin):
    token = admin.api().token
    url = f"{admin.live_server.url}/api/v1/roles/"
    attempts = {
        "query": requests.get(url, params={"access_token": token}, timeout=10),
        "form body": requests.post(url, data={"access_token": token}, timeout=10),
        "basic": requests.get(url, auth=(token, ""), timeout=10),
        "no scheme": requests.get(url, headers={"Authorization": token}, timeout=10),
        "header and query": requests.get(
            url, params={"access_token": token}, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ),
    }
    for name, reply in attempts.items():
        assert reply.status_code == 401, (name, reply.status_code, reply.text)
        assert error_of(reply) == "invalid_token", name
        assert reply.headers["WWW-Authenticate"].startswith("Bearer"), name
    assert admin.api().get("/roles/").status_code == 200, "the same token in the header works"


def test_a_revoked_or_unknown_token_is_401_invalid_token(admin):
    api = admin.api()
    client = admin.holder["client"]
    assert api.get("/roles/").status_code == 200
    for token in (api.token, "x" * 40, "' OR 1=1 --"):
        if token == api.token:
            from idp.models import AccessToken

            AccessToken.objects.filter(application=client).delete()
        reply = Api(api.base_url, token).get("/roles/")
        assert reply.status_code == 401
        assert reply.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in reply.headers["WWW-Authenticate"]


def test_a_token_without_the_scope_says_which_scope_it_needs(service_subject):
    subject = service_subject()
    subject.hold(ALL_PERMISSIONS)
    reply = subject.api(scope="profile").get("/users/")
    assert reply.status_code == 403
    assert reply.json() == {"error": "insufficient_scope", "error_description": "the token needs scope idp.manage"}
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="idp", error="insufficient_scope", scope="idp.manage"'


def test_a_deactivated_users_token_stops_working_at_once(user_subject, admin):
    subject = user_subject()
    subject.hold(ALL_PERMISSIONS)
    api = subject.api()
    assert api.get("/users/").status_code == 200

    deactivated = admin.api().post(f"/users/{subject.holder['user'].pk}/deactivate/", {"reason": "left"})
    assert deactivated.status_code == 200 and deactivated.json()["is_active"] is False

    reply = api.get("/users/")
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_token"


def test_only_global_roles_count_and_they_are_read_live(user_subject, console):
    """A role that belongs to the console client gives nothing on the management API; a global
    role granted afterwards counts at once, for the token already issued."""
    subject = user_subject()
    api = subject.api()
    assert api.get("/users/").status_code == 403
    console_role = role_create(
        name="console-users", application=console.application, permissions=["idp.users.read"], actor=SYSTEM
    )
    role_grant(role=console_role, actor=SYSTEM, **subject.holder)
    assert api.get("/users/").status_code == 403, "a client's own role never administers the provider"
    global_role = role_create(name="user-readers", permissions=["idp.users.read"], actor=SYSTEM)
    role_grant(role=global_role, actor=SYSTEM, **subject.holder)
    assert api.get("/users/").status_code == 200, "permissions are read live, per request"
    assert api.get("/roles/").status_code == 403
