"""Passkeys in a real browser: Debian's chromium with Chrome's virtual authenticator (CDP
WebAuthn domain: a CTAP2 platform authenticator that holds discoverable credentials and verifies
its user), against the live server. A person enrols a passkey at sign-in and is shown recovery
codes, signs in later with password then passkey, and signs in with the passkey alone.

WebAuthn refuses IP addresses as relying party ids: the pages are opened at http://localhost:<port>
(the relying party id is the request's host name in development, idp.mfa.passkeys).

The helpers here (a page with an authenticator, registering and asserting through the ceremony
endpoints from the page's own JavaScript) are shared with test_passkeys_hostile.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django_otp_webauthn.models import WebAuthnCredential
from playwright.sync_api import Browser, Page, expect

from audit.models import AuditEvent
from tests.browser import _orm_beside_playwright, browser  # noqa: F401 - fixtures
from tests.factories import SYSTEM, USER_PASSWORD, make_user

BEGIN_REGISTRATION = "/passkeys/registration/begin/"
COMPLETE_REGISTRATION = "/passkeys/registration/complete/"
BEGIN_AUTHENTICATION = "/passkeys/authentication/begin/"
COMPLETE_AUTHENTICATION = "/passkeys/authentication/complete/"
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}

# The page's own fetch (its cookies, its CSRF token from any form on the page): returns what came back.
POST_JS = """
async ([url, body, contentType]) => {
  const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const headers = {"X-CSRFToken": token};
  if (contentType) headers["Content-Type"] = contentType;
  const reply = await fetch(url, {method: "POST", headers, body, credentials: "same-origin"});
  return {status: reply.status, type: reply.headers.get("content-type") || "", text: await reply.text()};
}
"""
REGISTER_JS = """
async ([begin, complete]) => {
  const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const post = (url, body) => fetch(url, {
    method: "POST", body, credentials: "same-origin",
    headers: {"X-CSRFToken": token, "Content-Type": "application/json"},
  });
  const options = await (await post(begin)).json();
  const created = await navigator.credentials.create({
    publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
  });
  const reply = await post(complete, JSON.stringify(created.toJSON()));
  return {status: reply.status, body: await reply.json()};
}
"""
# Options (as the begin endpoint gave them) -> a signed assertion, as the library's script sends it.
ASSERT_JS = """
async (options) => {
  const got = await navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
  });
  return JSON.stringify(got.toJSON());
}
"""


@pytest.fixture
def base_url(live_server) -> str:
    return live_server.url.replace("127.0.0.1", "localhost")


def authenticated_page(browser: Browser) -> tuple[Page, Any]:  # noqa: F811 - the fixture's value
    """A page in a new context with a virtual authenticator; returns the page and its context."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    return page, context


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 - the fixture imported from tests.browser
    page, context = authenticated_page(browser)
    yield page
    context.close()


def post_from_page(page: Page, path: str, body: str | None = None, content_type: str = "application/json") -> dict:
    return page.evaluate(POST_JS, [path, body, content_type])


def password_sign_in(page: Page, base_url: str, user, *, next_to: str = "/dashboard/") -> None:
    page.goto(f"{base_url}/accounts/login/?next={next_to}")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def register_passkey(page: Page, base_url: str, user) -> WebAuthnCredential:
    """A passkey for a user who needs no second factor (signed in by password alone): made by
    the page's authenticator through the registration endpoints; the browser is signed out after."""
    password_sign_in(page, base_url, user)
    expect(page).to_have_url(f"{base_url}/dashboard/")
    page.goto(f"{base_url}/accounts/login/")  # a page with a CSRF token
    reply = page.evaluate(REGISTER_JS, [BEGIN_REGISTRATION, COMPLETE_REGISTRATION])
    assert reply["status"] == 200, reply
    page.context.clear_cookies()
    return WebAuthnCredential.objects.get(pk=reply["body"]["id"], user=user)


