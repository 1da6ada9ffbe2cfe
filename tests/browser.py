"""What the real-browser tests share: Debian's chromium, headless, driven by Playwright's sync API
against the live server. A test module imports `browser` and `_orm_beside_playwright` from here
(importing an autouse fixture applies it to that module only), and signs a person in with
`sign_in_page`.

Never `playwright install`: .ci/run installs chromium from Debian, at /usr/bin/chromium.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.factories import USER_PASSWORD, second_factor_for

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    """Playwright's sync API keeps an event loop running in the test's thread, and Django refuses
    ORM calls from a thread with a running loop. The tests call the ORM between browser steps
    (there is no concurrency: the browser waits), so the modules that import this allow that."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield browser
        browser.close()
        # While the loop runs, Django keeps this thread's connections apart (asgiref's Local acts
        # as a context variable), so the ORM calls above opened their own: close them before the
        # loop stops, or they outlive the test and block dropping the test database.
        connections.close_all()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context (its own cookies), waiting at most 10 s for anything."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def sign_in_page(page: Page, base_url: str, user, *, start: str = "/dashboard/") -> None:
    """Sign in through the real sign-in page, where a signed-out visit to `start` sends a person;
    the page ends back on `start`. A user who must use a second factor (an administrator) types
    the code of an authenticator app (tests.factories.second_factor_for)."""
    code = second_factor_for(user)
    page.goto(f"{base_url}{start}")
    expect(page).to_have_url(f"{base_url}/accounts/login/?next={start}")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    if code is not None:
        page.get_by_label("Code from your authenticator app").fill(code())
        page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(f"{base_url}{start}")
