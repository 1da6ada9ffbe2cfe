"""The dashboard's security page (/dashboard/security/), through Django's test client on the real
database: it lists a user's factors; each action changes them only with a fresh second factor
(or, for a first factor, a signed-in session), answers with post/redirect/get or, for recovery
codes, once and no-store; someone else's device is a 404; hostile input is a 4xx, never a 5xx."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp_webauthn.models import WebAuthnCredential

import audit
from accounts.services import role_create, role_grant
from audit.models import AuditEvent
from idp.mfa import factors, totp
from idp.mfa.levels import Level, level_of_amr
from idp.mfa.signin import AUTH_KEY
from idp.models import RecoveryCode, TotpDevice
from tests.factories import make_user, session_authenticated, signed_in_client, totp_device
from tests.hostile import VALUES

SYSTEM = audit.Actor.system("tests")
PAGE = "/dashboard/security/"
VERIFY = f"/accounts/login/verify/?next={PAGE.replace('/', '%2F')}"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Argon2 is slow by design; these tests are about the page, not password storage."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]


def passkey(user: Any, name: str = "Laptop", **fields: Any) -> WebAuthnCredential:
    """A registered passkey, as django-otp-webauthn leaves one (the key material is never checked here)."""
    return WebAuthnCredential.objects.create(
        user=user, name=name, confirmed=True, credential_id=os.urandom(32), public_key=os.urandom(77), **fields
    )


def code_of(seed: bytes) -> str:
    return f"{TOTP(seed).token():06d}"


def snapshot(user: Any) -> dict[str, Any]:
    """Everything the page can change about a user's factors."""
    return {
        "apps": sorted(TotpDevice.objects.filter(user=user).values_list("pk", "confirmed", "secret_encrypted")),
        "passkeys": sorted(WebAuthnCredential.objects.filter(user=user).values_list("pk", "name", "confirmed")),
        "codes": sorted(RecoveryCode.objects.filter(user=user).values_list("digest", "used_at")),
    }


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def equipped(db):
    """A user with an authenticator app, two passkeys and a set of recovery codes."""
    user = make_user()
    device, seed = totp_device(user)
    keys = [passkey(user, "Laptop"), passkey(user, "Phone", backup_eligible=True)]
    factors.recovery_codes_generate(user=user, actor=SYSTEM)
    return {"user": user, "app": device, "seed": seed, "passkeys": keys}


def fresh(client, user):
    """Signed in with a password and an authenticator app just now."""
    return signed_in_client(user, client=client)


# --- the page ------------------------------------------------------------------------------------


def test_signed_out_visitors_are_sent_to_sign_in(client, db):
    reply = client.get(PAGE)
    assert reply.status_code == 302
    assert reply["Location"].startswith(reverse("login"))


def test_the_page_lists_the_users_factors_and_not_anyone_elses(client, equipped):
    user = equipped["user"]
    TotpDevice.objects.filter(pk=equipped["app"].pk).update(last_used_at=timezone.now())
    stranger = make_user()
    passkey(stranger, "Stranger's key")
    reply = fresh(client, user).get(PAGE)
    assert reply.status_code == 200
    assert "no-store" in reply["Cache-Control"]
    page = reply.content.decode()
    assert 'id="authenticator-app"' in page and "Remove the authenticator app" in page
    assert "Laptop" in page and "Phone" in page and "Syncs between your devices" in page
    assert "Stranger" not in page
    assert f'<span id="recovery-codes-left">{settings.MFA_RECOVERY_CODES}</span>' in page
    assert f'href="{PAGE}" aria-current="page">Security</a>' in page, "the dashboard nav links the page"
    assert 'id="totp-secret"' not in page, "no secret on the page of a user whose app is set up"


# --- the fresh second factor ------------------------------------------------------------------