def begin_and_assert(page: Page) -> str:
    """Begin an authentication in the page's session and have its authenticator answer: the JSON
    body the complete endpoint expects (not sent)."""
    begun = post_from_page(page, BEGIN_AUTHENTICATION)
    assert begun["status"] == 200, begun
    return page.evaluate(ASSERT_JS, json.loads(begun["text"]))


def mfa_required(user) -> None:
    """Give the user a role whose holders must sign in with a second factor."""
    from accounts.models import Role
    from accounts.services import role_create, role_grant

    role = role_create(name=f"needs-mfa-{user.pk}", actor=SYSTEM)
    Role.objects.filter(pk=role.pk).update(require_mfa=True)
    role.refresh_from_db()
    role_grant(role=role, user=user, actor=SYSTEM)


def events(user, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(target_type="user", target_id=str(user.pk), action=action).order_by("id"))


def is_signed_in(page: Page, base_url: str) -> bool:
    page.goto(f"{base_url}/dashboard/")
    return page.url == f"{base_url}/dashboard/"


def enrol_at_sign_in(page: Page, base_url: str, user) -> None:
    """Password, then the enrolment page's passkey button, then the first recovery codes."""
    password_sign_in(page, base_url, user)
    expect(page).to_have_url(f"{base_url}/accounts/login/enrol/?next=%2Fdashboard%2F")
    page.get_by_role("button", name="Set up a passkey").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_a_passkey_set_up_at_sign_in_shows_recovery_codes_and_signs_in(base_url, page):
    user = make_user()
    mfa_required(user)

    enrol_at_sign_in(page, base_url, user)
    assert page.get_by_label("Recovery codes").locator("li").count() == 10
    page.get_by_role("link", name="I have saved them, continue").click()
    expect(page).to_have_url(f"{base_url}/dashboard/")

    (credential,) = WebAuthnCredential.objects.filter(user=user)
    assert credential.name.startswith("Passkey added ")
    (enrolled,) = events(user, "mfa.enrolled")
    assert enrolled.data == {"factor": "webauthn", "device": credential.pk, "name": credential.name}
    assert events(user, "mfa.recovery_codes_regenerated")
    # The new passkey finished the sign-in it was set up in: password and a device-bound key.
    assert events(user, "login.succeeded")[-1].data["methods"] == ["pwd", "hwk", "mfa"]


@pytest.mark.django_db(transaction=True)
def test_password_then_passkey_signs_in_and_lands_on_next(base_url, page):
    user = make_user()
    mfa_required(user)
    enrol_at_sign_in(page, base_url, user)
    page.context.clear_cookies()

    password_sign_in(page, base_url, user, next_to="/dashboard/")
    expect(page).to_have_url(f"{base_url}/accounts/login/verify/?next=%2Fdashboard%2F")
    assert not is_signed_in_elsewhere(page, base_url)
    page.get_by_role("button", name="Use a passkey").click()
    expect(page).to_have_url(f"{base_url}/dashboard/")

    signed_in = events(user, "login.succeeded")[-1]
    assert {"pwd", "hwk", "mfa"} <= set(signed_in.data["methods"])
    assert signed_in.data["acr"] == "phr"


def is_signed_in_elsewhere(page: Page, base_url: str) -> bool:
    """Whether the page's session is signed in, asked without leaving the page."""
    return page.evaluate(
        "async (url) => (await fetch(url, {redirect: 'manual'})).status === 200", f"{base_url}/dashboard/"
    )


@pytest.mark.django_db(transaction=True)
def test_the_passkey_button_on_the_sign_in_page_signs_in_without_a_password(base_url, page):
    user = make_user()
    register_passkey(page, base_url, user)

    page.goto(f"{base_url}/dashboard/")
    expect(page).to_have_url(f"{base_url}/accounts/login/?next=/dashboard/")
    page.get_by_role("button", name="Use a passkey").click()
    expect(page).to_have_url(f"{base_url}/dashboard/")

    signed_in = events(user, "login.succeeded")[-1]
    assert signed_in.data["methods"] == ["hwk", "user", "mfa"]
    assert signed_in.data["acr"] == "phr"
