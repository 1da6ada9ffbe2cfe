"""Revocations made in Django admin go through the same audited services as every other path."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from idp.models import AccessToken, Consent, RefreshToken
from tests.factories import make_client, make_machine_client, make_staff, make_user, signed_in_client


@pytest.fixture
def operator(db):
    return make_staff(superuser=True)


def client_credentials_token(client, issued) -> str:
    reply = client.post(
        "/oauth/token/",
        urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": issued.application.client_id,
                "client_secret": issued.client_secret,
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )
    assert reply.status_code == 200, reply.content
    return reply.json()["access_token"]


def introspect(client, issued, token: str) -> dict:
    reply = client.post(
        "/oauth/introspect/",
        urlencode({"token": token, "client_id": issued.application.client_id, "client_secret": issued.client_secret}),
        content_type="application/x-www-form-urlencoded",
    )
    return reply.json()


def test_revoking_access_tokens_in_the_admin_is_audited_with_the_operator_as_actor(client, operator):
    issued = make_machine_client(is_resource_server=True)
    token = client_credentials_token(client, issued)
    assert introspect(client, issued, token)["active"] is True
    access = AccessToken.objects.get(application=issued.application)

    signed_in_client(operator, client=client)
    reply = client.post(
        reverse("admin:idp_accesstoken_changelist"), {"action": "revoke_tokens", "_selected_action": [access.pk]}
    )

    assert reply.status_code == 302
    assert introspect(client, issued, token) == {"active": False}
    [event] = AuditEvent.objects.filter(action="token.revoked")
    assert (event.actor_type, event.actor_id, event.client_id) == (
        "user",
        str(operator.pk),
        issued.application.client_id,
    )
    assert event.data["reason"] == "admin"


def test_withdrawing_a_consent_in_the_admin_revokes_it_through_the_service(client, operator):
    user = make_user()
    issued = make_client()
    Consent.objects.create(user=user, application=issued.application, scope="openid profile")
    consent = Consent.objects.get(user=user)

    signed_in_client(operator, client=client)
    delete_page = client.get(reverse("admin:idp_consent_delete", args=[consent.pk]))
    reply = client.post(
        reverse("admin:idp_consent_changelist"), {"action": "withdraw", "_selected_action": [consent.pk]}
    )

    assert delete_page.status_code == 403, "a plain delete would skip the token revocation and the audit"
    assert reply.status_code == 302
    assert not Consent.objects.filter(pk=consent.pk).exists()
    [event] = AuditEvent.objects.filter(action="consent.revoked")
    assert (event.actor_type, event.actor_id, event.target_id) == (
        "user",
        str(operator.pk),
        issued.application.client_id,
    )
    assert not RefreshToken.objects.filter(user=user, revoked__isnull=True).exists()
