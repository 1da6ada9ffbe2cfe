"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright's sync API
against the live server. A person signs in through the sign-in page, creates a key, copies it
with the copy button, rotates it and revokes it; the list fits a phone's screen.

Never `playwright install`: .ci/run installs chromium from Debian, at /usr/bin/chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from apikeys.models import ApiKey, KeyState
from apikeys.selectors import apikey_verify
from apikeys.services import apikeys_rotate_due
from tests.browser import PHONE, _orm_beside_playwright, browser, sign_in_page  # noqa: F401 - fixtures


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 - the fixture imported from tests.browser
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def copy_shown_key(page: Page) -> str:
    """Press the copy button on the show-once page; returns what reached the clipboard, after
    checking it is the key on the page."""
    shown = page.locator("#apikey-secret").inner_text().strip()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("status")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == shown
    return copied


def row(page: Page, public_id: str):
    return page.locator(f'tr[data-public-id="{public_id}"]')


def has_no_horizontal_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_create_copy_rotate_and_revoke_a_key_in_a_browser(live_server, page, owner):
    base_url = live_server.url
    sign_in_page(page, base_url, owner)

    # Create, choosing a scope; the key is on the page once, and the copy button copies it.
    page.get_by_role("link", name="New key").click()
    page.get_by_label("Name", exact=True).fill("browser deploy key")
    page.get_by_label("profile:").check()
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Your new API key")).to_be_visible()
    first = copy_shown_key(page)
    verified = apikey_verify(presented=first)
    assert verified is not None
    assert (verified.key.name, verified.key.scope, verified.key.user_id) == ("browser deploy key", "profile", owner.pk)
    first_id = verified.key.public_id

    # Back on the list: the key is there, its secret is not; rotate it now.
    page.get_by_role("link", name="Done: back to my keys").click()
    expect(row(page, first_id)).to_contain_text("Active")
    assert first not in page.content()
    row(page, first_id).get_by_role("button", name="Rotate now").click()
    expect(page.get_by_role("heading", name="Key rotated: here is its successor")).to_be_visible()
    second = copy_shown_key(page)
    successor = apikey_verify(presented=second)
    assert successor is not None and successor.key.rotated_from.public_id == first_id
    assert apikey_verify(presented=first) is not None  # the old key works on, in its grace period
    assert ApiKey.objects.get(public_id=first_id).state(timezone.now()) == KeyState.GRACE
    second_id = successor.key.public_id

    page.get_by_role("link", name="Done: back to my keys").click()
    expect(row(page, first_id)).to_contain_text("Rotated (grace period)")
    expect(row(page, first_id)).to_contain_text(f"Replaced by {second_id}")

    # Revoke the new key: a confirmation page first, then the list says so.
    row(page, second_id).get_by_role("link", name="Revoke").click()
    expect(page.get_by_role("heading", name="Revoke this key?")).to_be_visible()
    assert apikey_verify(presented=second) is not None  # asking changed nothing
    page.get_by_label("Reason (optional)").fill("browser test")
    page.get_by_role("button", name="Revoke key").click()
    expect(page).to_have_url(f"{base_url}/dashboard/")
    expect(page.get_by_role("status").first).to_contain_text(f"{second_id} is revoked")
    expect(row(page, second_id)).to_contain_text("Revoked")
    assert apikey_verify(presented=second) is None

    # On a phone: the list (now with several keys) and the form fit the screen.
    page.set_viewport_size(PHONE)
    page.goto(f"{base_url}/dashboard/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.goto(f"{base_url}/dashboard/keys/new/")
    assert has_no_horizontal_scroll(page)


def test_every_page_fits_a_phone(live_server, page, owner, issue_key):
    long = issue_key(name="x" * 100, rotate_every=timedelta(days=1), now=timezone.now() - timedelta(days=2)).key
    apikeys_rotate_due(now=timezone.now())  # a successor waiting to be revealed: the fullest row
    page.set_viewport_size(PHONE)
    sign_in_page(page, live_server.url, owner)
    expect(page.get_by_text("New key waiting to be revealed")).to_be_visible()
    assert has_no_horizontal_scroll(page)
    for path in (f"keys/{long.pk}/revoke/", f"keys/{long.successor.pk}/schedule/", "keys/new/"):
        page.goto(f"{live_server.url}/dashboard/{path}")
        assert has_no_horizontal_scroll(page), path
    page.get_by_label("Name", exact=True).fill("phone key")
    page.get_by_role("button", name="Create key").click()
    secret = copy_shown_key(page)
    assert has_no_horizontal_scroll(page)
    page.get_by_role("link", name="Done: back to my keys").click()
    assert secret not in page.content()
