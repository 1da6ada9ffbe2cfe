"""Second factors in a real browser (Debian's chromium, headless, Playwright) against the live
server, with an independent OIDC client (authlib) on the other side: enrolment of an authenticator
app with codes computed from the secret on the page, sign-in with it, a recovery code that works
once, enforcement by client and by role, and step-up through acr_values. Passkeys have their own
module (test_passkeys_browser)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.common.security import generate_token
from playwright.sync_api import Browser, Page, expect

import audit
from accounts.models import Role
from accounts.services import role_grant
from audit.models import AuditEvent
from idp.mfa.levels import ACR_MFA, ACR_PWD
from idp.models import Application
from tests.browser import _orm_beside_playwright, browser  # noqa: F401 - fixtures
from tests.factories import REDIRECT_URI, USER_PASSWORD, role_with
from tests.mfa.codes import seed_from_secret, totp_code
from tests.relying_party import AuthorizationResult

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 - the fixture imported from tests.browser
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    # Nothing listens at the client's redirect URI: the browser's arrival there is answered here.
    page.route(f"{REDIRECT_URI.rsplit('/', 1)[0]}/**", lambda route: route.fulfill(status=200, body="client"))
    yield page
    context.close()


def _start(rp, page: Page, **extra: str) -> AuthorizationResult:
    """An authorization request made by authlib (PKCE, nonce), opened in the browser."""
    verifier, nonce, state = generate_token(48), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    client = rp.session(scope="openid profile", code_challenge_method="S256")
    url, _ = client.create_authorization_url(
        rp.metadata["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce, **extra
    )
    page.goto(url)
    return AuthorizationResult(location="", params={}, code_verifier=verifier, nonce=nonce, state=state)


def _arrived(page: Page, started: AuthorizationResult) -> AuthorizationResult:
    """Where the browser ended: back at the client with a code (after consent if asked)."""
    allow = page.get_by_role("button", name="Allow")
    if not page.url.startswith(REDIRECT_URI) and allow.count():
        allow.click()
    page.wait_for_url(f"{REDIRECT_URI}?**")
    params = {key: values[0] for key, values in parse_qs(urlsplit(page.url).query).items()}
    assert "code" in params, page.url
    started.location, started.params = page.url, params
    return started


def _password(page: Page, user) -> None:
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _enrol_app(page: Page) -> tuple[bytes, list[str]]:
    """Set up an authenticator app on the enrolment page; returns its seed and the recovery codes."""
    expect(page.get_by_role("heading", name="Set up a second factor")).to_be_visible()
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.locator("figure.qr svg")).to_be_visible()  # the QR code
    seed = seed_from_secret(page.locator("#totp-secret").inner_text().strip())
    page.get_by_label("Code from your app").fill(totp_code(seed))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = [code.strip() for code in page.locator(".recovery-codes code").all_inner_texts()]
    page.get_by_role("link", name="I have saved them, continue").click()
    return seed, codes


def _sign_out(page: Page, base_url: str) -> None:
    page.context.clear_cookies()


def test_a_client_requiring_a_second_factor_enrols_an_app_then_signs_in_with_it(live_server, page, rp, alice):
    Application.objects.filter(client_id=rp.client_id).update(require_mfa=True)
    started = _start(rp, page)
    _password(page, alice)
    seed, codes = _enrol_app(page)
    assert len(codes) == 10
    result = _arrived(page, started)
    claims = rp.verify_id_token(rp.exchange(result)["id_token"], nonce=result.nonce)
    assert claims["acr"] == ACR_MFA and claims["amr"] == ["pwd", "otp", "mfa"]

    # Next time: password, then a code from the app (the next step's: this one was spent).
    _sign_out(page, live_server.url)
    started = _start(rp, page)
    _password(page, alice)
    page.get_by_label("Code from your authenticator app").fill(totp_code(seed, steps=1))
    page.get_by_role("button", name="Verify").click()
    claims = rp.verify_id_token(rp.exchange(_arrived(page, started))["id_token"], nonce=started.nonce)
    assert claims["amr"] == ["pwd", "otp", "mfa"]


def test_a_role_holder_uses_a_recovery_code_once(live_server, page, rp, alice):
    role = role_with(["reports.read"], name="auditors")
    Role.objects.filter(pk=role.pk).update(require_mfa=True)
    role_grant(role=Role.objects.get(pk=role.pk), user=alice, actor=audit.Actor.system("tests"))
    started = _start(rp, page)
    _password(page, alice)
    _seed, codes = _enrol_app(page)  # the role's requirement: enrol right after the password
    _arrived(page, started)

    for attempt in ("first", "second"):
        _sign_out(page, live_server.url)
        started = _start(rp, page)
        _password(page, alice)
        page.get_by_text("Use a recovery code").click()
        page.get_by_label("Recovery code").fill(codes[0])
        page.get_by_role("button", name="Use recovery code").click()
        if attempt == "first":
            claims = rp.verify_id_token(rp.exchange(_arrived(page, started))["id_token"], nonce=started.nonce)
            assert claims["acr"] == ACR_MFA and "mfa" in claims["amr"]
        else:
            expect(page.get_by_role("alert")).to_have_text("That code is not right.")
            assert not page.url.startswith(REDIRECT_URI)
    assert AuditEvent.objects.filter(action="mfa.recovery_code_used", target_id=str(alice.pk)).count() == 1
    assert AuditEvent.objects.filter(action="mfa.challenge_failed", target_id=str(alice.pk)).count() == 1


def test_acr_values_steps_a_password_session_up_without_asking_the_password_again(live_server, page, rp, alice):
    started = _start(rp, page)
    _password(page, alice)
    claims = rp.verify_id_token(rp.exchange(_arrived(page, started))["id_token"], nonce=started.nonce)
    assert claims["acr"] == ACR_PWD and claims["amr"] == ["pwd"]

    started = _start(rp, page, acr_values=ACR_MFA)
    # Straight to the second factor: alice has none yet, so she sets one up; no password form.
    expect(page.get_by_label("Password")).to_have_count(0)
    _enrol_app(page)
    claims = rp.verify_id_token(rp.exchange(_arrived(page, started))["id_token"], nonce=started.nonce)
    assert claims["acr"] == ACR_MFA and claims["amr"] == ["pwd", "otp", "mfa"]
