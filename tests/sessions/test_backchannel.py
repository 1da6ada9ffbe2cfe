"""OpenID Connect Back-Channel Logout 1.0 against a real receiver: when a session ends, a real
Celery worker POSTs each client of the session a logout token, which the receiver verifies
against the provider's JWKS fetched over HTTP (joserfc, as a relying party would), claim by claim;
a receiver answering 500 first gets the token again, later. And what a delivery refuses: a
redirect is not followed, a hanging receiver times out, a private address is refused in
production, at registration and at the address actually connected to."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from django.core.exceptions import ValidationError
from joserfc import jwt
from joserfc.jwk import KeySet

import audit
from audit.models import AuditEvent
from idp.models import Application
from idp.sessions import outbound
from idp.sessions.logout import BACKCHANNEL_LOGOUT_EVENT, backchannel_logout_deliver
from idp.sessions.services import user_sessions_end
from tests.api.conftest import (  # noqa: F401 - fixtures
    _fast_password_hashing,
    admin,
    management,
    service_subject,
)
from tests.apikeys.test_worker_kill import Worker, delete_queue, stop
from tests.conftest import REDIRECT_URI
from tests.factories import make_client, relying_party, tokens_at
from tests.ops.processes import queue_name, wait_for, worker_start
from tests.sessions.receiver import Receiver

BACKCHANNEL_PATH = "/backchannel-logout"


@pytest.fixture
def logout_worker(transactional_db, tmp_path, settings) -> Iterator[Worker]:
    """A real worker consuming a queue of its own, to which the provider sends its deliveries;
    retries wait 1 s, 2 s, ... (IDP_LOGOUT_DELIVERY_BACKOFF_SECONDS=1)."""
    queue = queue_name("logout")
    settings.IDP_LOGOUT_QUEUE = queue
    started = worker_start(queue, tmp_path / "worker.log", tmp_path / "paused", IDP_LOGOUT_DELIVERY_BACKOFF_SECONDS="1")
    try:
        yield started
    finally:
        stop(started.process)
        delete_queue(queue)


def verified_logout_token(token: str, *, base_url: str) -> tuple[dict, dict]:
    """(header, claims) of a logout token, its signature verified against the provider's JWKS."""
    metadata = requests.get(f"{base_url}/.well-known/openid-configuration", timeout=10).json()
    jwks = requests.get(metadata["jwks_uri"], timeout=10).json()
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    return dict(decoded.header), dict(decoded.claims)


def test_an_ended_session_sends_each_client_a_verified_logout_token_retrying_after_a_500(
    live_server, signing_key, alice, receiver: Receiver, logout_worker: Worker
):
    issued = make_client(
        backchannel_logout_uri=receiver.uri(BACKCHANNEL_PATH), backchannel_logout_session_required=True
    )
    silent = make_client()  # signed in through the same session, registered no logout URI
    rp = relying_party(live_server.url, issued)
    tokens = tokens_at(rp, alice)
    other = relying_party(live_server.url, silent)
    other.browser = rp.browser
    tokens_at(other, alice)
    sid = rp.verify_id_token(tokens["id_token"], nonce=None)["sid"]
    receiver.script = [500]  # the first attempt fails; the worker tries again

    assert user_sessions_end(user_id=alice.pk, actor=audit.Actor.user(alice), reason="tests") == 1

    delivered = wait_for(lambda: len(receiver.of(BACKCHANNEL_PATH)) >= 2 and receiver.of(BACKCHANNEL_PATH), "2 POSTs")
    first, second = delivered[:2]
    for attempt in (first, second):
        assert attempt.method == "POST"
        assert attempt.headers["content-type"] == "application/x-www-form-urlencoded"
        header, claims = verified_logout_token(attempt.form["logout_token"][0], base_url=live_server.url)
        assert header["typ"] == "logout+jwt"
        assert header["kid"] == signing_key.kid
        assert claims["iss"] == rp.metadata["issuer"]
        assert claims["aud"] == issued.application.client_id
        assert claims["sub"] == str(alice.pk)
        assert claims["sid"] == sid
        assert claims["events"] == {BACKCHANNEL_LOGOUT_EVENT: {}}
        assert "nonce" not in claims
        assert claims["iat"] <= time.time() + 5 < claims["exp"] <= claims["iat"] + 300
        assert claims["jti"]
    assert first.form["logout_token"] != second.form["logout_token"], "each attempt signs a fresh token"

    outcomes = wait_for(
        lambda: (
            list(
                AuditEvent.objects.filter(action__startswith="logout.", client_id=issued.application.client_id)
                .order_by("created_at")
                .values_list("action", "data")
            )
            if AuditEvent.objects.filter(action="logout.delivered").exists()
            else None
        ),
        "the delivery recorded",
    )
    assert [action for action, _ in outcomes] == ["logout.delivery_failed", "logout.delivered"]
    assert outcomes[0][1] | {} == {"attempt": 1, "sid_sent": True, "status": 500, "error": "status", "will_retry": True}
    assert outcomes[1][1]["attempt"] == 2
    assert len(receiver.of(BACKCHANNEL_PATH)) == 2, "one receiver, one client: nothing for the silent client"


