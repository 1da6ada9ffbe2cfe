"""Upstream providers in Django admin: only for staff with the model permissions; the client
secret is write-only and stored encrypted; a role mapping never grants the administrator role or
a role the operator does not hold; hostile form input is a form error, never a 5xx."""

from __future__ import annotations

import pytest

from accounts.services import admin_role_ensure, role_create, role_grant
from idp.federation.client import _secret
from idp.models import UpstreamProvider, UpstreamRoleMapping
from tests.factories import SYSTEM, make_staff, signed_in_client
from tests.hostile import VALUES

pytestmark = pytest.mark.django_db

ADD = "/admin/idp/upstreamprovider/add/"
FIELDS = ["slug", "display_name", "issuer", "client_id", "client_secret", "scopes", "role_claim"]
SECRET = "s3cret-from-the-directory-0123456789"
MODEL_PERMISSIONS = [
    f"idp.{verb}_{model}"
    for verb in ("add", "change", "view", "delete")
    for model in ("upstreamprovider", "upstreamrolemapping")
]


def _form(**overrides: str) -> dict[str, str]:
    data = {
        "slug": "corp",
        "display_name": "Corp Directory",
        "issuer": "https://login.corp.example/",
        "client_id": "idp-downstream",
        "client_secret": SECRET,
        "scopes": "openid email profile",
        "is_enabled": "on",
        "role_claim": "groups",
        "role_mappings-TOTAL_FORMS": "0",
        "role_mappings-INITIAL_FORMS": "0",
        "role_mappings-MIN_NUM_FORMS": "0",
        "role_mappings-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    return data | overrides


def _mapping(value: str, role) -> dict[str, str]:
    return {"role_mappings-TOTAL_FORMS": "1", "role_mappings-0-value": value, "role_mappings-0-role": str(role.pk)}


def test_the_secret_is_write_only_and_encrypted(admin_client):
    reply = admin_client.post(ADD, _form())
    assert reply.status_code == 302, reply.content[:500]
    provider = UpstreamProvider.objects.get()
    assert provider.issuer == "https://login.corp.example"  # as its ID tokens will say it
    assert SECRET not in provider.client_secret_encrypted and _secret(provider) == SECRET
    page = admin_client.get(f"/admin/idp/upstreamprovider/{provider.pk}/change/")
    assert page.status_code == 200 and SECRET.encode() not in page.content
    # Saved again without a secret: the stored one stays.
    kept = admin_client.post(f"/admin/idp/upstreamprovider/{provider.pk}/change/", _form(client_secret=""))
    assert kept.status_code == 302
    provider.refresh_from_db()
    assert _secret(provider) == SECRET


def test_staff_without_the_permission_see_nothing(client):
    staff = make_staff()
    signed_in_client(staff, client=client)
    assert client.get("/admin/idp/upstreamprovider/").status_code == 403
    assert client.post(ADD, _form()).status_code == 403
    assert not UpstreamProvider.objects.exists()


def test_a_mapping_grants_only_roles_the_operator_holds_and_never_the_administrator_role(client, admin_client):
    admin_role = admin_role_ensure(actor=SYSTEM)
    engineer = role_create(name="engineer", permissions=[], actor=SYSTEM)
    refused = admin_client.post(ADD, _form(**_mapping("admins", admin_role)))
    assert refused.status_code == 200 and b"cannot be mapped" in refused.content
    assert not UpstreamProvider.objects.exists()

    staff = make_staff(model_permissions=MODEL_PERMISSIONS)
    signed_in_client(staff, client=client)
    not_held = client.post(ADD, _form(**_mapping("eng", engineer)))
    assert not_held.status_code == 200 and b"you do not hold" in not_held.content
    assert not UpstreamProvider.objects.exists()
    role_grant(role=engineer, user=staff, actor=SYSTEM)
    assert client.post(ADD, _form(**_mapping("eng", engineer))).status_code == 302
    assert UpstreamRoleMapping.objects.get().role == engineer


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("kind", ["nul", "10kb", "html", "crlf", "unicode"])
def test_hostile_admin_fields_are_form_errors(admin_client, field, kind):
    reply = admin_client.post(ADD, _form(**{field: VALUES[kind]}))
    # NUL bytes and oversized bodies: refused before admin (400); the rest: a form error (200).
    assert reply.status_code in (200, 302, 400), reply.status_code
    assert b"Traceback" not in reply.content
    if reply.status_code == 302:  # accepted as the text it is, where text is all it is
        assert field in {"display_name", "client_id", "client_secret", "role_claim"}, field
        assert kind in {"html", "unicode"}
    else:
        assert not UpstreamProvider.objects.exists()


def test_an_upstream_is_changed_only_by_who_holds_what_it_maps(client, admin_client):
    engineer = role_create(name="engineer", permissions=[], actor=SYSTEM)
    assert admin_client.post(ADD, _form(**_mapping("eng", engineer))).status_code == 302
    provider = UpstreamProvider.objects.get()
    staff = make_staff(model_permissions=MODEL_PERMISSIONS)
    signed_in_client(staff, client=client)
    change = f"/admin/idp/upstreamprovider/{provider.pk}/change/"
    # Pointing it at another issuer would hand "engineer" to whoever runs that one.
    hijack = _form(issuer="https://evil.example") | {
        "role_mappings-TOTAL_FORMS": "1",
        "role_mappings-INITIAL_FORMS": "1",
        "role_mappings-0-id": str(UpstreamRoleMapping.objects.get().pk),
        "role_mappings-0-provider": str(provider.pk),
        "role_mappings-0-value": "eng",
        "role_mappings-0-role": str(engineer.pk),
    }
    assert client.post(change, hijack).status_code == 403
    assert client.post(f"/admin/idp/upstreamprovider/{provider.pk}/delete/", {"post": "yes"}).status_code == 403
    provider.refresh_from_db()
    assert provider.issuer == "https://login.corp.example"
    role_grant(role=engineer, user=staff, actor=SYSTEM)
    assert client.post(change, hijack).status_code == 302
