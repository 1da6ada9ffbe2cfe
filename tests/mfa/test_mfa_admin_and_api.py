"""Second factors in Django admin and the management API: who must have one (Role.require_mfa,
Application.require_mfa) round-trips through both and through create_client; resetting a user's
factors is offered only to who holds idp.mfa.reset, and is audited as mfa.reset.

Admin through Django's test client, with a session that proved a second factor (Django admin asks
staff for one: idp.admin_site); the API over the live server with real tokens (tests/api/conftest)."""

from __future__ import annotations

import io
import json
import os
import re
from typing import Any

import pytest
from django.contrib.admin import helpers
from django.core.management import call_command
from django.urls import reverse
from django_otp_webauthn.models import WebAuthnCredential

import audit
from accounts.models import Role
from audit.models import AuditEvent
from idp.mfa import factors
from idp.models import Application, RecoveryCode, TotpDevice
from tests.accounts.test_admin import read_form
from tests.api.conftest import (  # noqa: F401 - fixtures, used by name
    ALL_PERMISSIONS,
    _fast_password_hashing,
    admin,
    error_of,
    management,
    service_subject,
    unique,
)
from tests.factories import make_client, make_staff, make_user, session_authenticated, signed_in_client, totp_device
from tests.hostile import VALUES, refusal_problems

SYSTEM = audit.Actor.system("tests")
MFA_RESET = "idp.mfa.reset"


def admin_session(client: Any, user: Any) -> Any:
    """Django's test client signed in as the user with a password and an authenticator app just
    now, as Django admin requires of staff (idp.admin_site; idp.mfa.signin.AUTH_KEY)."""
    signed_in_client(user, client=client)
    session_authenticated(client, amr=["pwd", "otp", "mfa"])
    return client


def equip(user: Any) -> None:
    """An authenticator app, a passkey and recovery codes."""
    totp_device(user)
    WebAuthnCredential.objects.create(
        user=user, name="Laptop", confirmed=True, credential_id=os.urandom(32), public_key=os.urandom(77)
    )
    factors.recovery_codes_generate(user=user, actor=SYSTEM)


def factor_count(user: Any) -> int:
    return (
        TotpDevice.objects.filter(user=user).count()
        + WebAuthnCredential.objects.filter(user=user).count()
        + RecoveryCode.objects.filter(user=user).count()
    )


# --- Django admin: resetting a user's second factors -----------------------------------------------

USER_MODEL_PERMISSIONS = ["accounts.view_user", "accounts.change_user"]
CHANGELIST = "/admin/accounts/user/"


def post_reset(client: Any, *users: Any) -> Any:
    return client.post(
        CHANGELIST,
        {"action": "reset_second_factors", helpers.ACTION_CHECKBOX_NAME: [user.pk for user in users], "index": 0},
    )


@pytest.mark.parametrize("who", ["staff holding idp.mfa.reset", "superuser"])
def test_admin_resets_second_factors_and_records_it(client, db, who):
    if who == "superuser":
        staff = make_staff(superuser=True)
    else:
        staff = make_staff(permissions=[MFA_RESET], model_permissions=USER_MODEL_PERMISSIONS)
    target, bystander = make_user(), make_user()
    equip(target)
    equip(bystander)
    admin_session(client, staff)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert 'value="reset_second_factors"' in page.content.decode()

    reply = post_reset(client, target)
    assert reply.status_code == 302
    assert factor_count(target) == 0
    assert factor_count(bystander) == 12, "only the selected user"
    event = AuditEvent.objects.get(action="mfa.reset")
    assert (event.actor_type, event.actor_id, event.target_type, event.target_id) == (
        "user",
        str(staff.pk),
        "user",
        str(target.pk),
    )
    assert event.data["factors"] == 2 and event.data["recovery_codes"] > 0


def test_admin_staff_without_the_permission_are_not_offered_the_reset_and_cannot_post_it(client, db):
    staff = make_staff(permissions=["idp.users.read"], model_permissions=USER_MODEL_PERMISSIONS)
    target = make_user()
    equip(target)
    admin_session(client, staff)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert "reset_second_factors" not in page.content.decode()
    reply = post_reset(client, target)
    assert reply.status_code in (200, 302, 403)
    assert factor_count(target) == 12
    assert not AuditEvent.objects.filter(action="mfa.reset").exists()


def test_admin_asks_staff_for_a_second_factor_first(client, db):
    staff = make_staff(permissions=[MFA_RESET], model_permissions=USER_MODEL_PERMISSIONS)
    target = make_user()
    equip(target)
    signed_in_client(staff, client=client, second_factor=False)
    reply = post_reset(client, target)
    assert reply.status_code == 302 and reply["Location"].startswith("/admin/login/")
    onward = client.get(reply["Location"])
    assert onward.status_code == 302 and onward["Location"].startswith("/accounts/login/verify/")
    assert factor_count(target) == 12


# --- Django admin: who must have a second factor -------------------------------------------------


