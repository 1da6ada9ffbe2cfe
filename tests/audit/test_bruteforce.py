"""The brute-force watch: failed sign-ins on the real sign-in page, counted per account and per
source IP in Redis within a window, raise one alert.bruteforce event and one WARNING log line at
the threshold (settings AUDIT_BRUTEFORCE_THRESHOLD / AUDIT_BRUTEFORCE_WINDOW_SECONDS)."""

from __future__ import annotations

import json
import logging
import secrets

import pytest
from django.test import Client

from audit.models import AuditEvent
from tests.factories import USER_PASSWORD, make_user, post_sign_in_form
from tests.redis_keys import expire_now, raw_redis

THRESHOLD = 3
WINDOW_SECONDS = 60
WRONG_PASSWORD = "hunter2-but-wrong"  # noqa: S105 (a test value: it must never be recorded or logged)
COUNTERS = "*audit:failed-logins:*"


def _clear_counters() -> None:
    client = raw_redis()
    for key in client.scan_iter(match=COUNTERS):
        client.delete(key)


@pytest.fixture(autouse=True)
def watch(settings):
    """Threshold 3 in 60 seconds, and no counters left from other tests: Redis outlives test
    databases."""
    settings.AUDIT_BRUTEFORCE_THRESHOLD = THRESHOLD
    settings.AUDIT_BRUTEFORCE_WINDOW_SECONDS = WINDOW_SECONDS
    _clear_counters()
    yield
    _clear_counters()


@pytest.fixture
def victim(db):
    return make_user(username=f"victim-{secrets.token_hex(4)}")


def sign_in(username: str, *, ip: str, password: str = WRONG_PASSWORD, client: Client | None = None):
    """The sign-in form posted from that address (factories.post_sign_in_form), with a wrong
    password unless told otherwise."""
    return post_sign_in_form(username, password, ip=ip, client=client)


def alerts() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="alert.bruteforce").order_by("id"))


def watch_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "audit" and record.levelno == logging.WARNING]


def test_failures_for_one_account_alert_once_at_the_threshold(victim, caplog):
    caplog.set_level(logging.WARNING, logger="audit")
    # Each attempt from its own address: only the account's counter can reach the threshold.
    for attempt in range(1, THRESHOLD):
        assert sign_in(victim.username, ip=f"198.51.100.{attempt}").status_code == 200, "the form again"
    assert alerts() == [], "not before the threshold"
    assert watch_lines(caplog) == []

    sign_in(victim.username, ip=f"198.51.100.{THRESHOLD}")
    [alert] = alerts()
    assert (alert.actor_type, alert.actor_id, alert.target_type, alert.target_id, alert.outcome) == (
        "system",
        "bruteforce-watch",
        "user",
        str(victim.pk),
        "alert",
    )
    assert alert.data == {"by": "account", "failures": THRESHOLD, "window_seconds": WINDOW_SECONDS}
    [line] = watch_lines(caplog)
    assert line.event == "alert.bruteforce"
    assert line.getMessage().startswith("alert.bruteforce by=account failures=3 window_seconds=60")
    assert f"user_id={victim.pk}" in line.getMessage()
    assert victim.username not in line.getMessage() and WRONG_PASSWORD not in line.getMessage()

    for attempt in range(THRESHOLD + 1, THRESHOLD + 4):
        sign_in(victim.username, ip=f"198.51.100.{attempt}")
    assert len(alerts()) == 1, "not again within the window"
    assert len(watch_lines(caplog)) == 1
    failed = AuditEvent.objects.filter(action="login.failed", target_type="user", target_id=str(victim.pk))
    assert failed.count() == THRESHOLD + 3, "every failure is recorded all the same"


def test_failures_from_one_address_alert_once_across_usernames(db, caplog):
    caplog.set_level(logging.WARNING, logger="audit")
    ip = "203.0.113.7"
    names = [
        make_user().username,
        f"nobody-{secrets.token_hex(4)}",
        make_user().username,
        f"ghost-{secrets.token_hex(4)}",
    ]
    for name in names[: THRESHOLD - 1]:
        sign_in(name, ip=ip)
    assert alerts() == []

    for name in names[THRESHOLD - 1 :]:
        sign_in(name, ip=ip)
    [alert] = alerts()
    assert (alert.actor_type, alert.target_type, alert.target_id, alert.source_ip) == ("system", "", "", ip)
    assert alert.data == {
        "by": "ip",
        "failures": THRESHOLD,
        "window_seconds": WINDOW_SECONDS,
        "source_ip": ip,
    }
    [line] = watch_lines(caplog)
    assert line.event == "alert.bruteforce"
    assert line.getMessage().startswith("alert.bruteforce by=ip failures=3")
    assert f"source_ip={ip}" in line.getMessage()
    assert not any(name in line.getMessage() for name in names)


