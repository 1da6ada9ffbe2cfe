"""Machine clients (client_credentials) and resource servers (introspection, revocation), driven
through the live server as a resource server would call it."""

from __future__ import annotations

import base64

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from django.core.cache import cache

import audit
from accounts.selectors import Caller
from idp.models import AccessToken
from idp.oauth import clients
from idp.oauth.introspection_cache import checksum_of, entry_key, token_entry
from tests.factories import make_public_client


def endpoint(live_server, path: str) -> str:
    return f"{live_server.url}{path}"


def client_credentials_token(live_server, issued, **kwargs) -> dict:
    session = OAuth2Session(issued.application.client_id, issued.client_secret, **kwargs)
    return dict(session.fetch_token(endpoint(live_server, "/oauth/token/"), grant_type="client_credentials"))


def post_as(live_server, issued, path: str, data: dict[str, str]) -> requests.Response:
    """A form POST authenticated as the client (HTTP Basic), as servers call these endpoints."""
    auth = (issued.application.client_id, issued.client_secret)
    return requests.post(endpoint(live_server, path), data=data, auth=auth, timeout=10)


def introspect(live_server, issued, token: str, **extra: str) -> requests.Response:
    return post_as(live_server, issued, "/oauth/introspect/", {"token": token, **extra})


def test_client_credentials_token_introspects_as_the_client(live_server, signing_key, machine, resource_server):
    token = client_credentials_token(live_server, machine, scope="profile")

    assert token["token_type"] == "Bearer"
    assert token["scope"] == "profile"
    assert 0 < token["expires_in"] <= 600, "access tokens live minutes"
    assert "refresh_token" not in token, "client_credentials never issues a refresh token"
    assert "id_token" not in token

    body = introspect(live_server, resource_server, token["access_token"]).json()
    assert body["active"] is True
    assert body["client_id"] == machine.application.client_id
    assert body["scope"] == "profile"
    assert body["token_type"] == "Bearer"
    assert body["exp"] > body["iat"]
    assert "username" not in body, "a machine token has no user"


def test_client_credentials_with_client_secret_post(live_server, signing_key, machine):
    token = client_credentials_token(live_server, machine, token_endpoint_auth_method="client_secret_post")
    assert token["access_token"]


def test_scope_beyond_the_registration_is_invalid_scope(live_server, signing_key, machine):
    reply = post_as(live_server, machine, "/oauth/token/", {"grant_type": "client_credentials", "scope": "email"})
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_scope"
    assert AccessToken.objects.count() == 0


def test_client_credentials_is_refused_to_an_authorization_code_client(live_server, signing_key, issued_client):
    reply = post_as(live_server, issued_client, "/oauth/token/", {"grant_type": "client_credentials"})
    assert reply.status_code == 400
    assert reply.json()["error"] == "unauthorized_client"


