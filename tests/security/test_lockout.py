"""Sign-in lockout (django-axes) through the sign-in page: repeated failures lock out a username,
and separately an address, for a cool-off; the locked-out answer is the same whether or not the
account exists; the lockout is audited once; a successful sign-in resets the count."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from audit.models import AuditEvent
from tests.factories import USER_PASSWORD, make_user, post_sign_in_form
from tests.redis_keys import expire_now

LIMIT = 3
WRONG_PASSWORD = "not-the-password-at-all"  # noqa: S105 (a test value)
LOCKED_MESSAGE = "Too many failed sign-ins. Try again later."


@pytest.fixture(autouse=True)
def lockout(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


@pytest.fixture
def victim(db):
    return make_user(username=f"victim-{secrets.token_hex(4)}")


def sign_in(username: str, *, ip: str, password: str = WRONG_PASSWORD):
    """The sign-in form posted from that address (factories.post_sign_in_form), with a wrong
    password unless told otherwise."""
    return post_sign_in_form(username, password, ip=ip)


def assert_locked(reply) -> None:
    assert reply.status_code == 429
    assert LOCKED_MESSAGE in reply.content.decode()
    assert int(reply["Retry-After"]) > 0


def lockouts() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="login.locked_out").order_by("id"))


def test_failures_for_one_username_lock_it_even_with_the_right_password(victim):
    for attempt in range(LIMIT - 1):
        assert sign_in(victim.username, ip=f"198.51.100.{attempt + 1}").status_code == 200, "the form again"
    assert_locked(sign_in(victim.username, ip="198.51.100.10"))
    assert_locked(sign_in(victim.username, ip="198.51.100.11", password=USER_PASSWORD))
    assert sign_in(make_user().username, ip="198.51.100.12", password=USER_PASSWORD).status_code == 302, (
        "other accounts sign in"
    )


def test_a_username_that_is_no_account_gets_the_same_answer(victim):
    ghost = f"ghost-{secrets.token_hex(4)}"
    replies = {}
    for name in (victim.username, ghost):
        for attempt in range(LIMIT):
            sign_in(name, ip=f"192.0.2.{attempt + 1}")
        replies[name] = sign_in(name, ip="192.0.2.50", password=USER_PASSWORD)
    for reply in replies.values():
        assert_locked(reply)
    assert replies[victim.username].content == replies[ghost].content
    assert replies[victim.username]["Retry-After"] == replies[ghost]["Retry-After"]


def test_failures_from_one_address_across_usernames_lock_the_address(victim):
    ip = "203.0.113.7"
    for _ in range(LIMIT):
        sign_in(f"someone-{secrets.token_hex(4)}", ip=ip)
    assert_locked(sign_in(victim.username, ip=ip, password=USER_PASSWORD))
    assert sign_in(victim.username, ip="203.0.113.8", password=USER_PASSWORD).status_code == 302, (
        "the account itself is not locked"
    )


def test_the_lockout_ends_after_the_cool_off(victim, settings):
    for attempt in range(LIMIT):
        sign_in(victim.username, ip=f"198.51.100.{attempt + 1}")
    assert_locked(sign_in(victim.username, ip="198.51.100.20", password=USER_PASSWORD))

    # The cool-off ends: Redis expires the failure counters (brought forward, not waited for).
    ended = expire_now("*:axes-*")
    cool_off = settings.AXES_COOLOFF_TIME.total_seconds()
    assert ended and all(0 < seconds_left <= cool_off for seconds_left in ended.values()), ended
    assert sign_in(victim.username, ip="198.51.100.21", password=USER_PASSWORD).status_code == 302


def test_the_lockout_is_audited_once(victim):
    for attempt in range(LIMIT + 3):
        sign_in(victim.username, ip=f"198.51.100.{attempt + 1}")
    sign_in(victim.username, ip="198.51.100.99", password=USER_PASSWORD)

    [event] = lockouts()
    assert (event.actor_type, event.actor_id, event.target_type, event.target_id, event.outcome) == (
        "anonymous",
        "",
        "user",
        str(victim.pk),
        "alert",
    )
    assert event.data == {"failures": LIMIT}
    assert AuditEvent.objects.filter(action="login.failed").count() == LIMIT + 4, "every attempt is still recorded"


def test_a_lockout_of_a_name_that_is_no_account_does_not_record_the_name(db):
    ghost = f"Ghost-{secrets.token_hex(6)}"
    for attempt in range(LIMIT):
        sign_in(ghost, ip=f"192.0.2.{attempt + 1}")
    [event] = lockouts()
    assert (event.target_type, event.target_id, event.data) == ("", "", {"failures": LIMIT, "account": "unknown"})
    assert ghost.lower() not in str(event.as_chain_event()).lower()


def test_a_successful_sign_in_resets_the_count(victim):
    ip = "198.51.100.30"
    for _ in range(LIMIT - 1):
        sign_in(victim.username, ip=ip)
    assert sign_in(victim.username, ip=ip, password=USER_PASSWORD).status_code == 302
    for _ in range(LIMIT - 1):
        assert sign_in(victim.username, ip=ip).status_code == 200
    assert sign_in(victim.username, ip=ip, password=USER_PASSWORD).status_code == 302
    assert lockouts() == []
