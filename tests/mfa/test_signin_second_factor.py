"""Signing in with a second factor, through the real sign-in pages of a live server, as a relying
party (authlib) sees it: amr and acr in the ID token and in introspection, enforcement by role, by
client and by the request (acr_values, claims), step-up, prompt=login and max_age, lockout and
audit of the second step."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from audit.models import AuditEvent
from idp.mfa.levels import ACR_MFA, ACR_PWD
from idp.models import Grant, TotpDevice
from tests.factories import USER_PASSWORD, make_client, make_user, relying_party, role_with, totp_device
from tests.mfa.codes import totp_code
from tests.relying_party import parse_form

pytestmark = pytest.mark.django_db(transaction=True)


def _actions(user) -> list[str]:
    return list(AuditEvent.objects.filter(target_id=str(user.pk)).order_by("id").values_list("action", flat=True))


def _to_second_step(rp, user, **extra):
    """Start an authorization request and pass the password: the reply is the page that follows."""
    url = rp.authorization_url(**extra)
    reply = rp.follow(
        rp.browser.get(url, allow_redirects=False, timeout=10),
        username=user.username,
        password=USER_PASSWORD,
        consent=None,
    )
    return reply


def _post_code(rp, page, *, method: str, code: str) -> requests.Response:
    _, fields = parse_form(page.text)
    fields.update(method=method, code=code)
    return rp.browser.post(urljoin(page.url, "/accounts/login/verify/"), data=fields, allow_redirects=False, timeout=10)


def test_a_user_with_an_authenticator_app_signs_in_with_both_and_the_id_token_says_so(rp, alice):
    _device, seed = totp_device(alice)
    result = rp.authorize(username=alice.username, password=USER_PASSWORD, second_factor=lambda: totp_code(seed))
    tokens = rp.exchange(result)
    claims = rp.verify_id_token(tokens["id_token"], nonce=result.nonce)
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["acr"] == ACR_MFA
    assert abs(claims["auth_time"] - time.time()) < 60
    # Introspection of the access token carries the same (RFC 7662, to the resource server).
    answer = requests.post(
        rp.metadata["introspection_endpoint"],
        data={"token": tokens["access_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    ).json()
    assert answer["active"] and answer["acr"] == ACR_MFA and answer["amr"] == ["pwd", "otp", "mfa"]
    assert answer["auth_time"] == claims["auth_time"]
    # A refreshed ID token tells the same authentication.
    refreshed = rp.session(token=tokens).refresh_token(rp.metadata["token_endpoint"])
    again = rp.verify_id_token(refreshed["id_token"], nonce=None)
    assert (again["amr"], again["acr"], again["auth_time"]) == (claims["amr"], claims["acr"], claims["auth_time"])
    methods = AuditEvent.objects.filter(action="login.succeeded", target_id=str(alice.pk)).last().data
    assert methods["methods"] == ["pwd", "otp", "mfa"]


def test_a_password_alone_gives_the_password_level(rp, alice):
    result = rp.authorize(username=alice.username, password=USER_PASSWORD)
    claims = rp.verify_id_token(rp.exchange(result)["id_token"], nonce=result.nonce)
    assert claims["amr"] == ["pwd"] and claims["acr"] == ACR_PWD


def test_no_code_is_issued_before_the_second_factor(rp, alice):
    _device, seed = totp_device(alice)
    page = _to_second_step(rp, alice)
    assert page.status_code == 200 and 'id="id_totp_code"' in page.text
    # Going straight back to the authorization request skips nothing: the user is not signed in.
    back = rp.browser.get(rp.authorization_url(), allow_redirects=False, timeout=10)
    assert back.status_code == 302 and "/accounts/login/" in back.headers["Location"]
    assert "code=" not in back.headers["Location"]
    assert not Grant.objects.filter(user=alice).exists()


def test_a_totp_code_works_once(rp, alice, issued_client):
    _device, seed = totp_device(alice)
    code = totp_code(seed)
    rp.authorize(username=alice.username, password=USER_PASSWORD, second_factor=lambda: code)
    other = relying_party(rp.base_url, issued_client)
    page = _to_second_step(other, alice)
    replayed = _post_code(other, page, method="totp", code=code)
    assert replayed.status_code == 200 and "not right" in replayed.text
    assert "mfa.challenge_failed" in _actions(alice)
    failed = AuditEvent.objects.filter(action="mfa.challenge_failed", target_id=str(alice.pk)).last()
    assert failed.data == {"factor": "totp"}


@pytest.mark.parametrize("steps", [-1, 1])
def test_a_code_one_step_off_is_accepted(rp, alice, steps):
    _device, seed = totp_device(alice)
    rp.authorize(username=alice.username, password=USER_PASSWORD, second_factor=lambda: totp_code(seed, steps=steps))


@pytest.mark.parametrize("steps", [-20, -2, 2, 20])
def test_codes_off_by_more_steps_are_refused(rp, alice, steps):
    _device, seed = totp_device(alice)
    page = _to_second_step(rp, alice)
    reply = _post_code(rp, page, method="totp", code=totp_code(seed, steps=steps))
    assert reply.status_code == 200 and "not right" in reply.text
    assert "login.succeeded" not in _actions(alice)


@pytest.mark.parametrize(
    "code", ["", "abcdef", "1234567", "12345", "１２３４５６", "' OR 1=1 --", "9" * 10_000, "\x00" * 6]
)
def test_hostile_codes_are_refused_without_error(rp, alice, code):
    totp_device(alice)
    page = _to_second_step(rp, alice)
    reply = _post_code(rp, page, method="totp", code=code)
    assert reply.status_code in (200, 400), reply.status_code
    assert "login.succeeded" not in _actions(alice)


def test_a_recovery_code_works_once_and_not_for_another_user(rp, alice, issued_client):
    import audit
    from idp.mfa.factors import recovery_codes_generate

    totp_device(alice)
    bob = make_user(username="bob")
    totp_device(bob)
    alice_codes = recovery_codes_generate(user=alice, actor=audit.Actor.system("tests"))
    bob_codes = recovery_codes_generate(user=bob, actor=audit.Actor.system("tests"))
    # Bob's code does not get Alice in.
    page = _to_second_step(rp, alice)
    assert _post_code(rp, page, method="recovery", code=bob_codes[0]).status_code == 200
    assert "login.succeeded" not in _actions(alice)
    # Alice's own works once, typed in lower case without dashes.
    used = _post_code(rp, page, method="recovery", code=alice_codes[0].replace("-", "").lower())
    assert used.status_code == 302
    assert "mfa.recovery_code_used" in _actions(alice)
    other = relying_party(rp.base_url, issued_client)
    again = _post_code(other, _to_second_step(other, alice), method="recovery", code=alice_codes[0])
    assert again.status_code == 200 and "not right" in again.text
    # Bob's own code was not spent by Alice's attempt.
    from idp.models import RecoveryCode

    assert RecoveryCode.objects.filter(user=bob, used_at__isnull=True).count() == len(bob_codes)


def test_wrong_codes_lock_the_account_out_like_wrong_passwords(settings, rp, alice):
    _device, seed = totp_device(alice)
    page = _to_second_step(rp, alice)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        reply = _post_code(rp, page, method="totp", code="000000" if totp_code(seed) != "000000" else "111111")
    assert reply.status_code == 429 and "Retry-After" in reply.headers
    # Locked: the right code does not get in now.
    right = _post_code(rp, page, method="totp", code=totp_code(seed))
    assert right.status_code == 429
    assert "login.succeeded" not in _actions(alice)
    assert _actions(alice).count("mfa.challenge_failed") == settings.AXES_FAILURE_LIMIT
    assert "login.locked_out" in _actions(alice)


def test_a_client_that_requires_a_second_factor_leads_a_user_without_one_to_enrol_first(
    live_server, signing_key, alice
):
    from idp.models import Application

    issued = make_client(redirect_uris=["http://127.0.0.1:9999/callback"])
    Application.objects.filter(pk=issued.application.pk).update(require_mfa=True)
    rp = relying_party(live_server.url, issued)
    page = _to_second_step(rp, alice)
    assert page.status_code == 200 and "Set up a second factor" in page.text
    assert not Grant.objects.filter(user=alice).exists()
    # Start the app, read its secret from the page, confirm with a code.
    _, fields = parse_form(page.text)
    fields["action"] = "start"
    started = rp.browser.post(urljoin(page.url, "/accounts/login/enrol/"), data=fields, timeout=10)
    secret = started.text.split('id="totp-secret">')[1].split("<")[0]
    from tests.mfa.codes import seed_from_secret

    seed = seed_from_secret(secret)
    assert TotpDevice.objects.get(user=alice).secret_encrypted.find(secret) == -1  # encrypted at rest
    _, fields = parse_form(started.text)
    fields.pop("action", None)
    fields["code"] = totp_code(seed)
    codes_page = rp.browser.post(
        urljoin(page.url, "/accounts/login/enrol/"), data=fields, allow_redirects=False, timeout=10
    )
    assert codes_page.status_code == 200 and "Your recovery codes" in codes_page.text
    assert (
        codes_page.headers["Cache-Control"].startswith("no-store") or "no-store" in codes_page.headers["Cache-Control"]
    )
    onward = codes_page.text.split('class="button primary" href="')[1].split('"')[0].replace("&amp;", "&")
    reply = rp.follow(
        rp.browser.get(urljoin(page.url, onward), allow_redirects=False, timeout=10),
        username=alice.username,
        password=USER_PASSWORD,
        consent="allow",
    )
    location = reply.headers["Location"]
    assert location.startswith("http://127.0.0.1:9999/callback") and "code=" in location
    assert "mfa.enrolled" in _actions(alice) and "mfa.recovery_codes_regenerated" in _actions(alice)
    grant = Grant.objects.get(user=alice)
    assert grant.acr == ACR_MFA and grant.amr == ["pwd", "otp", "mfa"]


def test_a_role_that_requires_a_second_factor_stops_its_holder_after_the_password(rp, alice):
    import audit
    from accounts.models import Role
    from accounts.services import role_grant

    role = role_with(["invoices.read"], name="finance")
    Role.objects.filter(pk=role.pk).update(require_mfa=True)
    role_grant(role=Role.objects.get(pk=role.pk), user=alice, actor=audit.Actor.system("tests"))
    page = _to_second_step(rp, alice)
    assert "Set up a second factor" in page.text
    assert "login.succeeded" not in _actions(alice)
    # The dashboard too: nobody is signed in until the factor.
    assert rp.browser.get(f"{rp.base_url}/dashboard/", allow_redirects=False, timeout=10).status_code == 302


def test_acr_values_steps_a_password_session_up_with_the_second_factor_only(rp, alice):
    first = rp.authorize(username=alice.username, password=USER_PASSWORD)
    assert rp.verify_id_token(rp.exchange(first)["id_token"], nonce=first.nonce)["acr"] == ACR_PWD
    _device, seed = totp_device(alice)  # set up since (on the dashboard)
    signed_in = rp.sign_ins
    result = rp.authorize(
        username=alice.username, password=USER_PASSWORD, acr_values=ACR_MFA, second_factor=lambda: totp_code(seed)
    )
    assert rp.sign_ins == signed_in  # no password asked again
    claims = rp.verify_id_token(rp.exchange(result)["id_token"], nonce=result.nonce)
    assert claims["acr"] == ACR_MFA and claims["amr"] == ["pwd", "otp", "mfa"]
    step_up = AuditEvent.objects.filter(action="login.succeeded", target_id=str(alice.pk)).last()
    assert step_up.data["step_up"] is True


def test_an_essential_acr_claim_steps_up_and_is_answered_with_a_requested_value(rp, alice):
    rp.authorize(username=alice.username, password=USER_PASSWORD)
    _device, seed = totp_device(alice)
    claims_param = json.dumps({"id_token": {"acr": {"essential": True, "values": ["urn:example:other", ACR_MFA]}}})
    result = rp.authorize(
        username=alice.username, password=USER_PASSWORD, claims=claims_param, second_factor=lambda: totp_code(seed)
    )
    assert rp.verify_id_token(rp.exchange(result)["id_token"], nonce=result.nonce)["acr"] == ACR_MFA


def test_an_essential_acr_nobody_can_reach_is_unmet(rp, alice):
    rp.authorize(username=alice.username, password=USER_PASSWORD)
    claims_param = json.dumps({"id_token": {"acr": {"essential": True, "values": ["urn:example:loa:4"]}}})
    reply = rp.browser.get(rp.authorization_url(claims=claims_param), allow_redirects=False, timeout=10)
    query = parse_qs(urlsplit(reply.headers["Location"]).query)
    assert query["error"] == ["unmet_authentication_requirements"]


def test_prompt_none_below_the_level_asked_is_interaction_required(rp, alice):
    rp.authorize(username=alice.username, password=USER_PASSWORD)
    reply = rp.browser.get(rp.authorization_url(prompt="none", acr_values=ACR_MFA), allow_redirects=False, timeout=10)
    query = parse_qs(urlsplit(reply.headers["Location"]).query)
    assert query["error"] == ["interaction_required"] and "code" not in query


@pytest.mark.parametrize("again", [{"prompt": "login"}, {"max_age": "0"}])
def test_signing_in_again_asks_for_the_second_factor_again(rp, alice, again):
    _device, seed = totp_device(alice)
    rp.authorize(username=alice.username, password=USER_PASSWORD, second_factor=lambda: totp_code(seed, steps=-1))
    time.sleep(1)
    page = _to_second_step(rp, alice, **again)
    assert 'id="id_totp_code"' in page.text  # the password was asked, and now the code
    # The earlier sign-in does not stand in for the code: the authorization request waits for it.
    back = rp.browser.get(rp.authorization_url(), allow_redirects=False, timeout=10)
    assert back.status_code == 302 and "/accounts/login/verify/" in back.headers["Location"]
    done = _post_code(rp, page, method="totp", code=totp_code(seed))
    assert done.status_code == 302


def test_discovery_advertises_the_levels(rp):
    assert rp.metadata["acr_values_supported"] == ["urn:idp:acr:pwd", "urn:idp:acr:mfa", "phr"]
    assert {"acr", "amr", "auth_time"} <= set(rp.metadata["claims_supported"])


def test_the_seed_is_encrypted_at_rest_and_never_in_audit_data(rp, alice):
    device, seed = totp_device(alice)
    import base64

    stored = TotpDevice.objects.get(pk=device.pk).secret_encrypted
    assert seed.hex() not in stored and base64.b32encode(seed).decode().rstrip("=") not in stored
    assert stored.startswith("gAAAA")  # a Fernet token
    rp.authorize(username=alice.username, password=USER_PASSWORD, second_factor=lambda: totp_code(seed))
    for event in AuditEvent.objects.all():
        text = json.dumps(event.data)
        assert seed.hex() not in text and base64.b32encode(seed).decode().rstrip("=") not in text


@pytest.mark.parametrize(
    "extra",
    [
        {"claims": json.dumps({"id_token": ["acr"]})},
        {"claims": json.dumps({"id_token": {"acr": {"essential": True, "values": "phr"}}})},
        {"claims": json.dumps({"id_token": {"acr": {"essential": True, "values": [None, 7]}}})},
        {"acr_values": "x" * 5000},
        {"acr_values": "\u0000 urn:idp:acr:mfa"},
    ],
)
def test_hostile_level_requests_get_an_answer_not_an_error(rp, alice, extra):
    rp.authorize(username=alice.username, password=USER_PASSWORD)
    reply = rp.browser.get(rp.authorization_url(**extra), allow_redirects=False, timeout=10)
    assert reply.status_code in (200, 302, 400), reply.status_code
