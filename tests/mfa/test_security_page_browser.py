"""The security page in a real browser (Debian's chromium, headless, Playwright's sync API against
the live server): a person signs in with a password, sets up an authenticator app from the secret
the page shows (the code computed as an app computes it), keeps the recovery codes it is given,
and makes a new set.

Never `playwright install`: .ci/run installs chromium from Debian, at /usr/bin/chromium.
"""

from __future__ import annotations

from django.conf import settings
from playwright.sync_api import Page, expect

from idp.models import RecoveryCode, TotpDevice
from tests.browser import _orm_beside_playwright, browser, page, sign_in_page  # noqa: F401 - fixtures
from tests.factories import make_user
from tests.mfa.codes import seed_from_secret, totp_code

PAGE = "/dashboard/security/"


def shown_codes(page: Page) -> list[str]:  # noqa: F811 - the fixture's value
    return [text.strip() for text in page.locator("#recovery-codes-list code").all_inner_texts()]


def test_set_up_an_authenticator_app_and_make_new_recovery_codes(live_server, page, db):  # noqa: F811
    person = make_user()
    base_url = live_server.url
    sign_in_page(page, base_url, person, start=PAGE)
    expect(page.get_by_role("heading", name="Security", exact=True)).to_be_visible()
    expect(page.locator("#authenticator-app")).to_contain_text("Not set up.")

    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page).to_have_url(f"{base_url}{PAGE}")
    expect(page.get_by_label("QR code for your authenticator app")).to_be_visible()
    secret = page.locator("#totp-secret").inner_text().strip()
    page.get_by_label("Code from your app").fill(totp_code(seed_from_secret(secret)))
    page.get_by_role("button", name="Confirm").click()

    # A first factor comes with recovery codes, shown in the answer to the confirmation only.
    expect(page.get_by_role("heading", name="Your new recovery codes")).to_be_visible()
    first = shown_codes(page)
    assert len(first) == settings.MFA_RECOVERY_CODES == len(set(first))
    assert TotpDevice.objects.get(user=person).confirmed
    page.get_by_role("link", name="I have saved them, back to security").click()
    expect(page).to_have_url(f"{base_url}{PAGE}")
    expect(page.get_by_role("button", name="Remove the authenticator app")).to_be_visible()
    expect(page.locator("#recovery-codes-left")).to_have_text(str(settings.MFA_RECOVERY_CODES))
    assert secret not in page.content(), "the secret is not shown once the app is set up"

    # The code just entered proved the app: the session may make new codes without asking again.
    page.get_by_role("button", name="Make new recovery codes").click()
    expect(page.get_by_role("heading", name="Your new recovery codes")).to_be_visible()
    second = shown_codes(page)
    assert len(second) == settings.MFA_RECOVERY_CODES and not set(first) & set(second)
    assert RecoveryCode.objects.filter(user=person, used_at__isnull=True).count() == settings.MFA_RECOVERY_CODES
    page.go_back()
    expect(page.get_by_role("heading", name="Your new recovery codes")).not_to_be_visible()
