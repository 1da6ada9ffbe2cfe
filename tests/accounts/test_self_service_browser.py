"""Account self-service in a real browser (Debian's chromium, headless, Playwright's sync API against
the live server), with the mails sent by a real Celery worker through Django's file e-mail backend
(EMAIL_URL=filemail://...), read back from its files: password reset, registration with e-mail
verification, and password change with another browser signed out.

Never `playwright install`: .ci/run installs chromium from Debian, at /usr/bin/chromium.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from accounts.models import User
from audit.models import AuditEvent
from idp.celery import app as celery_app
from tests.apikeys.test_worker_kill import Worker, delete_queue, stop, worker_launch
from tests.browser import _orm_beside_playwright, browser, page, sign_in_page  # noqa: F401 - fixtures
from tests.factories import USER_PASSWORD, make_client, make_user, relying_party

NEW_PASSWORD = "a brand new passphrase 42"


def _routes_set(routes: object) -> None:
    """Route tasks anew: the app keeps its router (a cached property holding the routes it was
    made with), so it is dropped with the routes and made again at the next send."""
    celery_app.conf.task_routes = routes
    celery_app.amqp.flush_routes()
    vars(celery_app.amqp).pop("router", None)


@pytest.fixture
def mail_worker(live_server, tmp_path) -> Iterator[tuple[Worker, Path]]:
    """A real worker on its own queue, to which the account tasks are routed, sending mail as files
    into a directory of the test's; its links built from the live server's address (IDP_ISSUER)."""
    queue = f"test-accounts-mail-{uuid.uuid4().hex[:12]}"
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    routes = celery_app.conf.task_routes
    _routes_set({"accounts.tasks.*": {"queue": queue}})
    started = worker_launch(
        queue,
        tmp_path / "worker.log",
        tmp_path / "paused-pid",
        include="accounts.tasks",
        env={"EMAIL_URL": f"filemail:///{mail_dir}", "IDP_ISSUER": live_server.url},
    )
    try:
        yield started, mail_dir
    finally:
        stop(started.process)
        delete_queue(queue)
        _routes_set(routes)


def mailed_link(worker: Worker, mail_dir: Path, *, to: str, subject: str) -> str:
    """The link of the mail with this subject sent to this address, once the worker wrote it."""

    def found() -> str | None:
        for file in sorted(mail_dir.iterdir()):
            for message in file.read_text().split("\n" + "-" * 79 + "\n"):
                if f"To: {to}" in message and f"Subject: {subject}" in message:
                    return re.findall(r"https?://\S+", message)[0]
        return None

    return worker.wait_for(found, f"the mail '{subject}' to {to}")


def test_reset_a_forgotten_password_from_the_link_in_the_mail(live_server, page, browser, mail_worker):  # noqa: F811
    worker, mail_dir = mail_worker
    base_url = live_server.url
    person = make_user(email="forgetful@example.com")
    elsewhere = browser.new_context().new_page()
    sign_in_page(elsewhere, base_url, person, start="/dashboard/account/")

    page.goto(f"{base_url}/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("E-mail address").fill("forgetful@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()

    link = mailed_link(worker, mail_dir, to="forgetful@example.com", subject="Reset your password")
    assert link.startswith(f"{base_url}/accounts/password/reset/")
    page.goto(link)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_role("heading", name="Your password is changed")).to_be_visible()

    # Nobody was signed in by it, and the other browser's session is over.
    elsewhere.goto(f"{base_url}/dashboard/account/")
    expect(elsewhere).to_have_url(re.compile(r"/accounts/login/"))
    page.goto(f"{base_url}/dashboard/account/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    # The link is spent.
    page.goto(link)
    expect(page.get_by_role("heading", name="This link is not valid")).to_be_visible()

    person.refresh_from_db()
    assert person.check_password(NEW_PASSWORD)
    actions = list(AuditEvent.objects.filter(target_id=str(person.pk)).values_list("action", flat=True))
    assert {"password.reset_requested", "password.changed", "password.reset_link_refused"} <= set(actions)


def test_register_verify_the_address_then_sign_in_to_an_application(
    live_server,
    page,  # noqa: F811
    mail_worker,
    settings,
    signing_key,
):
    settings.SELF_REGISTRATION = True
    worker, mail_dir = mail_worker
    base_url = live_server.url
    rp = relying_party(base_url, make_client())

    page.goto(f"{base_url}/accounts/login/")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("E-mail address").fill("newcomer@example.com")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Create the account").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    newcomer = User.objects.get(username="newcomer")
    assert newcomer.is_self_registered and not newcomer.email_verified

    # Signed in, but no application until the address is verified.
    page.goto(rp.authorization_url(scope="openid email"))
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Verify your e-mail address first")).to_be_visible()

    link = mailed_link(worker, mail_dir, to="newcomer@example.com", subject="Verify your e-mail address")
    page.goto(link)
    page.get_by_role("button", name="Verify my address").click()
    expect(page.get_by_role("heading", name="Your e-mail address is verified")).to_be_visible()
    newcomer.refresh_from_db()
    assert newcomer.email_verified

    page.goto(rp.authorization_url(scope="openid email"))
    expect(page.locator("#authorizationForm")).to_be_visible()  # the consent page: a code can follow
    actions = set(AuditEvent.objects.filter(target_id=str(newcomer.pk)).values_list("action", flat=True))
    assert {"user.registered", "email.verification_sent", "email.verified"} <= actions


def test_change_the_password_on_the_dashboard_and_the_other_browser_is_signed_out(
    live_server,
    page,  # noqa: F811
    browser: Browser,  # noqa: F811
):
    base_url = live_server.url
    person = make_user()
    other: Page = browser.new_context().new_page()
    sign_in_page(other, base_url, person, start="/dashboard/account/")
    sign_in_page(page, base_url, person, start="/dashboard/account/")

    page.get_by_role("link", name="Change your password").click()
    page.get_by_label("Current password").fill(USER_PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change the password").click()
    expect(page.get_by_text("Your password is changed")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()  # still signed in here

    other.goto(f"{base_url}/dashboard/account/")
    expect(other).to_have_url(re.compile(r"/accounts/login/"))
    person.refresh_from_db()
    assert person.check_password(NEW_PASSWORD)
    assert AuditEvent.objects.filter(action="password.changed", target_id=str(person.pk)).exists()
