"""Nobody can spend someone else's rate limit. A per-client (or per-key) bucket counts only
requests that proved they are that client (or key); failed attempts count per source address and
per (client, address) pair, so an attacker who knows a client_id or an API key's public id
throttles only himself. Driven over HTTP against the live server, with addresses given through a
trusted proxy's X-Forwarded-For."""

from __future__ import annotations

import pytest
import requests
from django.conf import settings as django_settings

import audit
from accounts.selectors import Caller
from accounts.services import admin_role_ensure, role_grant
from apikeys.services import apikey_create
from tests.conftest import REDIRECT_URI
from tests.factories import make_client, make_machine_client, make_user

ATTACKER = "198.51.100.66"
VICTIM = "203.0.113.7"


@pytest.fixture
def limits(settings):
    settings.IDP_TRUSTED_PROXIES = ["127.0.0.1/32", "::1/128"]
    settings.IDP_RATE_LIMITS = {name: "1000/minute" for name in django_settings.IDP_RATE_LIMITS}
    return settings.IDP_RATE_LIMITS


@pytest.fixture
def machine(db):
    return make_machine_client()


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def token_request(live_server, client_id: str, secret: str, address: str) -> requests.Response:
    return requests.post(
        f"{live_server.url}/oauth/token/",
        data={"grant_type": "client_credentials", "scope": "profile"},
        auth=(client_id, secret),
        headers=from_address(address),
        timeout=10,
    )


@pytest.mark.parametrize("endpoint", ["token", "introspect", "revoke"])
def test_wrong_secrets_do_not_spend_the_real_clients_bucket(live_server, limits, machine, endpoint):
    limits[f"{endpoint}.client"] = "3/minute"
    client_id = machine.application.client_id
    path = {"token": "/oauth/token/", "introspect": "/oauth/introspect/", "revoke": "/oauth/revoke/"}[endpoint]
    data = {"grant_type": "client_credentials", "scope": "profile"} if endpoint == "token" else {"token": "x" * 30}
    for _ in range(10):
        requests.post(
            live_server.url + path, data=data, auth=(client_id, "wrong"), headers=from_address(ATTACKER), timeout=10
        )

    reply = requests.post(
        live_server.url + path,
        data=data,
        auth=(client_id, machine.client_secret),
        headers=from_address(VICTIM),
        timeout=10,
    )
    assert reply.status_code != 429, reply.text


def test_failed_attempts_are_limited_per_client_and_address(live_server, limits, machine):
    limits["token.client_failures"] = "3/minute"
    client_id = machine.application.client_id
    answers = [token_request(live_server, client_id, "wrong", ATTACKER).status_code for _ in range(5)]
    assert answers[:3] == [401, 401, 401]
    assert answers[3:] == [429, 429]
    # A right guess from the guesser's address is refused as well: 429 never tells right from wrong.
    assert token_request(live_server, client_id, machine.client_secret, ATTACKER).status_code == 429
    # The real client, from its own address, is untouched.
    assert token_request(live_server, client_id, machine.client_secret, VICTIM).status_code == 200


@pytest.mark.parametrize("endpoint", ["token", "introspect", "revoke"])
def test_the_client_bucket_still_limits_the_authenticated_client(live_server, limits, machine, endpoint):
    """A proven client spends its own bucket when it authenticates, and over it gets 429 with
    Retry-After from any address, with nothing issued or recorded."""
    from audit.models import AuditEvent
    from idp.models import AccessToken

    limits[f"{endpoint}.client"] = "2/minute"
    machine.application.is_resource_server = True  # introspection answers resource servers only
    machine.application.save(update_fields=["is_resource_server"])
    path = {"token": "/oauth/token/", "introspect": "/oauth/introspect/", "revoke": "/oauth/revoke/"}[endpoint]
    data = {"grant_type": "client_credentials", "scope": "profile"} if endpoint == "token" else {"token": "x" * 30}
    auth = (machine.application.client_id, machine.client_secret)

    def send(address: str) -> requests.Response:
        return requests.post(live_server.url + path, data=data, auth=auth, headers=from_address(address), timeout=10)

    assert send(VICTIM).status_code == 200
    assert send(VICTIM).status_code == 200
    tokens, events = AccessToken.objects.count(), AuditEvent.objects.count()
    third = send("192.0.2.44")
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) > 0
    assert third.json()["error"] == "rate_limited"
    assert (AccessToken.objects.count(), AuditEvent.objects.count()) == (tokens, events)