def _actions(world: dict[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    key = world["passkeys"][0].pk
    return {
        "app-start": (reverse("security-app-start"), {}),
        "app-confirm": (reverse("security-app-confirm"), {"code": "123456"}),
        "app-remove": (reverse("security-app-remove"), {}),
        "passkey-rename": (reverse("security-passkey-rename", args=[key]), {"name": "Renamed"}),
        "passkey-remove": (reverse("security-passkey-remove", args=[key]), {}),
        "recovery-codes": (reverse("security-recovery-codes"), {}),
    }


ACTIONS = ["app-start", "app-confirm", "app-remove", "passkey-rename", "passkey-remove", "recovery-codes"]


@pytest.mark.parametrize("session", ["password only", "second factor too long ago", "no record of it"])
@pytest.mark.parametrize("action", ACTIONS)
def test_changes_need_a_fresh_second_factor(client, equipped, session, action):
    user = equipped["user"]
    signed_in_client(user, client=client)
    if session == "password only":
        session_authenticated(client, amr=["pwd"])
    elif session == "second factor too long ago":
        session_authenticated(client, amr=["pwd", "otp", "mfa"], seconds_ago=settings.MFA_FRESH_SECONDS + 5)
    else:
        stored = client.session
        del stored[AUTH_KEY]  # a session from before second factors: a password at the last sign-in
        stored.save()
    before, events = snapshot(user), AuditEvent.objects.count()
    path, data = _actions(equipped)[action]
    reply = client.post(path, data)
    assert reply.status_code == 302
    assert reply["Location"] == VERIFY, "to the second step, and back to the page"
    assert snapshot(user) == before
    assert AuditEvent.objects.count() == events


def test_a_get_never_changes_anything(client, equipped):
    user = equipped["user"]
    fresh(client, user)
    before = snapshot(user)
    for action in ACTIONS:
        path, _ = _actions(equipped)[action]
        assert client.get(path).status_code == 405, action
    assert snapshot(user) == before


# --- the authenticator app ---------------------------------------------------------------------


def test_a_first_app_needs_only_a_signed_in_session_and_comes_with_recovery_codes(client, db):
    user = make_user()
    signed_in_client(user, client=client, second_factor=False)

    started = client.post(reverse("security-app-start"))
    assert (started.status_code, started["Location"]) == (302, PAGE)
    page = client.get(PAGE).content.decode()
    assert 'id="totp-secret"' in page and "<svg" in page, "the QR code and the secret to type in"
    device = TotpDevice.objects.get(user=user, confirmed=False)
    seed = totp.seed_decrypt(device)
    assert totp.seed_base32(seed) in page

    wrong = client.post(reverse("security-app-confirm"), {"code": "000000" if code_of(seed) != "000000" else "111111"})
    assert wrong.status_code == 400
    assert "That code is not right" in wrong.content.decode()
    assert not TotpDevice.objects.get(pk=device.pk).confirmed

    confirmed = client.post(reverse("security-app-confirm"), {"code": code_of(seed)})
    assert confirmed.status_code == 200
    assert "no-store" in confirmed["Cache-Control"]
    body = confirmed.content.decode()
    assert body.count("<li><code>") == settings.MFA_RECOVERY_CODES
    assert TotpDevice.objects.get(pk=device.pk).confirmed
    assert RecoveryCode.objects.filter(user=user, used_at__isnull=True).count() == settings.MFA_RECOVERY_CODES
    assert level_of_amr(client.session[AUTH_KEY]["amr"]) >= Level.MFA, "the first code proved the app"
    actions = list(AuditEvent.objects.filter(target_id=str(user.pk)).values_list("action", flat=True))
    assert {"mfa.enrolled", "mfa.recovery_codes_regenerated"} <= set(actions)

    # Now that the user has a factor, a session without a fresh one may change nothing.
    session_authenticated(client, amr=["pwd"])
    assert client.post(reverse("security-app-remove"))["Location"] == VERIFY
    assert TotpDevice.objects.filter(pk=device.pk).exists()


def test_an_app_beside_a_passkey_needs_a_fresh_factor_then_is_added(client, db):
    user = make_user()
    passkey(user)
    factors.recovery_codes_generate(user=user, actor=SYSTEM)
    signed_in_client(user, client=client, second_factor=False)
    assert client.post(reverse("security-app-start"))["Location"] == VERIFY
    assert not TotpDevice.objects.filter(user=user).exists()

    session_authenticated(client, amr=["pwd", "hwk", "mfa"])
    assert client.post(reverse("security-app-start"))["Location"] == PAGE
    seed = totp.seed_decrypt(TotpDevice.objects.get(user=user))
    reply = client.post(reverse("security-app-confirm"), {"code": code_of(seed)}, follow=True)
    assert reply.redirect_chain == [(PAGE, 302)], "the user has recovery codes: no new set, back to the page"
    assert "Your authenticator app is set up." in reply.content.decode()
    assert TotpDevice.objects.get(user=user).confirmed


def test_removing_the_app_with_a_fresh_factor(client, equipped):
    user = equipped["user"]
    reply = fresh(client, user).post(reverse("security-app-remove"), follow=True)
    assert reply.redirect_chain == [(PAGE, 302)]
    assert "Your authenticator app is removed." in reply.content.decode()
    assert not TotpDevice.objects.filter(user=user).exists()
    assert WebAuthnCredential.objects.filter(user=user).count() == 2, "the passkeys stay"
    event = AuditEvent.objects.filter(action="mfa.removed").get()
    assert (event.actor_id, event.target_id, event.data["factor"]) == (str(user.pk), str(user.pk), "totp")


def test_the_last_factor_of_a_user_who_must_have_one_stays(client, db):
    user = make_user()
    role = role_create(name="operators", actor=SYSTEM, require_mfa=True)
    role_grant(role=role, user=user, actor=SYSTEM)
    device, _ = totp_device(user)
    factors.recovery_codes_generate(user=user, actor=SYSTEM)
    before = snapshot(user)
    reply = fresh(client, user).post(reverse("security-app-remove"))
    assert (reply.status_code, reply["Location"]) == (302, PAGE)
    assert any("last second factor" in text for text in messages_of(reply))
    assert snapshot(user) == before
    assert not AuditEvent.objects.filter(action="mfa.removed").exists()


def test_the_last_factor_of_a_user_who_need_not_have_one_goes_with_the_codes(client, db):
    user = make_user()
    totp_device(user)
    factors.recovery_codes_generate(user=user, actor=SYSTEM)
    reply = fresh(client, user).post(reverse("security-app-remove"))
    assert reply.status_code == 302
    assert snapshot(user) == {"apps": [], "passkeys": [], "codes": []}


def test_removing_an_app_that_is_not_there_is_a_404(client, db):
    user = make_user()
    passkey(user)
    assert fresh(client, user).post(reverse("security-app-remove")).status_code == 404


# --- passkeys -------------------------------------------------------------------------------------


def test_renaming_and_removing_a_passkey(client, equipped):
    user = equipped["user"]
    laptop, phone = equipped["passkeys"]
    fresh(client, user)
    renamed = client.post(reverse("security-passkey-rename", args=[laptop.pk]), {"name": "  Work laptop  "})
    assert (renamed.status_code, renamed["Location"]) == (302, PAGE)
    assert WebAuthnCredential.objects.get(pk=laptop.pk).name == "Work laptop"

    removed = client.post(reverse("security-passkey-remove", args=[phone.pk]))
    assert (removed.status_code, removed["Location"]) == (302, PAGE)
    assert not WebAuthnCredential.objects.filter(pk=phone.pk).exists()
    event = AuditEvent.objects.filter(action="mfa.removed").get()
    assert event.data == {"factor": "webauthn", "device": phone.pk}


@pytest.mark.parametrize("action", ["security-passkey-rename", "security-passkey-remove"])
def test_someone_elses_passkey_or_none_is_a_404_and_changes_nothing(client, equipped, action):
    user = equipped["user"]
    stranger = make_user()
    theirs = passkey(stranger, "Theirs")
    passkey(stranger, "Their other")
    before, theirs_before = snapshot(user), snapshot(stranger)
    fresh(client, user)
    for credential_id in (theirs.pk, 999_999_999):
        reply = client.post(reverse(action, args=[credential_id]), {"name": "Mine now"})
        assert reply.status_code == 404, credential_id
    assert snapshot(user) == before and snapshot(stranger) == theirs_before


# --- recovery codes --------------------------------------------------------------------------


def test_new_recovery_codes_are_shown_once_and_replace_the_old_set(client, equipped):
    user = equipped["user"]
    old = set(RecoveryCode.objects.filter(user=user).values_list("digest", flat=True))
    reply = fresh(client, user).post(reverse("security-recovery-codes"))
    assert reply.status_code == 200
    assert "no-store" in reply["Cache-Control"]
    body = reply.content.decode()
    assert body.count("<li><code>") == settings.MFA_RECOVERY_CODES
    new = set(RecoveryCode.objects.filter(user=user).values_list("digest", flat=True))
    assert len(new) == settings.MFA_RECOVERY_CODES and not new & old
    assert AuditEvent.objects.filter(action="mfa.recovery_codes_regenerated", target_id=str(user.pk)).count() == 2
    page = client.get(PAGE).content.decode()
    assert "<li><code>" not in page, "the page itself never shows codes"


def test_recovery_codes_without_a_factor_are_refused(client, db):
    user = make_user()
    reply = signed_in_client(user, client=client, second_factor=False).post(reverse("security-recovery-codes"))
    assert (reply.status_code, reply["Location"]) == (302, PAGE)
    assert not RecoveryCode.objects.filter(user=user).exists()


# --- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize("label", sorted(VALUES))
def test_hostile_passkey_names_and_codes_are_refused_or_inert(client, equipped, label):
    user = equipped["user"]
    laptop = equipped["passkeys"][0]
    value = VALUES[label]
    fresh(client, user)
    reply = client.post(reverse("security-passkey-rename", args=[laptop.pk]), {"name": value})
    assert reply.status_code in (302, 400), (label, reply.status_code)
    name = WebAuthnCredential.objects.get(pk=laptop.pk).name
    if reply.status_code == 400:
        assert name == "Laptop"
    else:
        assert name == value.strip()[:64] and "\x00" not in name

    TotpDevice.objects.filter(user=user).delete()
    assert client.post(reverse("security-app-start")).status_code == 302
    before = snapshot(user)
    reply = client.post(reverse("security-app-confirm"), {"code": value})
    assert reply.status_code == 400, (label, reply.status_code)
    assert snapshot(user) == before


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/dashboard/security/passkeys/abc/rename/", {"name": "x"}),
        ("/dashboard/security/passkeys/-1/remove/", {}),
        ("/dashboard/security/passkeys/0/remove/", {}),
        ("/dashboard/security/passkeys/" + "9" * 40 + "/rename/", {"name": "x"}),
        ("/dashboard/security/passkeys/1%00/remove/", {}),
        ("/dashboard/security/passkeys/999999999999999999/remove/", {}),
    ],
)
def test_hostile_passkey_ids_are_404s(client, equipped, path, data):
    user = equipped["user"]
    before = snapshot(user)
    assert fresh(client, user).post(path, data).status_code == 404
    assert snapshot(user) == before


def test_hostile_missing_and_oversized_fields_are_4xx(client, equipped):
    user = equipped["user"]
    laptop = equipped["passkeys"][0]
    fresh(client, user)
    before = snapshot(user)
    assert client.post(reverse("security-passkey-rename", args=[laptop.pk]), {}).status_code == 400
    assert client.post(reverse("security-passkey-rename", args=[laptop.pk]), {"name": "x" * 65}).status_code == 400
    assert client.post(reverse("security-passkey-rename", args=[laptop.pk]), {"name": "   "}).status_code == 400
    assert snapshot(user) == before
    # No app waiting to be confirmed: a code is refused with a message, nothing else.
    reply = client.post(reverse("security-app-confirm"), {})
    assert (reply.status_code, reply["Location"]) == (302, PAGE)
    assert snapshot(user) == before