def test_admin_role_require_mfa_round_trips(client, db):
    admin_session(client, make_staff(superuser=True))
    added = client.post(
        reverse("admin:accounts_role_add"),
        {"name": "operators", "description": "", "application": "", "require_mfa": "on", "_save": "Save"},
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    role = Role.objects.get(name="operators")
    assert role.require_mfa is True
    change = reverse("admin:accounts_role_change", args=[role.pk])
    page = client.get(change).content.decode()
    checkbox = re.search(r'<input[^>]*name="require_mfa"[^>]*>', page)
    assert checkbox is not None and "checked" in checkbox.group(0)
    fields = [(name, value) for name, value in read_form(page, "role_form") if name != "require_mfa"]
    changed = client.post(change, dict(fields) | {"_save": "Save"})
    assert changed.status_code == 302, changed.content.decode()[:2000]
    assert Role.objects.get(pk=role.pk).require_mfa is False
    assert AuditEvent.objects.filter(action="admin.changed", target_id=str(role.pk)).exists()
    assert "require_mfa" in client.get(reverse("admin:accounts_role_changelist")).content.decode()


def test_admin_client_require_mfa_round_trips(client, db):
    admin_session(client, make_staff(superuser=True))
    application = make_client().application
    assert application.require_mfa is False
    change = reverse("admin:idp_application_change", args=[application.pk])
    page = client.get(change).content.decode()
    assert 'name="require_mfa"' in page
    fields = read_form(page, "application_form") + [("require_mfa", "on"), ("_save", "Save")]
    data: dict[str, Any] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    reply = client.post(change, data)
    assert reply.status_code == 302, reply.content.decode()[:2000]
    assert Application.objects.get(pk=application.pk).require_mfa is True


# --- create_client ---------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "expected"), [(["--require-mfa"], True), ([], False)])
def test_create_client_sets_require_mfa(db, flags, expected):
    out = io.StringIO()
    call_command(
        "create_client",
        "--name",
        "Console",
        "--type",
        "confidential",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "https://rp.example/cb",
        "--json",
        *flags,
        stdout=out,
    )
    client_id = json.loads(out.getvalue())["client_id"]
    assert Application.objects.get(client_id=client_id).require_mfa is expected


# --- management API -------------------------------------------------------------------------------


@pytest.fixture
def resetter(service_subject):  # noqa: F811 - the fixture imported above
    """A service account holding every management permission, idp.mfa.reset included."""
    subject = service_subject()
    subject.hold([*ALL_PERMISSIONS, MFA_RESET])
    return subject


def test_api_resets_a_users_second_factors_and_records_it(resetter):
    target = make_user()
    equip(target)
    reply = resetter.api().post(f"/users/{target.pk}/mfa-reset/", {"reason": "lost their phone"})
    assert reply.status_code == 204, reply.text
    assert reply.content == b""
    assert factor_count(target) == 0
    event = AuditEvent.objects.get(action="mfa.reset")
    assert (event.actor_type, event.actor_id, event.target_id) == (*resetter.actor, str(target.pk))
    assert event.data["reason"] == "lost their phone"
    again = resetter.api().post(f"/users/{target.pk}/mfa-reset/")
    assert again.status_code == 204
    assert AuditEvent.objects.filter(action="mfa.reset").count() == 1, "a reset of nothing records nothing"


def test_api_reset_needs_the_permission(service_subject):  # noqa: F811 - the fixture imported above
    subject = service_subject()
    subject.hold([permission for permission in ALL_PERMISSIONS if permission != MFA_RESET])
    target = make_user()
    equip(target)
    reply = subject.api().post(f"/users/{target.pk}/mfa-reset/", {})
    assert reply.status_code == 403
    assert reply.json() == {"error": "access_denied", "error_description": f"requires permission {MFA_RESET}"}
    assert factor_count(target) == 12
    assert not AuditEvent.objects.filter(action="mfa.reset").exists()


def test_api_reset_of_a_user_holding_more_than_the_caller_is_refused(service_subject):  # noqa: F811
    # Whoever signs in with the user's password next sets up the new factor: a reset must not
    # open an account stronger than the resetter's own (here: an administrator's).
    from accounts.models import ADMIN_ROLE, Role
    from accounts.services import role_grant

    subject = service_subject()
    subject.hold([MFA_RESET])
    target = make_user()
    role_grant(role=Role.objects.get(name=ADMIN_ROLE, application__isnull=True), user=target, actor=SYSTEM)
    equip(target)
    reply = subject.api().post(f"/users/{target.pk}/mfa-reset/", {})
    assert reply.status_code == 403 and reply.json()["error"] == "access_denied"
    assert factor_count(target) == 12
    assert not AuditEvent.objects.filter(action="mfa.reset").exists()


def test_the_admin_role_always_requires_a_second_factor(admin):  # noqa: F811 - the fixture imported above
    from accounts.models import ADMIN_ROLE, Role

    role = Role.objects.get(name=ADMIN_ROLE, application__isnull=True)
    assert role.require_mfa is True  # migration accounts.0008
    reply = admin.api().patch(f"/roles/{role.pk}/", {"require_mfa": False})
    assert reply.status_code == 403
    assert Role.objects.get(pk=role.pk).require_mfa is True


def test_api_reset_of_an_unknown_user_is_a_404(resetter):
    for user_id in (999_999, 999_999_999_999_999_999):
        reply = resetter.api().post(f"/users/{user_id}/mfa-reset/", {})
        assert reply.status_code == 404
        assert reply.json() == {"error": "not_found", "error_description": "no such object"}


def test_hostile_mfa_reset_bodies_are_refused_and_change_nothing(resetter):
    target = make_user()
    equip(target)
    api = resetter.api()
    path = f"/users/{target.pk}/mfa-reset/"
    bodies: list[tuple[str, Any]] = [
        ("reason 201 characters", {"reason": "x" * 201}),
        ("reason 10KB", {"reason": VALUES["10kb"]}),
        ("reason with NUL", {"reason": VALUES["nul"]}),
        ("reason with a control character", {"reason": "a\x1fb"}),
        ("reason a number", {"reason": 12}),
        ("reason null", {"reason": None}),
        ("reason a list", {"reason": ["a"]}),
        ("unknown field", {"reason": "x", "is_staff": True}),
        ("a list body", ["reason"]),
        ("a string body", "reason"),
    ]
    found = []
    for label, body in bodies:
        found += refusal_problems(label, api.post(path, body))
    for label, raw, content_type in [
        ("malformed JSON", b'{"reason": ', "application/json"),
        ("not UTF-8", b'{"reason": "\xff\xfe"}', "application/json"),
        ("a form body", b"reason=x", "application/x-www-form-urlencoded"),
    ]:
        found += refusal_problems(label, api.request("POST", path, data=raw, headers={"Content-Type": content_type}))
    assert found == []
    assert factor_count(target) == 12
    assert not AuditEvent.objects.filter(action="mfa.reset").exists()


def test_api_role_require_mfa_round_trips(admin):  # noqa: F811 - the fixture imported above
    api = admin.api()
    created = api.post("/roles/", {"name": unique("ops"), "permissions": ["idp.users.read"], "require_mfa": True})
    assert created.status_code == 201, created.text
    role = created.json()
    assert role["require_mfa"] is True
    assert api.get(f"/roles/{role['id']}/").json()["require_mfa"] is True
    plain = api.post("/roles/", {"name": unique("plain")})
    assert plain.status_code == 201 and plain.json()["require_mfa"] is False

    off = api.patch(f"/roles/{role['id']}/", {"require_mfa": False})
    assert off.status_code == 200, off.text
    assert off.json()["require_mfa"] is False
    assert Role.objects.get(pk=role["id"]).require_mfa is False
    described = api.patch(f"/roles/{role['id']}/", {"description": "kept as it was"})
    assert described.json()["require_mfa"] is False, "a change without require_mfa leaves it"
    changes = [
        event.data
        for event in AuditEvent.objects.filter(action="role.updated", target_id=str(role["id"])).order_by("id")
    ]
    created_with = AuditEvent.objects.get(action="role.created", target_id=str(role["id"])).data
    assert created_with["require_mfa"] is True
    assert {"name": role["name"], "require_mfa": False} in changes
    for hostile in ("yes", 1, None, [True]):
        reply = api.patch(f"/roles/{role['id']}/", {"require_mfa": hostile})
        assert reply.status_code == 400 and error_of(reply) == "invalid_request", hostile
    assert Role.objects.get(pk=role["id"]).require_mfa is False


def test_api_role_require_mfa_needs_the_roles_permissions(service_subject, admin):  # noqa: F811 - the fixture imported above
    role = admin.api().post("/roles/", {"name": unique("vault"), "permissions": ["idp.users.manage"]}).json()
    subject = service_subject()
    subject.hold(["idp.roles.read", "idp.roles.manage"])
    reply = subject.api().patch(f"/roles/{role['id']}/", {"require_mfa": True})
    assert reply.status_code == 403
    assert Role.objects.get(pk=role["id"]).require_mfa is False


def test_api_client_require_mfa_round_trips(admin):  # noqa: F811 - the fixture imported above
    api = admin.api()
    body = {
        "name": "Console",
        "client_type": "confidential",
        "grant": "authorization_code",
        "redirect_uris": ["https://rp.example/cb"],
        "scopes": ["openid"],
    }
    created = api.post("/clients/", {**body, "require_mfa": True})
    assert created.status_code == 201, created.text
    client_id = created.json()["client"]["client_id"]
    assert created.json()["client"]["require_mfa"] is True
    assert Application.objects.get(client_id=client_id).require_mfa is True
    listed = {item["client_id"]: item for item in api.get("/clients/").json()["results"]}
    assert listed[client_id]["require_mfa"] is True
    plain = api.post("/clients/", body).json()["client"]
    assert plain["require_mfa"] is False
    for hostile in ("true", 1, None):
        reply = api.post("/clients/", {**body, "require_mfa": hostile})
        assert reply.status_code == 400 and error_of(reply) == "invalid_request", hostile