@pytest.fixture
def receiving_client(db, receiver):
    return make_client(backchannel_logout_uri=receiver.uri(BACKCHANNEL_PATH))


def deliver(application, **overrides):
    options = {
        "client_id": application.client_id,
        "user_id": 1,
        "sid": "sid-1",
        "issuer": "http://testserver",
        "attempt": 1,
        "will_retry": False,
    }
    return backchannel_logout_deliver(**(options | overrides))


def test_hostile_receiver_redirect_is_not_followed(signing_key, receiving_client, receiver):
    receiver.script = ["redirect"]
    outcome = deliver(receiving_client.application)
    assert not outcome.delivered and outcome.error == "redirect_not_followed" and not outcome.transient
    assert [r.path for r in receiver.received] == [BACKCHANNEL_PATH], "/elsewhere never asked"
    event = AuditEvent.objects.get(action="logout.delivery_failed")
    assert event.data["error"] == "redirect_not_followed" and event.outcome == "failure"


def test_hostile_receiver_that_hangs_times_out(signing_key, receiving_client, receiver, settings):
    settings.IDP_LOGOUT_DELIVERY_TIMEOUT_SECONDS = 1
    receiver.script = ["hang"]
    outcome = deliver(receiving_client.application, will_retry=True)
    assert not outcome.delivered and outcome.error == "timeout" and outcome.transient
    assert AuditEvent.objects.get(action="logout.delivery_failed").data["will_retry"] is True


def test_hostile_loopback_receiver_is_refused_at_the_connected_address_in_production(
    signing_key, receiving_client, receiver, settings
):
    # Registered while private addresses were allowed (development): in production the address
    # the socket connects to is judged at each delivery, and nothing is sent.
    settings.IDP_LOGOUT_ALLOW_PRIVATE_ADDRESSES = False
    outcome = deliver(receiving_client.application)
    assert (outcome.delivered, outcome.error, outcome.transient) == (False, "non_public_address", False)
    assert receiver.received == [], "nothing reached the loopback receiver"
    assert AuditEvent.objects.get(action="logout.delivery_failed").data["error"] == "non_public_address"