def test_introspection_needs_client_authentication(live_server, signing_key, machine):
    token = client_credentials_token(live_server, machine)["access_token"]

    anonymous = requests.post(endpoint(live_server, "/oauth/introspect/"), data={"token": token}, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "invalid_client"
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert "active" not in anonymous.json(), "an unauthenticated caller learns nothing about the token"

    wrong = requests.post(
        endpoint(live_server, "/oauth/introspect/"),
        data={"token": token},
        auth=(machine.application.client_id, "wrong-secret"),
        timeout=10,
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"


def test_introspection_refuses_public_clients(live_server, signing_key, machine):
    public = make_public_client()
    token = client_credentials_token(live_server, machine)["access_token"]
    reply = requests.post(
        endpoint(live_server, "/oauth/introspect/"),
        data={"token": token, "client_id": public.application.client_id},
        timeout=10,
    )
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_client"


def test_introspection_is_post_only_and_needs_a_token(live_server, signing_key, machine, resource_server):
    token = client_credentials_token(live_server, machine)["access_token"]
    by_get = requests.get(
        endpoint(live_server, "/oauth/introspect/"),
        params={"token": token},
        auth=(resource_server.application.client_id, resource_server.client_secret),
        timeout=10,
    )
    assert by_get.status_code == 405, "a token in a query string ends up in access logs"

    missing = post_as(live_server, resource_server, "/oauth/introspect/", {})
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


@pytest.mark.parametrize("token", ["not-a-token", " ", "a" * 200, "' OR 1=1 --"])
def test_unknown_tokens_are_inactive_and_say_nothing_more(live_server, signing_key, resource_server, token):
    reply = introspect(live_server, resource_server, token)
    assert reply.status_code == 200
    assert reply.json() == {"active": False}


def test_an_empty_token_is_invalid_request(live_server, signing_key, resource_server):
    reply = introspect(live_server, resource_server, "")
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_request"


def test_revoked_machine_token_is_inactive(live_server, signing_key, machine, resource_server):
    token = client_credentials_token(live_server, machine)["access_token"]
    revoked = post_as(live_server, machine, "/oauth/revoke/", {"token": token, "token_type_hint": "access_token"})
    assert revoked.status_code == 200
    assert introspect(live_server, resource_server, token).json() == {"active": False}


def test_revoking_an_unknown_token_is_200(live_server, signing_key, machine):
    """RFC 7009 §2.2: an invalid token is not an error, so a caller learns nothing from it."""
    reply = post_as(live_server, machine, "/oauth/revoke/", {"token": "never-issued"})
    assert reply.status_code == 200


def test_a_client_cannot_revoke_another_clients_token(live_server, signing_key, machine, resource_server):
    token = client_credentials_token(live_server, machine)["access_token"]
    post_as(live_server, resource_server, "/oauth/revoke/", {"token": token})
    assert introspect(live_server, resource_server, token).json()["active"] is True


def test_a_disabled_client_gets_no_tokens_and_its_tokens_go_inactive(
    live_server, signing_key, machine, resource_server
):
    token = client_credentials_token(live_server, machine)["access_token"]
    machine.application.is_active = False
    machine.application.save(update_fields=["is_active"])

    reply = post_as(live_server, machine, "/oauth/token/", {"grant_type": "client_credentials"})
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_client"
    assert introspect(live_server, resource_server, token).json() == {"active": False}


def test_a_resource_server_disabled_after_it_introspected_is_refused_at_once(
    live_server, signing_key, machine, resource_server
):
    token = client_credentials_token(live_server, machine)["access_token"]
    assert introspect(live_server, resource_server, token).json()["active"] is True  # its client is cached now

    clients.client_disable(application_id=resource_server.application.pk, actor=audit.Actor.system("tests"))

    reply = introspect(live_server, resource_server, token)
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_client"


def test_a_secret_rotated_without_grace_stops_at_once_though_the_client_was_cached(live_server, signing_key, machine):
    assert client_credentials_token(live_server, machine)["access_token"]  # its client is cached now

    rotated = clients.client_secret_rotate(
        application_id=machine.application.pk, grace_seconds=0, caller=Caller.operator(audit.Actor.system("tests"))
    )

    old = post_as(live_server, machine, "/oauth/token/", {"grant_type": "client_credentials"})
    assert old.status_code == 401
    auth = (machine.application.client_id, rotated.client_secret)
    new = requests.post(
        endpoint(live_server, "/oauth/token/"), data={"grant_type": "client_credentials"}, auth=auth, timeout=10
    )
    assert new.status_code == 200


def _basic(issued) -> str:
    pair = f"{issued.application.client_id}:{issued.client_secret}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def test_an_introspection_not_answered_from_the_cache_costs_one_query(
    client, signing_key, machine, resource_server, django_assert_num_queries
):
    """The token's row, with its client and user, is the one query: the resource server's client
    and the subject's roles come from the shared cache (docs/performance.md). (Asked again, the
    token is answered from the cache alone: tests/e2e/test_introspection_cache.py.)"""
    issued = client.post(
        "/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=_basic(machine)
    ).json()

    def introspect_once():
        form = {"token": issued["access_token"]}
        return client.post("/oauth/introspect/", form, HTTP_AUTHORIZATION=_basic(resource_server))

    assert introspect_once().json()["active"] is True
    cache.delete(entry_key(token_entry(checksum_of(issued["access_token"]))))

    with django_assert_num_queries(1):
        answer = introspect_once().json()

    assert answer["active"] is True
    assert answer["client_id"] == machine.application.client_id
