"""The staff activity overview in a real browser: Debian's chromium, headless, driven by
Playwright's sync API against the live server.

Real traffic first, over HTTP to the live server: three tokens issued and two refused with 429
(the token limit lowered to 3 a minute), one API call with a key; then the staff member, sent to
the sign-in page, mistypes the password twice (two failed sign-ins, which the lowered brute-force
threshold turns into alerts) and signs in. The SVG bars the browser draws carry, hour by hour,
what the audit table holds; the totals of 429s and key uses are what the live server's /metrics
serves; the alerts and the keys due are listed; the page fits a phone's width and breaks no CSP
rule.

Never `playwright install`: .ci/run installs chromium from Debian, at /usr/bin/chromium.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.utils import timezone
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, expect

import audit
from accounts.selectors import Caller
from accounts.services import admin_role_ensure, role_grant
from apikeys.services import apikey_create
from audit.models import AuditEvent
from idp.keys.rotation import signing_keys_ensure
from idp.models import SigningKey
from tests.browser import PHONE, _orm_beside_playwright, browser  # noqa: F401 - fixtures
from tests.factories import USER_PASSWORD, make_client, make_user, second_factor_for
from tests.ops.processes import scrape, value

SYSTEM = audit.Actor.system("tests")
ALERT_ACTIONS = ["alert.bruteforce", "login.locked_out", "token.reuse_detected"]
# Every bar of a chart, as the browser has it: [data-hour, data-count, its <title>].
READ_BARS = """figure => Array.from(figure.querySelectorAll('g.bar')).map(bar =>
    [bar.dataset.hour, bar.dataset.count, bar.querySelector('title').textContent])"""


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:  # noqa: F811 - the fixture imported from tests.browser
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def policy(settings):
    """Generous limits but 3 tokens a minute per address; an alert at the second failed sign-in;
    signing keys that rotate every 30 days; MD5 passwords (argon2 is slow, and not the subject)."""
    settings.IDP_RATE_LIMITS = {name: "1000/minute" for name in django_settings.IDP_RATE_LIMITS} | {
        "token.ip": "3/minute"
    }
    settings.AUDIT_BRUTEFORCE_THRESHOLD = 2
    settings.SIGNING_KEY_ROTATION_SECONDS = 30 * 24 * 3600
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]
    # The brute-force watch's counters outlive test databases.
    client = redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    for key in client.scan_iter(match="*audit:failed-logins:*"):
        client.delete(key)


@pytest.fixture
def watcher(transactional_db, policy):
    """Staff, holding idp.view_activity and nothing else."""
    user = make_user()
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.user_permissions.add(Permission.objects.get(content_type__app_label="idp", codename="view_activity"))
    return user


@pytest.fixture
def keys_due(transactional_db, policy):
    """Signing keys made 29 days ago (each rotates tomorrow) and an API key whose 12-day rotation
    period ends in two days. Returns the API key and its owner's secret for a call."""
    now = timezone.now()
    signing_keys_ensure(actor=SYSTEM, now=now - timedelta(days=29))
    owner = make_user()
    admins = admin_role_ensure(actor=SYSTEM)
    role_grant(role=admins, user=owner, actor=SYSTEM)
    return apikey_create(
        name="nightly export",
        caller=Caller.operator(SYSTEM),
        user=owner,
        scopes=["idp.manage"],
        role_ids=[admins.pk],
        rotate_every=timedelta(days=12),
        now=now - timedelta(days=10),
    )


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def audited_per_hour(*actions: str) -> Counter[datetime]:
    counts: Counter[datetime] = Counter()
    for created_at in AuditEvent.objects.filter(action__in=actions).values_list("created_at", flat=True):
        counts[hour_of(created_at)] += 1
    return counts


def refusals(samples) -> float:
    """The 429 answers in a scrape, every route's."""
    return sum(
        count
        for (name, labels), count in samples.items()
        if name == "idp_http_requests_total" and ("status", "429") in labels
    )


def bars_of(page: Page, series: str) -> list[tuple[datetime, int, str]]:
    figure = page.locator(f'figure[data-series="{series}"]')
    return [(datetime.fromisoformat(hour), int(count), title) for hour, count, title in figure.evaluate(READ_BARS)]