@pytest.mark.parametrize("endpoint", ["token", "introspect", "revoke"])
def test_a_place_held_for_the_named_client_is_given_back_when_the_request_goes_no_further(
    live_server, limits, machine, endpoint
):
    """Before the view, a request naming a client in HTTP Basic holds a place in that client's bucket
    (idp.http.ratelimit: one round trip for the windows). A request refused by its address's window
    never proves itself and gives the place back; a wrong secret gives it back; only the client's
    own requests keep one."""
    limits[f"{endpoint}.ip"] = "1/minute"
    limits[f"{endpoint}.client"] = "3/minute"
    machine.application.is_resource_server = True  # introspection answers resource servers only
    machine.application.save(update_fields=["is_resource_server"])
    path = {"token": "/oauth/token/", "introspect": "/oauth/introspect/", "revoke": "/oauth/revoke/"}[endpoint]
    data = {"grant_type": "client_credentials", "scope": "profile"} if endpoint == "token" else {"token": "x" * 30}
    client_id = machine.application.client_id

    def send(address: str, secret: str = machine.client_secret) -> int:
        return requests.post(
            live_server.url + path, data=data, auth=(client_id, secret), headers=from_address(address), timeout=10
        ).status_code

    assert send("192.0.2.1") == 200
    assert [send("192.0.2.1") for _ in range(5)] == [429] * 5  # the address's window: refused before the view
    assert send("192.0.2.2", "wrong") == 401
    assert send("192.0.2.3") == 200
    assert send("192.0.2.4") == 200  # the client's third: none of the refused or failed requests kept one
    assert send("192.0.2.5") == 429  # its fourth: over its own bucket
    assert send("192.0.2.6", "wrong") == 401  # a wrong secret is told it is wrong, whatever the bucket


def test_authorization_requests_naming_a_client_do_not_throttle_its_users(live_server, limits, signing_key):
    limits["authorize.client"] = "3/minute"  # the bucket the attack filled, gone
    issued = make_client(redirect_uris=[REDIRECT_URI])
    params = {"response_type": "code", "client_id": issued.application.client_id, "redirect_uri": REDIRECT_URI}
    for _ in range(10):
        requests.get(
            f"{live_server.url}/oauth/authorize/",
            params=params,
            headers=from_address(ATTACKER),
            allow_redirects=False,
            timeout=10,
        )
    reply = requests.get(
        f"{live_server.url}/oauth/authorize/",
        params=params,
        headers=from_address(VICTIM),
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code != 429


@pytest.fixture
def real_key(db):
    owner = make_user()
    admins = admin_role_ensure(actor=audit.Actor.system("tests"))
    role_grant(role=admins, user=owner, actor=audit.Actor.system("tests"))
    return apikey_create(
        name="ci",
        caller=Caller.operator(audit.Actor.system("tests")),
        user=owner,
        scopes=["idp.manage"],
        role_ids=[admins.pk],
    )


def test_wrong_secrets_under_a_keys_public_id_do_not_spend_the_keys_bucket(live_server, limits, real_key):
    limits["api.key"] = "3/minute"
    forged = f"idpk_{real_key.key.public_id}_" + "A" * 43 + "abcdef"
    for _ in range(10):
        requests.get(
            f"{live_server.url}/api/v1/users/", headers={"X-API-Key": forged, **from_address(ATTACKER)}, timeout=10
        )
    reply = requests.get(
        f"{live_server.url}/api/v1/users/", headers={"X-API-Key": real_key.secret, **from_address(VICTIM)}, timeout=10
    )
    assert reply.status_code == 200, reply.text


def test_the_key_bucket_still_limits_the_real_key(live_server, limits, real_key):
    limits["api.key"] = "2/minute"
    headers = {"X-API-Key": real_key.secret, **from_address(VICTIM)}
    for _ in range(2):
        assert requests.get(f"{live_server.url}/api/v1/users/", headers=headers, timeout=10).status_code == 200
    other = {"X-API-Key": real_key.secret, **from_address("192.0.2.45")}
    assert requests.get(f"{live_server.url}/api/v1/users/", headers=other, timeout=10).status_code == 429


def test_failed_key_attempts_are_limited_per_key_and_address(live_server, limits, real_key):
    limits["api.key_failures"] = "3/minute"
    forged = f"idpk_{real_key.key.public_id}_" + "A" * 43 + "abcdef"
    headers = {"X-API-Key": forged, **from_address(ATTACKER)}
    answers = [
        requests.get(f"{live_server.url}/api/v1/users/", headers=headers, timeout=10).status_code for _ in range(5)
    ]
    assert answers == [401, 401, 401, 429, 429]
