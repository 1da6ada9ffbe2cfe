"""The staff activity overview (/dashboard/activity/, idp.pages.dashboard.ActivityView and idp.ops.activity)
through Django's test client: who may see it; that every chart carries, hour by hour, what the
audit table holds, and every total what this server's /metrics serves, with the events made by
real flows (token requests, sign-ins, lockouts, over-limit requests, API calls and introspections
with a key); the latest alerts and the keys due for rotation; a Redis outage; hostile query
strings and methods; and a query count that does not grow with the data. Under gunicorn, the
totals are the sum over its workers (the multiprocess files), as /metrics has them.

The page in a real browser is in test_activity_browser.py.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import pytest
import redis
import requests
import time_machine
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

import audit
from accounts.selectors import Caller
from accounts.services import admin_role_ensure, role_grant
from apikeys.services import apikey_create, apikey_revoke, apikey_use
from apikeys.tasks import record_apikey_uses
from apikeys.usage import LAST_USED_KEY
from audit.models import AuditEvent
from idp.keys.rotation import signing_keys_ensure
from idp.models import SigningKey
from idp.ops.activity import activity_hours, activity_overview
from idp.ops.metrics import counting_since
from tests.apikeys.conftest import basic_auth
from tests.factories import make_client, make_user, signed_in_client
from tests.ops.processes import Samples, gunicorn_start, gunicorn_stop, held_request, samples_of, scrape
from tests.relying_party import parse_form

PAGE = reverse("activity")
SYSTEM = audit.Actor.system("tests")
HOUR = timedelta(hours=1)
TOKEN_ACTIONS = ("token.issued", "token.refreshed")
SERIES = ["tokens", "failed_signins", "lockouts"]
TOTALS = ["rate_limited", "apikey_uses"]
FIGURE = re.compile(r'<figure class="chart" data-series="([^"]+)" data-total="(\d+)" data-max="(\d+)"')
BAR = re.compile(r'<g class="bar" data-hour="([^"]+)" data-count="(\d+)">\s*<title>([^<]*)</title>')
TOTAL = re.compile(r'<div class="total" data-total-of="([^"]+)" data-total="(\d+)">')
ROUTE = re.compile(r'<tr data-route="([^"]+)" data-count="(\d+)">')
WRONG_PASSWORD = "not-the-password"  # noqa: S105 - a test value


# --- Helpers --------------------------------------------------------------------------------------


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def charts(body: str) -> dict[str, dict]:
    """Each chart on the page: its figure's attributes and its bars, (hour, count, title) oldest first."""
    found = {}
    for part in body.split('<figure class="chart" ')[1:]:
        figure = FIGURE.match('<figure class="chart" ' + part)
        assert figure is not None
        series, total, peak = figure.groups()
        bars = [(datetime.fromisoformat(hour), int(count), title) for hour, count, title in BAR.findall(part)]
        found[series] = {"total": int(total), "max": int(peak), "bars": bars}
    return found


def totals(body: str) -> dict[str, dict]:
    """Each total on the page: its number and, for the 429s, the count of each URL route."""
    found = {}
    for part in body.split('<div class="total" ')[1:]:
        total = TOTAL.match('<div class="total" ' + part)
        assert total is not None
        # Routes with parameters ("<str:slug>") are HTML-escaped on the page.
        routes = {html.unescape(route): int(count) for route, count in ROUTE.findall(part)}
        found[total.group(1)] = {"total": int(total.group(2)), "routes": routes}
    return found


def scraped() -> Samples:
    """What this server's /metrics serves now (loopback may scrape in development)."""
    reply = Client().get("/metrics")
    assert reply.status_code == 200
    return samples_of(reply.content.decode())


