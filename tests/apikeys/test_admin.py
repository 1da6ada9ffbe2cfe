"""API keys in Django admin: a read-only register whose one write, revocation, is audited and
needs the change permission."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apikeys.models import ApiKey
from apikeys.selectors import apikey_verify
from audit.models import AuditEvent
from tests.factories import make_staff, signed_in_client

CHANGELIST = reverse("admin:apikeys_apikey_changelist")


def revoke_through_admin(client, key: ApiKey):
    return client.post(CHANGELIST, {"action": "revoke", "_selected_action": [str(key.pk)]})


def test_a_staff_member_with_the_change_permission_revokes_keys_and_it_is_audited(client, admin_key):
    operator = make_staff(model_permissions=["apikeys.view_apikey", "apikeys.change_apikey"])
    signed_in_client(operator, client=client)
    assert apikey_verify(presented=admin_key.secret) is not None

    reply = revoke_through_admin(client, admin_key.key)

    assert reply.status_code == 302
    assert apikey_verify(presented=admin_key.secret) is None
    [event] = AuditEvent.objects.filter(action="apikey.revoked", target_id=admin_key.key.public_id)
    assert (event.actor_type, event.actor_id) == ("user", str(operator.pk))


def test_viewing_keys_does_not_allow_revoking_them(client, admin_key):
    signed_in_client(make_staff(model_permissions=["apikeys.view_apikey"]), client=client)

    listing = client.get(CHANGELIST)
    assert listing.status_code == 200
    assert admin_key.key.public_id in listing.content.decode()
    assert admin_key.secret not in listing.content.decode()

    revoke_through_admin(client, admin_key.key)
    assert ApiKey.objects.get(pk=admin_key.key.pk).revoked_at is None
    assert not AuditEvent.objects.filter(action="apikey.revoked").exists()


@pytest.mark.parametrize("url", ["admin:apikeys_apikey_add", "admin:apikeys_apikey_delete"])
def test_admin_neither_issues_nor_deletes_keys(client, admin_key, url):
    every = ["apikeys.view_apikey", "apikeys.change_apikey", "apikeys.add_apikey", "apikeys.delete_apikey"]
    signed_in_client(make_staff(model_permissions=every), client=client)
    args = [] if url.endswith("add") else [admin_key.key.pk]
    assert client.get(reverse(url, args=args)).status_code == 403
    assert ApiKey.objects.filter(pk=admin_key.key.pk).exists()
