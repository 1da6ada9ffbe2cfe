"""Clients through the API: registration hands out the secret once; rotation keeps the old secret
working for the grace period asked for, then only the new one; disabling stops the client."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from audit.models import AuditEvent
from idp.models import Application
from tests.factories import make_machine_client, make_public_client


def token_reply(live_server, client_id: str, secret: str, how: str) -> requests.Response:
    """A client_credentials token request authenticated with this secret, Basic or in the body."""
    url = f"{live_server.url}/oauth/token/"
    if how == "basic":
        return requests.post(url, data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10)
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return requests.post(url, data=data, timeout=10)


def works(live_server, client_id: str, secret: str) -> bool:
    """Whether the secret authenticates the client, both ways DOT accepts one; both must agree."""
    answers = {how: token_reply(live_server, client_id, secret, how) for how in ("basic", "body")}
    outcomes = {how: reply.status_code for how, reply in answers.items()}
    assert set(outcomes.values()) in ({200}, {401}), outcomes
    return outcomes["basic"] == 200


@pytest.fixture
def machine(db):
    return make_machine_client(is_resource_server=True)


def test_a_rotated_secret_keeps_working_for_the_grace_period_then_stops(live_server, admin, machine):
    client_id, old = machine.application.client_id, machine.client_secret
    before = timezone.now()

    reply = admin.api().post(f"/clients/{client_id}/rotate-secret/", {"grace_seconds": 3600})

    assert reply.status_code == 200, reply.text
    assert reply.headers["Cache-Control"] == "no-store"
    body = reply.json()
    new = body["client_secret"]
    assert set(body) == {"client_id", "client_secret", "previous_secret_expires_at"}
    assert new != old and len(new) >= 43
    stored = Application.objects.get(pk=machine.application.pk)
    assert stored.client_secret.startswith("hmac_sha256$") and stored.previous_client_secret.startswith("hmac_sha256$")
    assert new not in stored.client_secret and old not in stored.previous_client_secret
    expires_at = stored.previous_client_secret_expires_at
    assert before + timedelta(seconds=3600) <= expires_at <= timezone.now() + timedelta(seconds=3600)

    assert works(live_server, client_id, new)
    assert works(live_server, client_id, old), "the old secret works during the grace period"
    assert not works(live_server, client_id, "not-the-secret")
    introspection = requests.post(
        f"{live_server.url}/oauth/introspect/", data={"token": "x"}, auth=(client_id, old), timeout=10
    )
    assert introspection.status_code == 200, "every client-authenticated endpoint accepts it"

    # The grace period ends (moved into the past rather than waited for, saved as any change to a
    # client is, so the cached copy of the client goes stale with it).
    stored = Application.objects.get(pk=stored.pk)
    stored.previous_client_secret_expires_at = timezone.now()
    stored.save(update_fields=["previous_client_secret_expires_at"])
    assert not works(live_server, client_id, old), "the old secret stops when the grace period ends"
    assert works(live_server, client_id, new)

    rotation = AuditEvent.objects.get(action="client.secret_rotated")
    assert (rotation.actor_type, rotation.actor_id) == admin.actor
    assert rotation.target_id == client_id and rotation.data == {"grace_seconds": 3600}
    assert old not in str(rotation.data) and new not in str(rotation.data)


def test_rotating_without_grace_stops_the_old_secret_at_once(live_server, admin, machine):
    client_id, old = machine.application.client_id, machine.client_secret
    reply = admin.api().post(f"/clients/{client_id}/rotate-secret/", {"grace_seconds": 0})
    assert reply.status_code == 200
    assert reply.json()["previous_secret_expires_at"] is None
    assert not works(live_server, client_id, old)
    assert works(live_server, client_id, reply.json()["client_secret"])


def test_rotating_again_ends_the_first_grace_period(live_server, admin, machine):
    client_id, first = machine.application.client_id, machine.client_secret
    api = admin.api()
    second = api.post(f"/clients/{client_id}/rotate-secret/", {"grace_seconds": 600}).json()["client_secret"]
    third = api.post(f"/clients/{client_id}/rotate-secret/", {"grace_seconds": 600}).json()["client_secret"]
    assert [works(live_server, client_id, secret) for secret in (first, second, third)] == [False, True, True]


def test_the_grace_period_is_zero_to_thirty_days(admin, machine):
    stored = Application.objects.get(pk=machine.application.pk).client_secret
    for grace_seconds in (-1, 30 * 24 * 3600 + 1, "60", 1.5, None, True):
        reply = admin.api().post(
            f"/clients/{machine.application.client_id}/rotate-secret/", {"grace_seconds": grace_seconds}
        )
        assert reply.status_code == 400, grace_seconds
        assert reply.json()["error_description"].startswith("grace_seconds:")
    missing = admin.api().post(f"/clients/{machine.application.client_id}/rotate-secret/", {})
    assert missing.json()["error_description"] == "grace_seconds: This field is required."
    assert Application.objects.get(pk=machine.application.pk).client_secret == stored


def test_a_public_client_has_no_secret_to_rotate(admin):
    public = make_public_client().application
    reply = admin.api().post(f"/clients/{public.client_id}/rotate-secret/", {"grace_seconds": 60})
    assert reply.status_code == 400
    assert reply.json()["error_description"] == "client_id: only a confidential client has a secret"


def test_a_registered_client_gets_its_secret_once_and_lists_never_show_one(live_server, admin):
    api = admin.api()
    reply = api.post(
        "/clients/",
        {
            "name": "Billing",
            "client_type": "confidential",
            "grant": "authorization_code",
            "redirect_uris": ["https://billing.example.com/cb"],
            "post_logout_redirect_uris": ["https://billing.example.com/"],
            "scopes": ["openid", "profile"],
            "require_pkce": True,
        },
    )
    assert reply.status_code == 201, reply.text
    assert reply.headers["Cache-Control"] == "no-store"
    client, secret = reply.json()["client"], reply.json()["client_secret"]
    assert client["grant"] == "authorization_code" and client["scopes"] == ["openid", "profile"]
    assert client["redirect_uris"] == ["https://billing.example.com/cb"] and client["require_pkce"] is True
    stored = Application.objects.get(client_id=client["client_id"])
    assert stored.client_secret.startswith("hmac_sha256$") and secret not in stored.client_secret
    created = AuditEvent.objects.get(action="client.created", client_id=client["client_id"])
    assert (created.actor_type, created.actor_id) == admin.actor

    listed = api.get("/clients/?name=billing")
    assert listed.status_code == 200
    assert [entry["client_id"] for entry in listed.json()["results"]] == [client["client_id"]]
    for entry in api.get("/clients/").json()["results"]:
        assert "client_secret" not in entry and not any(
            "secret" in key for key in entry if key != "previous_secret_expires_at"
        )
    assert secret not in api.get("/clients/").text
    assert "hmac_sha256" not in api.get("/clients/").text

    refused = api.post(
        "/clients/",
        {"name": "Bad", "client_type": "confidential", "grant": "authorization_code",
         "redirect_uris": ["http://evil.example/cb"]},
    )  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["error_description"].startswith("redirect_uris:")


def test_a_disabled_client_gets_no_tokens_and_disabling_twice_records_once(live_server, admin, machine):
    client_id = machine.application.client_id
    assert works(live_server, client_id, machine.client_secret)
    api = admin.api()

    first = api.post(f"/clients/{client_id}/disable/", {"reason": "retired"})
    second = api.post(f"/clients/{client_id}/disable/", {})

    assert first.status_code == second.status_code == 200
    assert first.json()["is_active"] is False
    assert not works(live_server, client_id, machine.client_secret)
    disabled = AuditEvent.objects.filter(action="client.disabled")
    assert [(event.actor_type, event.actor_id, event.target_id, event.data) for event in disabled] == [
        (*admin.actor, client_id, {"reason": "retired"})
    ]