def refusals_of(samples: Samples) -> dict[str, float]:
    """The 429 answers in a scrape, by URL route."""
    by_route: Counter[str] = Counter()
    for (name, labels), count in samples.items():
        if name == "idp_http_requests_total" and dict(labels)["status"] == "429" and count:
            by_route[dict(labels)["endpoint"]] += int(count)
    return dict(by_route)


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What changed between two counts by route, and by how much."""
    return {
        key: after.get(key, 0) - before.get(key, 0)
        for key in {*before, *after}
        if after.get(key, 0) != before.get(key, 0)
    }


def audited_per_hour(*actions: str) -> Counter[datetime]:
    """What the audit table holds, counted per UTC hour in Python: the page must agree."""
    counts: Counter[datetime] = Counter()
    for created_at in AuditEvent.objects.filter(action__in=actions).values_list("created_at", flat=True):
        counts[hour_of(created_at)] += 1
    return counts


def raw_redis() -> redis.Redis:
    return redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])


def assert_bars_match(chart: dict, expected: Counter[datetime]) -> None:
    hours = [hour for hour, _, _ in chart["bars"]]
    assert len(hours) == 24
    assert hours == [hours[0] + HOUR * n for n in range(24)], "24 consecutive UTC hours, oldest first"
    for hour, count, title in chart["bars"]:
        assert count == expected.get(hour, 0), hour
        assert title == f"{hour:%Y-%m-%d %H:%M} UTC: {count}"
    in_window = sum(count for hour, count in expected.items() if hours[0] <= hour <= hours[-1])
    assert chart["total"] == in_window
    assert chart["max"] == max(count for _, count, _ in chart["bars"])


def make_staff(*, is_staff: bool = True, may_view: bool = True, is_superuser: bool = False, codename="view_activity"):
    user = make_user()
    user.is_staff, user.is_superuser = is_staff, is_superuser
    user.save(update_fields=["is_staff", "is_superuser"])
    if may_view:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="idp", codename=codename))
    return user


def signed_in(user) -> Client:
    return signed_in_client(user)  # staff use the dashboard with a second factor


def sign_in_wrongly(username: str, *, ip: str) -> None:
    reply = Client(REMOTE_ADDR=ip).post(reverse("login"), {"username": username, "password": WRONG_PASSWORD})
    assert reply.status_code == 200  # the form again, with its error


def issue_token(machine) -> None:
    reply = Client().post(
        "/oauth/token/",
        {"grant_type": "client_credentials", "scope": "profile"},
        HTTP_AUTHORIZATION=basic_auth(machine.application.client_id, machine.client_secret),
    )
    assert reply.status_code == 200, reply.content


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Argon2 costs about half a second per user; this page is not about passwords."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]


@pytest.fixture(autouse=True)
def _no_bruteforce_counters():
    """The brute-force watch counts failures in Redis, which outlives test databases."""
    client = raw_redis()
    for key in client.scan_iter(match="*audit:failed-logins:*"):
        client.delete(key)


@pytest.fixture
def limits(settings):
    """Every rate limit generous, so a test lowers only the one it is about."""
    settings.IDP_RATE_LIMITS = {name: "1000/minute" for name in django_settings.IDP_RATE_LIMITS}
    return settings.IDP_RATE_LIMITS


@pytest.fixture
def staff(db):
    return make_staff()


@pytest.fixture
def as_staff(staff) -> Client:
    return signed_in(staff)


@pytest.fixture
def machine(db):
    return make_client(grant="client_credentials", redirect_uris=[], scopes=["profile"], is_resource_server=True)


@pytest.fixture
def key_owner(db):
    """A user holding idp-admin, so a key of theirs may call GET /api/v1/users/."""
    user = make_user()
    role_grant(role=admin_role_ensure(actor=SYSTEM), user=user, actor=SYSTEM)
    return user


def issue_key(owner, **options):
    admins = admin_role_ensure(actor=SYSTEM)
    arguments = {"name": "deploy script", "caller": Caller.operator(SYSTEM), "user": owner, "scopes": ["idp.manage"]}
    arguments["role_ids"] = [admins.pk]
    return apikey_create(**(arguments | options))


# --- Who may --------------------------------------------------------------------------------------


def test_signed_out_visitors_are_sent_to_sign_in(client, db):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={quote(PAGE)}"


REFUSED = {
    "staff-without-the-permission": {"is_staff": True, "may_view": False},
    "staff-who-may-only-rotate-keys": {"is_staff": True, "codename": "rotate_signingkey"},
    "permission-without-staff": {"is_staff": False, "may_view": True},
    "superuser-without-staff": {"is_staff": False, "may_view": False, "is_superuser": True},
}


@pytest.mark.parametrize("who", REFUSED)
def test_signed_in_without_staff_and_the_permission_is_403(db, who):
    response = signed_in(make_staff(**REFUSED[who])).get(PAGE)
    assert response.status_code == 403
    assert "Not allowed" in response.content.decode()  # our 403 page
    assert "data-series" not in response.content.decode()


@pytest.mark.parametrize(
    "who", [{"may_view": True}, {"may_view": False, "is_superuser": True}], ids=["staff", "superuser"]
)
def test_staff_with_the_permission_or_a_staff_superuser_see_the_page(db, who):
    response = signed_in(make_staff(**who)).get(PAGE)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert list(charts(response.content.decode())) == SERIES
    assert list(totals(response.content.decode())) == TOTALS


def test_the_nav_link_shows_only_to_those_who_may_see_the_page(as_staff):
    link = f'href="{PAGE}"'
    assert link in as_staff.get(reverse("apikeys:list")).content.decode()
    assert 'aria-current="page">Activity</a>' in as_staff.get(PAGE).content.decode()
    for user in (make_staff(may_view=False), make_staff(is_staff=False), make_staff(codename="rotate_signingkey")):
        assert link not in signed_in(user).get(reverse("apikeys:list")).content.decode()


# --- The charts carry what the audit table holds, the totals what /metrics serves ---------------------


def test_tokens_and_failed_sign_ins_per_hour_are_what_the_audit_table_holds(as_staff, machine, signing_key):
    now = timezone.now()
    victim = make_user()
    with time_machine.travel(now - 5 * HOUR):
        issue_token(machine)
        issue_token(machine)
        sign_in_wrongly(victim.username, ip="198.51.100.1")
    with time_machine.travel(now - 2 * HOUR):
        issue_token(machine)
    with time_machine.travel(now - 30 * HOUR):  # a day and more ago: outside the window
        issue_token(machine)
        sign_in_wrongly(victim.username, ip="198.51.100.2")
    another = make_user()  # five failures for one name would lock it out: the fifth is a 429
    for n in range(3):
        sign_in_wrongly(another.username, ip=f"198.51.100.{10 + n}")
    issue_token(machine)

    asked = hour_of(timezone.now())
    found = charts(as_staff.get(PAGE).content.decode())
    answered = hour_of(timezone.now())

    tokens, failures = audited_per_hour(*TOKEN_ACTIONS), audited_per_hour("login.failed")
    assert sum(tokens.values()) == 5 and sum(failures.values()) == 5
    assert_bars_match(found["tokens"], tokens)
    assert_bars_match(found["failed_signins"], failures)
    assert found["tokens"]["total"] == 4, "the token of 30 hours ago is outside the window"
    assert found["failed_signins"]["total"] == 4
    # The last bar is the hour still counting, and the events of five hours ago sit five bars left.
    bars = found["tokens"]["bars"]
    assert bars[-1][0] in {asked, answered}  # the page's hour, read between the two clocks
    assert {hour: count for hour, count, _ in bars}[hour_of(now - 5 * HOUR)] == 2


def test_the_hourly_buckets_follow_utc_hour_boundaries(db, machine, signing_key):
    boundary = hour_of(timezone.now()) - 3 * HOUR
    with time_machine.travel(boundary - timedelta(microseconds=1), tick=False):
        issue_token(machine)
    with time_machine.travel(boundary, tick=False):
        issue_token(machine)
        issue_token(machine)

    # Seen from two hours later, the same rows have moved two buckets left; oldest first throughout.
    for later in (0, 2):
        overview = activity_overview(now=timezone.now() + later * HOUR)
        [tokens] = [series for series in overview.series if series.key == "tokens"]
        counts = {bucket.hour: bucket.count for bucket in tokens.buckets}
        assert counts[boundary - HOUR] == 1
        assert counts[boundary] == 2
        assert tokens.total == 3
        assert [bucket.hour for bucket in tokens.buckets] == activity_hours(now=timezone.now() + later * HOUR)
        assert tokens.buckets[-1 - 3 - later].hour == boundary


def test_lockouts_per_hour_are_the_audit_tables_login_locked_out(as_staff, settings):
    settings.AXES_FAILURE_LIMIT = 2
    now = timezone.now()
    for back, address in ((7, "198.51.100.20"), (7, "198.51.100.21"), (0, "198.51.100.22")):
        victim = make_user()
        with time_machine.travel(now - back * HOUR):
            sign_in_wrongly(victim.username, ip=address)
            locked = Client(REMOTE_ADDR=address).post(
                reverse("login"), {"username": victim.username, "password": WRONG_PASSWORD}
            )
            assert locked.status_code == 429, "the second failure locks the account out"

    found = charts(as_staff.get(PAGE).content.decode())

    lockouts = audited_per_hour("login.locked_out")
    assert sum(lockouts.values()) == 3
    assert lockouts[hour_of(now - 7 * HOUR)] == 2
    assert_bars_match(found["lockouts"], lockouts)
    assert_bars_match(found["failed_signins"], audited_per_hour("login.failed"))


def test_every_429_is_counted_once_by_route_and_allowed_requests_are_not(
    as_staff, limits, machine, key_owner, settings
):
    before = totals(as_staff.get(PAGE).content.decode())["rate_limited"]
    # Under the limits: no refusal, nothing counted.
    issue_token(machine)
    assert totals(as_staff.get(PAGE).content.decode())["rate_limited"] == before

    # The middleware: two over-limit token requests.
    limits["token.ip"] = "1/minute"
    client = Client(REMOTE_ADDR="203.0.113.7")
    grant = {"grant_type": "client_credentials", "scope": "profile"}
    authorization = basic_auth(machine.application.client_id, machine.client_secret)
    statuses = [client.post("/oauth/token/", grant, HTTP_AUTHORIZATION=authorization).status_code for _ in range(3)]
    assert statuses == [200, 429, 429]
    # The API's per-user throttle (a DRF throttle, after authentication): one more.
    limits["api.user"] = "1/minute"
    secret = issue_key(key_owner).secret
    statuses = [Client().get("/api/v1/users/", HTTP_X_API_KEY=secret).status_code for _ in range(2)]
    assert statuses == [200, 429]
    # The sign-in lockout's page is a 429 too.
    settings.AXES_FAILURE_LIMIT = 2
    victim = make_user()
    lockout = [
        Client(REMOTE_ADDR="203.0.113.8")
        .post(reverse("login"), {"username": victim.username, "password": WRONG_PASSWORD})
        .status_code
        for _ in range(3)
    ]
    assert lockout.count(429) >= 1

    after = totals(as_staff.get(PAGE).content.decode())["rate_limited"]
    samples = scraped()

    assert after["total"] - before["total"] == 2 + 1 + lockout.count(429)
    assert moved(before["routes"], after["routes"]) == {
        "/oauth/token/": 2,
        "/api/v1/users/": 1,
        "/accounts/login/": lockout.count(429),
    }
    # The page reads the numbers /metrics serves: the request counter by status, nothing else.
    assert after["routes"] == refusals_of(samples)
    assert after["total"] == sum(refusals_of(samples).values())


def test_api_key_uses_are_counted_through_calls_and_introspection(as_staff, key_owner, machine):
    before = totals(as_staff.get(PAGE).content.decode())["apikey_uses"]["total"]
    issued = issue_key(key_owner)
    for header in ({"HTTP_X_API_KEY": issued.secret}, {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}):
        assert Client().get("/api/v1/users/", **header).status_code == 200
    reply = Client().post(
        "/oauth/introspect/",
        {"token": issued.secret},
        HTTP_AUTHORIZATION=basic_auth(machine.application.client_id, machine.client_secret),
    )
    assert reply.json()["active"] is True
    # A key that does not verify is no use of a key.
    revoked = issue_key(key_owner, name="old")
    apikey_revoke(key_id=revoked.key.pk, actor=SYSTEM)
    assert Client().get("/api/v1/users/", HTTP_X_API_KEY=revoked.secret).status_code == 401
    assert Client().get("/api/v1/users/", HTTP_X_API_KEY="idpk_AAAAAAAAAAAA_" + "x" * 49).status_code == 401

    after = totals(as_staff.get(PAGE).content.decode())["apikey_uses"]["total"]
    assert after - before == 3
    assert after == scraped()[("idp_apikey_uses_total", frozenset())]
    # The last use is noted in Redis and written behind the requests, by the beat task.
    assert raw_redis().hget(LAST_USED_KEY, issued.key.public_id) is not None
    record_apikey_uses()
    issued.key.refresh_from_db()
    assert issued.key.last_used_at is not None


def test_the_page_says_where_each_number_comes_from_and_since_when(as_staff):
    body = as_staff.get(PAGE).content.decode()
    since = counting_since()
    assert f'<time class="totals-since" datetime="{since.isoformat()}">' in body
    assert since <= timezone.now()
    for source in (
        "Audit log: token.issued and token.refreshed",
        "Audit log: login.failed",
        "Audit log: login.locked_out",
    ):
        assert source in body
    assert "Prometheus: idp_http_requests_total{status=&quot;429&quot;}" in body
    assert "Prometheus: idp_apikey_uses_total" in body
    assert "sum(increase(idp_apikey_uses_total[1h]))" in body
    assert "Redis" not in body.split('id="totals-heading"')[0], "no chart claims a Redis counter"


def test_an_empty_day_is_24_zero_bars(as_staff):
    found = charts(as_staff.get(PAGE).content.decode())
    for series in SERIES:
        assert_bars_match(found[series], Counter())
        assert found[series]["total"] == 0


def test_with_redis_unreachable_a_key_still_verifies_is_counted_and_the_page_shows(
    as_staff, key_owner, settings, caplog
):
    issued = issue_key(key_owner)
    before = totals(as_staff.get(PAGE).content.decode())["apikey_uses"]["total"]
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    # A key that verifies still verifies and is counted (in this process, no network): only the
    # last-use note is lost, with a warning. (The service is called directly: other parts of
    # an API call need the cache too.)
    assert apikey_use(presented=issued.secret) is not None
    issued.key.refresh_from_db()
    assert issued.key.last_used_at is None
    messages = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert "API key last use not recorded: Redis is unavailable" in messages

    response = as_staff.get(PAGE)
    assert response.status_code == 200
    assert list(charts(response.content.decode())) == SERIES
    assert totals(response.content.decode())["apikey_uses"]["total"] == before + 1


def test_under_gunicorn_the_totals_are_every_workers_as_its_metrics_serve(transactional_db, tmp_path):
    """Two gunicorn workers both refuse sign-ins (a lockout after one failure): one while it reads a
    held request, the other meanwhile. Whichever answers the page, its totals are both workers',
    as /metrics has them, and counted since this server started."""
    browser = signed_in_client(make_staff())
    session = browser.cookies[django_settings.SESSION_COOKIE_NAME].value
    token = "metrics-token-" + "x" * 32
    before_start = timezone.now().replace(microsecond=0)
    server = gunicorn_start(tmp_path / "gunicorn.log", IDP_METRICS_TOKEN=token, IDP_LOCKOUT_FAILURES="1")
    try:
        visitor = requests.Session()
        _action, fields = parse_form(visitor.get(f"{server.url}/accounts/login/", timeout=10).text)
        fields.update(username="nobody-by-this-name", password=WRONG_PASSWORD)
        login = f"{server.url}/accounts/login/"
        assert visitor.post(login, data=fields, timeout=30).status_code == 429, "locked out at the first failure"
        cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in visitor.cookies)
        head = (
            f"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nCookie: {cookies}\r\n"
            "Content-Type: application/x-www-form-urlencoded"
        )
        with held_request(server, head, urlencode(fields).encode()) as held:
            for _ in range(3):  # answered by the other worker
                assert visitor.post(login, data=fields, timeout=30).status_code == 429
        assert held[0].startswith(b"HTTP/1.1 429"), held[0][:200]

        page = requests.get(
            f"{server.url}/dashboard/activity/", cookies={django_settings.SESSION_COOKIE_NAME: session}, timeout=30
        )
        samples = scrape(server.url, token)
    finally:
        gunicorn_stop(server)

    assert page.status_code == 200
    found = totals(page.text)["rate_limited"]
    assert found["routes"] == {"/accounts/login/": 5} == refusals_of(samples)
    assert found["total"] == 5
    since = datetime.fromisoformat(re.search(r'<time class="totals-since" datetime="([^"]+)"', page.text).group(1))
    assert before_start <= since <= timezone.now(), "counted since this server started"


# --- Alerts and keys due --------------------------------------------------------------------------


def test_the_latest_alerts_come_from_real_flows_newest_first(as_staff, settings):
    settings.AUDIT_BRUTEFORCE_THRESHOLD = 2
    victim = make_user()
    for n in range(2):
        sign_in_wrongly(victim.username, ip=f"198.51.100.{40 + n}")

    body = as_staff.get(PAGE).content.decode()

    expected = list(
        AuditEvent.objects.filter(action__in=["alert.bruteforce", "login.locked_out", "token.reuse_detected"])
        .order_by("-created_at", "-id")
        .values_list("action", flat=True)
    )
    assert expected == ["alert.bruteforce"]
    rows = re.findall(r'<tr class="alert-row" data-action="([^"]+)">', body)
    assert rows == expected
    alerts = body.split('id="alerts-heading"')[1].split("</section>")[0]
    assert victim.username in alerts
    assert "failures: 2" in alerts
    assert "token.issued" not in alerts and "login.failed" not in alerts


def test_no_more_than_ten_alerts_are_listed(as_staff):
    for n in range(12):
        audit.record(audit.Action.ALERT_BRUTEFORCE, actor=SYSTEM, outcome="alert", data={"by": "ip", "n": n})
    body = as_staff.get(PAGE).content.decode()
    assert len(re.findall(r'<tr class="alert-row"', body)) == 10
    assert "n: 11" in body and "n: 1<" not in body and "n: 0<" not in body


def test_keys_due_within_a_week_are_listed_overdue_first(as_staff, key_owner, settings):
    settings.SIGNING_KEY_ROTATION_SECONDS = 30 * 24 * 3600
    now = timezone.now()
    for algorithms, made in ((["RS256"], now - timedelta(days=31)), (["RS256", "ES256"], now - timedelta(days=25))):
        settings.SIGNING_ALGORITHMS = algorithms
        signing_keys_ensure(actor=SYSTEM, now=made)
    settings.SIGNING_ALGORITHMS = ["RS256", "ES256", "EdDSA"]
    signing_keys_ensure(actor=SYSTEM, now=now)  # EdDSA rotates in 30 days: not listed
    active = {key.algorithm: key for key in SigningKey.objects.filter(status="active")}

    overdue = issue_key(key_owner, name="overdue", rotate_every=HOUR, now=now - 3 * HOUR)
    soon = issue_key(key_owner, name="soon", rotate_every=timedelta(days=12), now=now - timedelta(days=10))
    issue_key(key_owner, name="later", rotate_every=timedelta(days=30))
    revoked = issue_key(key_owner, name="revoked", rotate_every=HOUR)
    apikey_revoke(key_id=revoked.key.pk, actor=SYSTEM)

    body = as_staff.get(PAGE).content.decode()

    signing = re.findall(r'<tr class="due-signing-key" data-kid="([^"]+)" data-overdue="(\w+)">', body)
    assert signing == [(active["RS256"].kid, "true"), (active["ES256"].kid, "false")]
    apikeys = re.findall(r'<tr class="due-apikey" data-public-id="([^"]+)" data-overdue="(\w+)">', body)
    assert apikeys == [(overdue.key.public_id, "true"), (soon.key.public_id, "false")]
    assert key_owner.username in body.split('id="apikeys-due-heading"')[1]


# --- Hostile requests and cost ------------------------------------------------------------------------

HOSTILE_QUERIES = [
    "hours=-1",
    "hours=99999999999999999999",
    "since=' OR 1=1 --",
    "series=<script>alert(1)</script>",
    "%ff%fe=%00",
    "a=" + "x" * 5000,
    "hours=1&hours=2",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=["neg", "huge", "sql", "xss", "bytes", "long", "repeat"])
def test_hostile_query_strings_never_fail_the_page(as_staff, query):
    response = as_staff.get(f"{PAGE}?{query}")
    assert response.status_code in (200, 400)
    body = response.content.decode()
    assert "<script>alert" not in body and "Traceback" not in body
    if response.status_code == 200:
        assert list(charts(body)) == SERIES
        assert list(totals(body)) == TOTALS


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_other_methods_are_405_and_change_nothing(as_staff, method):
    before = AuditEvent.objects.count()
    assert getattr(as_staff, method)(PAGE).status_code == 405
    assert AuditEvent.objects.count() == before


def test_head_and_options_do_not_fail(as_staff):
    assert as_staff.head(PAGE).status_code == 200
    assert as_staff.options(PAGE).status_code < 500


def _page_queries(browser: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert browser.get(PAGE).status_code == 200
    return len(queries.captured_queries)


def test_the_query_count_does_not_grow_with_the_data(staff, machine, key_owner, signing_key, settings):
    """One grouped query for the audit series, one each for alerts, their users and the keys due:
    never one per hour, per alert or per key."""
    settings.AUDIT_BRUTEFORCE_THRESHOLD = 2
    browser = signed_in(staff)
    victim = make_user()
    issue_token(machine)
    for n in range(2):
        sign_in_wrongly(victim.username, ip=f"198.51.100.{60 + n}")
    issue_key(key_owner, name="due", rotate_every=HOUR, now=timezone.now() - 2 * HOUR)
    sparse = _page_queries(browser)

    now = timezone.now()
    for back in range(1, 20, 3):
        with time_machine.travel(now - back * HOUR):
            issue_token(machine)
            sign_in_wrongly(make_user().username, ip=f"198.51.100.{70 + back}")
    for n in range(8):
        victim = make_user()
        for attempt in range(2):
            sign_in_wrongly(victim.username, ip=f"203.0.113.{n * 2 + attempt + 1}")
        issue_key(key_owner, name=f"due {n}", rotate_every=HOUR, now=now - 2 * HOUR)
    busy = _page_queries(browser)

    assert busy == sparse
    assert busy <= 12