def test_an_unknown_username_counts_per_name_and_per_address_without_being_recorded(db, caplog):
    caplog.set_level(logging.WARNING, logger="audit")
    unknown = f"Typo-{secrets.token_hex(6)}"  # a password typed in the username field, maybe
    for attempt in range(THRESHOLD):
        # Case does not make another account: Typo-x and typo-x count together.
        sign_in(unknown if attempt % 2 else unknown.lower(), ip=f"192.0.2.{attempt + 1}")

    [alert] = alerts()
    assert (alert.target_type, alert.target_id) == ("", "")
    assert alert.data == {"by": "account", "failures": THRESHOLD, "window_seconds": WINDOW_SECONDS}
    failed = list(AuditEvent.objects.filter(action="login.failed"))
    assert len(failed) == THRESHOLD
    assert all((event.target_id, event.data) == ("", {"account": "unknown"}) for event in failed)
    recorded = json.dumps([event.as_chain_event() for event in AuditEvent.objects.all()])
    assert unknown.lower() not in recorded.lower(), "the name is in no event"
    [line] = watch_lines(caplog)
    assert "user_id=-" in line.getMessage() and unknown.lower() not in line.getMessage().lower()

    # And per address: the same unknown name is no way around the IP counter.
    for _ in range(THRESHOLD):
        sign_in(f"other-{secrets.token_hex(4)}", ip="192.0.2.200")
    assert [event.data["by"] for event in alerts()] == ["account", "ip"]


def test_the_counters_are_in_redis_shared_by_every_client_and_process(victim):
    # Two browsers (own cookies, own CSRF tokens) from one address.
    sign_in(victim.username, ip="198.51.100.50", client=Client(enforce_csrf_checks=True))
    sign_in(victim.username, ip="198.51.100.50", client=Client(enforce_csrf_checks=True))

    # A separate connection to the Redis server, as another process would have.
    server = raw_redis()
    counters = {key.decode().split("audit:failed-logins:", 1)[1]: key for key in server.scan_iter(match=COUNTERS)}
    assert sorted(kind.split(":")[0] for kind in counters) == ["account", "ip"]
    for key in counters.values():
        assert int(server.get(key)) == 2
        assert 0 < server.ttl(key) <= WINDOW_SECONDS, "the window is the counter's lifetime"
    assert "ip:198.51.100.50" in counters
    assert not any(victim.username in kind for kind in counters), "the account is keyed by a digest"

    sign_in(victim.username, ip="198.51.100.51")
    assert len(alerts()) == 1, "the third failure, wherever it came from, reaches the threshold"


def test_a_new_window_counts_from_zero_again(victim):
    for attempt in range(THRESHOLD):
        sign_in(victim.username, ip=f"198.51.100.{100 + attempt}")
    assert len(alerts()) == 1

    # The window ends: Redis expires the counters (brought forward, not waited for).
    ended = expire_now(COUNTERS)
    assert ended and all(0 < seconds_left <= WINDOW_SECONDS for seconds_left in ended.values()), ended
    for attempt in range(THRESHOLD - 1):
        sign_in(victim.username, ip=f"198.51.100.{110 + attempt}")
    assert len(alerts()) == 1, "a fresh count, below the threshold"
    sign_in(victim.username, ip="198.51.100.120")
    assert len(alerts()) == 2, "the next window's threshold alerts again"


def test_a_successful_sign_in_is_not_counted(victim):
    for _ in range(THRESHOLD):
        reply = sign_in(victim.username, ip="198.51.100.77", password=USER_PASSWORD)
        assert reply.status_code == 302
    assert alerts() == []
    assert list(
        AuditEvent.objects.filter(target_type="user", target_id=str(victim.pk)).values_list("action", flat=True)
    ) == [
        "user.created",
        *["login.succeeded"] * THRESHOLD,
    ]
