"""The sessions page in a real browser (headless Chromium): one person signed in in two browsers
(two contexts, two cookie jars) sees both, "this device" marked; signing the other one out
leaves this one signed in, and the other is signed out at its next page with its tokens refused.
"Sign out everywhere" ends both and tells the clients in iframes (Front-Channel Logout), whose
requests reach a real receiver with iss and sid."""

from __future__ import annotations

import pytest
import requests
from django.conf import settings
from playwright.sync_api import Browser, BrowserContext, Page, expect

from idp.models import BrowserSession
from tests.browser import _orm_beside_playwright, browser, sign_in_page  # noqa: F401 - fixtures
from tests.factories import make_client, relying_party, tokens_at
from tests.ops.processes import wait_for
from tests.relying_party import RelyingParty
from tests.sessions.receiver import Receiver

FRONTCHANNEL_PATH = "/frontchannel-logout"


def browser_page(chromium: Browser, user_agent: str) -> tuple[BrowserContext, Page]:
    context = chromium.new_context(user_agent=user_agent)
    page = context.new_page()
    page.set_default_timeout(10_000)
    return context, page


def tokens_through(context: BrowserContext, rp: RelyingParty, user) -> dict:
    """Tokens for the client, issued through this browser's session (its cookie, in the relying
    party's requests session: the same session, seen from a second client)."""
    for cookie in context.cookies():
        if cookie["name"] == settings.SESSION_COOKIE_NAME:
            rp.browser.cookies.set(cookie["name"], cookie["value"])
    return tokens_at(rp, user)


def userinfo(rp: RelyingParty, tokens: dict) -> int:
    reply = requests.get(
        rp.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    return reply.status_code


@pytest.fixture
def two_browsers(browser: Browser, live_server, signing_key, alice):  # noqa: F811
    laptop, laptop_page = browser_page(
        browser, "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    )
    phone, phone_page = browser_page(
        browser,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1",
    )
    sign_in_page(laptop_page, live_server.url, alice, start="/dashboard/sessions/")
    sign_in_page(phone_page, live_server.url, alice, start="/dashboard/sessions/")
    yield (laptop, laptop_page), (phone, phone_page)
    laptop.close()
    phone.close()


def test_signing_out_another_browser_leaves_this_one_and_refuses_that_ones_tokens(live_server, alice, two_browsers):
    (laptop, laptop_page), (phone, phone_page) = two_browsers
    issued = make_client(name="Wiki")
    phone_rp, laptop_rp = relying_party(live_server.url, issued), relying_party(live_server.url, issued)
    phone_tokens = tokens_through(phone, phone_rp, alice)
    laptop_tokens = tokens_through(laptop, laptop_rp, alice)
    phone_row = BrowserSession.objects.get(user=alice, user_agent__contains="iPhone")

    laptop_page.reload()
    rows = laptop_page.locator("#sessions tbody tr")
    expect(rows).to_have_count(2)
    this = laptop_page.locator("tr.current")
    expect(this).to_contain_text("Firefox 128 on Linux")
    expect(this).to_contain_text("This device")
    other = laptop_page.locator(f"#session-{phone_row.public_id}")
    expect(other).to_contain_text("Mobile Safari")
    expect(other).to_contain_text("iOS")
    expect(other).to_contain_text("Wiki")
    expect(other).to_contain_text("127.0.0.1")
    expect(other).not_to_contain_text("This device")

    other.get_by_role("button", name="Sign out").click()
    expect(laptop_page.get_by_role("status")).to_contain_text("That session is signed out.")
    expect(rows).to_have_count(1)

    phone_page.reload()
    expect(phone_page).to_have_url(f"{live_server.url}/accounts/login/?next=/dashboard/sessions/")
    assert userinfo(phone_rp, phone_tokens) == 401, "the ended session's tokens are refused"
    refreshed = phone_rp.token_request(grant_type="refresh_token", refresh_token=phone_tokens["refresh_token"])
    assert refreshed.status_code == 400
    assert userinfo(laptop_rp, laptop_tokens) == 200, "this browser's tokens live on"
    laptop_page.reload()
    expect(laptop_page).to_have_url(f"{live_server.url}/dashboard/sessions/")


def test_sign_out_everywhere_ends_every_session_and_tells_browser_clients_in_iframes(
    live_server, alice, two_browsers, receiver: Receiver
):
    (laptop, laptop_page), (phone, _phone_page) = two_browsers
    required = make_client(
        name="Chat", frontchannel_logout_uri=receiver.uri(FRONTCHANNEL_PATH), frontchannel_logout_session_required=True
    )
    plain = make_client(name="Board", frontchannel_logout_uri=receiver.uri("/plain-logout?from=idp"))
    phone_claims = relying_party(live_server.url, required)
    phone_tokens = tokens_through(phone, phone_claims, alice)
    laptop_rp = relying_party(live_server.url, plain)
    tokens_through(laptop, laptop_rp, alice)
    phone_sid = phone_claims.verify_id_token(phone_tokens["id_token"], nonce=None)["sid"]

    laptop_page.reload()
    with laptop_page.expect_response(lambda r: r.url.endswith("/dashboard/sessions/end-all/")) as answer:
        laptop_page.get_by_role("button", name="Sign out everywhere").click()
    csp = answer.value.headers["content-security-policy"]
    expect(laptop_page.get_by_role("heading", name="You are signed out")).to_be_visible()
    assert f"frame-src {receiver.origin}" in csp, csp

    framed = wait_for(lambda: receiver.of(FRONTCHANNEL_PATH), "the front-channel iframe's request")
    assert framed[0].query == {"iss": [phone_claims.metadata["issuer"]], "sid": [phone_sid]}
    plain_framed = wait_for(lambda: receiver.of("/plain-logout"), "the other client's iframe")
    assert plain_framed[0].query == {"from": ["idp"]}, "no iss or sid for a client that did not ask"
    assert not BrowserSession.objects.filter(user=alice).exists()
    laptop_page.goto(f"{live_server.url}/dashboard/sessions/")
    expect(laptop_page).to_have_url(f"{live_server.url}/accounts/login/?next=/dashboard/sessions/")
