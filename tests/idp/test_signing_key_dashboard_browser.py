"""The staff page of signing keys in a real browser: Debian's chromium, headless, driven by
Playwright's sync API against the live server. A staff member who may rotate keys signs in
through the sign-in page, follows the dashboard's nav link and presses "Rotate now" for ES256;
the page and the database agree that the former next key signs. The page breaks no CSP rule.

Never `playwright install`: .ci/run installs chromium from Debian, at /usr/bin/chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

import audit
from audit.models import AuditEvent
from idp.keys.rotation import signing_keys_ensure
from idp.models import SigningKey
from tests.browser import PHONE, _orm_beside_playwright, browser, sign_in_page  # noqa: F401 - fixtures
from tests.factories import make_staff


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 - the fixture imported from tests.browser
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def old_keys(transactional_db, settings):
    """Every chain made two days ago: each next key has been published longer than the window."""
    settings.SIGNING_KEY_PREPUBLISH_SECONDS = 24 * 3600
    signing_keys_ensure(actor=audit.Actor.system("tests"), now=timezone.now() - timedelta(days=2))


@pytest.fixture
def key_keeper(transactional_db):
    """Staff, holding idp.rotate_signingkey and nothing else."""
    return make_staff(model_permissions=["idp.rotate_signingkey"])


def chain(algorithm: str) -> dict[str, str]:
    keys = SigningKey.objects.filter(algorithm=algorithm).exclude(status=SigningKey.Status.RETIRED)
    return {key.status: key.kid for key in keys}


def test_staff_rotate_es256_now_in_a_browser(live_server, page, old_keys, key_keeper):
    base_url = live_server.url
    before = chain("ES256")
    others = {algorithm: chain(algorithm) for algorithm in ("RS256", "EdDSA")}
    csp_errors: list[str] = []
    page.on("console", lambda message: _keep_csp_error(message, csp_errors))

    # Signed out, the dashboard sends a person to the real sign-in page.
    sign_in_page(page, base_url, key_keeper)

    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Signing keys").click()
    expect(page).to_have_url(f"{base_url}/dashboard/signing-keys/")
    expect(page.get_by_role("heading", name="Signing keys", level=1)).to_be_visible()
    es256 = page.locator('section[data-algorithm="ES256"]')
    expect(es256.locator(f'tr[data-kid="{before["active"]}"]')).to_have_attribute("data-status", "active")
    expect(es256.locator(f'tr[data-kid="{before["next"]}"]')).to_have_attribute("data-status", "next")

    es256.get_by_role("button", name="Rotate now").click()

    expect(page).to_have_url(f"{base_url}/dashboard/signing-keys/")
    expect(page.get_by_role("status")).to_contain_text(f"ES256: key {before['next']} now signs;")
    expect(es256.locator(f'tr[data-kid="{before["next"]}"]')).to_have_attribute("data-status", "active")
    expect(es256.locator(f'tr[data-kid="{before["active"]}"]')).to_have_attribute("data-status", "retired")
    expect(es256.locator("tr[data-status=next]")).to_have_count(1)

    # The database agrees, and the staff member is on record as the one who rotated.
    after = chain("ES256")
    assert after["active"] == before["next"]
    assert after["next"] not in before.values()
    assert SigningKey.objects.get(kid=before["active"]).status == SigningKey.Status.RETIRED
    event = AuditEvent.objects.get(action="signing_key.rotated")
    assert (event.actor_type, event.actor_id) == ("user", str(key_keeper.pk))
    assert {algorithm: chain(algorithm) for algorithm in others} == others

    # The page fits a phone's screen, and nothing on it needed an inline script or style.
    page.set_viewport_size(PHONE)
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert csp_errors == []


def _keep_csp_error(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error" and "Content Security Policy" in message.text:
        errors.append(message.text)