def test_hostile_name_resolving_to_loopback_at_delivery_is_refused_before_anything_is_sent(receiver, settings):
    # DNS rebinding: a name that passed registration resolves to 127.0.0.1 when the token is sent.
    # The socket's peer is checked before TLS or a byte of the request.
    settings.IDP_LOGOUT_ALLOW_PRIVATE_ADDRESSES = False
    outcome = outbound.form_post(f"https://localhost:{receiver.port}{BACKCHANNEL_PATH}", {"logout_token": "x"})
    assert (outcome.delivered, outcome.error) == (False, "non_public_address")
    assert receiver.received == []


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("https://10.0.0.7/logout", "non-public"),
        ("https://169.254.169.254/latest/meta-data/", "non-public"),
        ("https://[::1]/logout", "non-public"),
        ("https://[::ffff:127.0.0.1]/logout", "non-public"),
        ("https://localhost/logout", "non-public"),
        ("https://0.0.0.0/logout", "non-public"),
        ("http://127.0.0.1:9999/logout", "non-public"),
        ("http://rp.example.com/logout", "https"),
        ("https://rp.example.com/logout#frag", "fragment"),
        ("https://user:pw@rp.example.com/logout", "user name"),
        ("https://rp.example.com/" + "a" * 2100, "at most"),
        ("javascript:alert(1)", "https"),
        ("https://rp.example.com/lo\x00gout", "control"),
        ("https://rp.example.com:99999/", "valid"),
    ],
)
def test_hostile_logout_uris_are_refused_at_registration_in_production(db, settings, uri, problem):
    settings.IDP_LOGOUT_ALLOW_PRIVATE_ADDRESSES = False
    for field in ("backchannel_logout_uri", "frontchannel_logout_uri"):
        with pytest.raises(ValidationError) as refused:
            make_client(**{field: uri})
        messages = " ".join(refused.value.message_dict[field]).lower()
        assert problem in messages or (problem == "non-public" and "private" in messages), messages


@pytest.mark.parametrize(
    "uri",
    [
        "https://rp.example.com;script-src/logout",  # would end frame-src and start a directive
        "https://rp.example.com,evil/logout",
        "https://rp.example.com'/logout",
        "https://rp_example.com/logout",
        "https://-rp.example.com/logout",
        "https://r\u00e9p.example.com/logout",
    ],
)
def test_hostile_logout_uri_hosts_are_refused_also_where_names_are_not_resolved(db, settings, uri):
    settings.IDP_LOGOUT_ALLOW_PRIVATE_ADDRESSES = True  # development: no resolution, only the syntax
    for field in ("backchannel_logout_uri", "frontchannel_logout_uri"):
        with pytest.raises(ValidationError) as refused:
            make_client(**{field: uri})
        assert "valid host" in " ".join(refused.value.message_dict[field]).lower()


def test_a_public_address_is_accepted_at_registration_in_production(db, settings):
    settings.IDP_LOGOUT_ALLOW_PRIVATE_ADDRESSES = False
    issued = make_client(backchannel_logout_uri="https://8.8.8.8/logout")
    assert issued.application.backchannel_logout_uri == "https://8.8.8.8/logout"


def test_hostile_logout_uris_through_the_management_api_are_a_400(admin, settings):  # noqa: F811
    settings.IDP_LOGOUT_ALLOW_PRIVATE_ADDRESSES = False
    api = admin.api()
    body = {"name": "rp", "client_type": "confidential", "grant": "authorization_code", "redirect_uris": [REDIRECT_URI]}
    for uri in ("https://10.1.2.3/bc", "https://rp.example.com/" + "a" * 2100, "https://rp.example.com/\x00", 7, None):
        for field in ("backchannel_logout_uri", "frontchannel_logout_uri"):
            reply = api.post("/clients/", json=body | {field: uri})
            assert reply.status_code == 400, (field, uri, reply.status_code, reply.text[:200])
            assert reply.json()["error"] == "invalid_request"
    assert not Application.objects.filter(name="rp").exists()
    reply = api.post(
        "/clients/",
        json=body | {"backchannel_logout_uri": "https://8.8.8.8/bc", "backchannel_logout_session_required": True},
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["client"]["backchannel_logout_uri"] == "https://8.8.8.8/bc"
    assert reply.json()["client"]["backchannel_logout_session_required"] is True