def test_the_activity_page_shows_what_the_audit_table_and_metrics_hold(live_server, page, watcher, keys_due):
    base_url = live_server.url
    problems: list[str] = []
    page.on("console", lambda message: _keep_error(message, problems))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda response: _keep_failed_load(response, problems))

    before = scrape(base_url)  # loopback may scrape in development
    # Traffic, as clients send it: 3 tokens pass the 3-a-minute limit, 2 more requests are refused.
    machine = make_client(grant="client_credentials", redirect_uris=[], scopes=["profile"])
    auth = (machine.application.client_id, machine.client_secret)
    statuses = [
        requests.post(f"{base_url}/oauth/token/", data={"grant_type": "client_credentials"}, auth=auth, timeout=10)
        for _ in range(5)
    ]
    assert [reply.status_code for reply in statuses] == [200, 200, 200, 429, 429]
    reply = requests.get(f"{base_url}/api/v1/users/", headers={"X-API-Key": keys_due.secret}, timeout=10)
    assert reply.status_code == 200

    # Signed out, the page sends a person to sign in; two wrong passwords, then the right one, then
    # the code of the authenticator app (staff use the dashboard with a second factor).
    code = second_factor_for(watcher)
    assert code is not None
    page.goto(f"{base_url}/dashboard/activity/")
    expect(page).to_have_url(f"{base_url}/accounts/login/?next=/dashboard/activity/")
    for password in ("wrong-once", "wrong-twice", USER_PASSWORD):
        page.get_by_label("Username").fill(watcher.username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Code from your authenticator app").fill(code())
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(f"{base_url}/dashboard/activity/")
    expect(page.get_by_role("heading", name="Activity", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Activity")).to_have_attribute(
        "aria-current", "page"
    )

    # Every chart: 24 consecutive hours, each bar's count and title what the store holds for it.
    hours = [hour for hour, _, _ in bars_of(page, "tokens")]
    assert len(hours) == 24 and hours == [hours[0] + timedelta(hours=n) for n in range(24)]
    expected = {
        "tokens": audited_per_hour("token.issued", "token.refreshed"),
        "failed_signins": audited_per_hour("login.failed"),
        "lockouts": audited_per_hour("login.locked_out"),
    }
    assert {series: sum(counts.values()) for series, counts in expected.items()} == {
        "tokens": 3,
        "failed_signins": 2,
        "lockouts": 0,
    }
    for series, counts in expected.items():
        bars = bars_of(page, series)
        assert [hour for hour, _, _ in bars] == hours
        assert [count for _, count, _ in bars] == [counts.get(hour, 0) for hour in hours], series
        assert [title for _, _, title in bars] == [
            f"{hour:%Y-%m-%d %H:%M} UTC: {counts.get(hour, 0)}" for hour in hours
        ]
        figure = page.locator(f'figure[data-series="{series}"]')
        expect(figure).to_have_attribute("data-total", str(sum(counts.values())))
        expect(figure.locator(".chart-total")).to_have_text(str(sum(counts.values())))
        expect(figure.locator("svg")).to_be_visible()
        # The busiest hour's bar is drawn, and taller than an empty hour's (which has none).
        if counts:
            busiest = max(hours, key=lambda hour: counts.get(hour, 0))
            drawn = figure.locator(f'g.bar[data-hour="{busiest.isoformat()}"] rect.fill').bounding_box()
            assert drawn is not None and drawn["height"] > 10

    # The totals only Prometheus keeps: what the live server's /metrics serves, and moved by the
    # traffic above (2 refused token requests, 1 key use).
    after = scrape(base_url)
    shown = {
        key: int(page.locator(f'div.total[data-total-of="{key}"]').get_attribute("data-total"))
        for key in ("rate_limited", "apikey_uses")
    }
    assert shown == {"rate_limited": refusals(after), "apikey_uses": value(after, "idp_apikey_uses_total")}
    assert shown["rate_limited"] - refusals(before) == 2
    assert shown["apikey_uses"] - value(before, "idp_apikey_uses_total") == 1
    routes = page.locator('div.total[data-total-of="rate_limited"] tr[data-route="/oauth/token/"]')
    expect(routes).to_be_visible()
    expect(page.locator("#totals")).to_contain_text("Since this web server started")

    # The numbers are there as text too, for those who do not see the chart.
    tokens = page.locator('figure[data-series="tokens"]')
    tokens.get_by_text("Tokens issued, hour by hour").click()
    expect(tokens.locator("details table tbody tr")).to_have_count(24)

    # The alerts the two failures raised, newest first, as the audit table has them.
    alerts = list(AuditEvent.objects.filter(action__in=ALERT_ACTIONS).order_by("-created_at", "-id"))
    assert [event.action for event in alerts] == ["alert.bruteforce", "alert.bruteforce"]
    rows = page.locator("tr.alert-row")
    expect(rows).to_have_count(2)
    assert [rows.nth(n).get_attribute("data-action") for n in range(2)] == [event.action for event in alerts]
    expect(page.locator("#alerts")).to_contain_text(watcher.username)  # the alert by account
    expect(page.locator("#alerts")).to_contain_text("address 127.0.0.1")  # the alert by address

    # The keys due: every active signing key rotates tomorrow; the API key in two days.
    for key in SigningKey.objects.filter(status=SigningKey.Status.ACTIVE):
        expect(page.locator(f'tr.due-signing-key[data-kid="{key.kid}"]')).to_have_attribute("data-overdue", "false")
    expect(page.locator("tr.due-signing-key")).to_have_count(3)
    due = page.locator(f'tr.due-apikey[data-public-id="{keys_due.key.public_id}"]')
    expect(due).to_contain_text("nightly export")
    expect(due).to_have_attribute("data-overdue", "false")

    # On a phone the page fits the screen: the charts scale down, the tables become cards.
    page.set_viewport_size(PHONE)
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    chart = page.locator('figure[data-series="tokens"] svg').bounding_box()
    assert chart is not None and 0 < chart["width"] <= PHONE["width"]
    assert problems == []


def _keep_error(message: ConsoleMessage, errors: list[str]) -> None:
    # Every console error counts (a CSP violation is one). A failed load is named by its URL below.
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        errors.append(message.text)


def _keep_failed_load(response: Response, errors: list[str]) -> None:
    # The browser asks for /favicon.ico on its own; the provider has none, and no page links one.
    if response.status >= 400 and not response.url.endswith("/favicon.ico"):
        errors.append(f"{response.status} {response.url}")
