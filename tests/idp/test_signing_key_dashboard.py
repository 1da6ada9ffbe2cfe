"""The staff page of signing keys (/dashboard/signing-keys/, idp.pages.dashboard) through Django's test
client: who may see it and press "rotate now", what rotate-now does to a key chain whose next
key was published long enough ago and to one whose next key is too young, the audit trail,
CSRF, and hostile algorithm segments (a 404, nothing changed).

The whole flow in a real browser is in test_signing_key_dashboard_browser.py.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import audit
from audit.models import AuditEvent
from idp.keys.rotation import signing_keys_ensure
from idp.keys.signing import signed_token_lifetime
from idp.models import SigningKey
from tests.factories import make_staff, signed_in_client

PAGE = reverse("signing-keys")
ALGORITHMS = ["RS256", "ES256", "EdDSA"]
SYSTEM = audit.Actor.system("tests")
ROW = re.compile(r'<tr data-kid="([^"]+)" data-status="([^"]+)">')


def rotate_url(algorithm: str) -> str:
    return f"/dashboard/signing-keys/{quote(algorithm, safe='')}/rotate/"


def utc_text(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def chain(algorithm: str) -> dict[str, SigningKey]:
    """The algorithm's next and active key, by status (retired keys are in `retired`)."""
    keys = SigningKey.objects.filter(algorithm=algorithm).exclude(status=SigningKey.Status.RETIRED)
    return {key.status: key for key in keys}


def key_rows(**filters: str) -> list[tuple]:
    return list(
        SigningKey.objects.filter(**filters)
        .order_by("pk")
        .values_list("kid", "algorithm", "status", "activated_at", "rotate_at", "retired_at", "withdraw_at")
    )


def snapshot() -> dict[str, object]:
    """What a refused or repeated request must leave as it was."""
    return {"keys": key_rows(), "audit": AuditEvent.objects.count()}


def key_keeper(*, is_staff: bool = True, may_rotate: bool = True, is_superuser: bool = False):
    """Staff (or not) holding idp.rotate_signingkey (or not)."""
    may = ["idp.rotate_signingkey"] if may_rotate else []
    return make_staff(model_permissions=may, staff=is_staff, superuser=is_superuser)


@pytest.fixture(autouse=True)
def _prepublish_one_day(settings):
    """The window the messages name: pinned, so the expected texts do not depend on the environment."""
    settings.SIGNING_KEY_PREPUBLISH_SECONDS = 24 * 3600


@pytest.fixture
def old_keys(db):
    """Every chain made two days ago: each next key has been published longer than the window."""
    signing_keys_ensure(actor=SYSTEM, now=timezone.now() - timedelta(days=2))


@pytest.fixture
def staff(db):
    return key_keeper()


@pytest.fixture
def as_staff(staff) -> Client:
    return signed_in_client(staff)


# --- Who may --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [("get", PAGE), ("post", rotate_url("RS256"))], ids=["page", "rotate"])
def test_signed_out_visitors_are_sent_to_sign_in(client, signing_key, method, path):
    before = snapshot()
    response = getattr(client, method)(path)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={quote(path)}"
    assert snapshot() == before


REFUSED = {
    "staff-without-the-permission": {"is_staff": True, "may_rotate": False},
    "permission-without-staff": {"is_staff": False, "may_rotate": True},
    "superuser-without-staff": {"is_staff": False, "may_rotate": False, "is_superuser": True},
}


@pytest.mark.parametrize("who", REFUSED)
@pytest.mark.parametrize("method, path", [("get", PAGE), ("post", rotate_url("RS256"))], ids=["page", "rotate"])
def test_signed_in_without_staff_and_the_permission_is_403(old_keys, who, method, path):
    browser = signed_in_client(key_keeper(**REFUSED[who]))
    before = snapshot()
    response = getattr(browser, method)(path)
    assert response.status_code == 403
    assert "Not allowed" in response.content.decode()  # our 403 page
    assert snapshot() == before


def test_a_staff_superuser_may(signing_key):
    response = signed_in_client(key_keeper(may_rotate=False, is_superuser=True)).get(PAGE)
    assert response.status_code == 200


def test_the_nav_link_shows_only_to_those_who_may_rotate(signing_key, as_staff):
    link = f'href="{PAGE}"'
    assert link in as_staff.get(reverse("apikeys:list")).content.decode()
    for user in (key_keeper(may_rotate=False), key_keeper(is_staff=False)):
        assert link not in signed_in_client(user).get(reverse("apikeys:list")).content.decode()


# --- The page -------------------------------------------------------------------------------------


def test_the_page_lists_every_key_by_algorithm_with_its_status(signing_key, as_staff):
    response = as_staff.get(PAGE)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()

    rows = ROW.findall(body)
    expected = SigningKey.objects.values_list("kid", "status")
    assert len(rows) == 6
    assert sorted(rows) == sorted(expected)
    # One section per configured algorithm, in settings order, each with its next and active key.
    sections = re.findall(r'<section class="signing-chain" data-algorithm="([^"]+)"', body)
    assert sections == ALGORITHMS
    for algorithm, section in zip(ALGORITHMS, body.split('<section class="signing-chain"')[1:], strict=True):
        keys = chain(algorithm)
        assert ROW.findall(section) == [(keys["next"].kid, "next"), (keys["active"].kid, "active")]
        assert f'action="{rotate_url(algorithm)}"' in section
        assert 'name="csrfmiddlewaretoken"' in section
        assert f'<time datetime="{keys["active"].rotate_at.isoformat()}">' in section
        # Made just now: the next key may take over only once the window has passed.
        ready_at = keys["next"].created_at + timedelta(days=1)
        assert f'it can take over at <time datetime="{ready_at.isoformat()}">{utc_text(ready_at)}</time>' in section
    assert "the old key stays published in the JWKS until the last token it signed has expired" in body


def test_the_page_says_nothing_about_waiting_when_the_next_keys_are_ready(old_keys, as_staff):
    body = as_staff.get(PAGE).content.decode()
    assert len(ROW.findall(body)) == 6
    assert "can take over at" not in body


def test_keys_of_an_algorithm_no_longer_configured_are_listed_but_not_rotatable(old_keys, as_staff, settings):
    settings.SIGNING_ALGORITHMS = ["RS256", "EdDSA"]
    body = as_staff.get(PAGE).content.decode()
    es256 = body.split('data-algorithm="ES256"')[1]
    assert len(ROW.findall(es256)) == 2
    assert "is no longer in IDP_SIGNING_ALGORITHMS" in es256
    assert rotate_url("ES256") not in body
    before = snapshot()
    assert as_staff.post(rotate_url("ES256")).status_code == 404
    assert snapshot() == before


# --- Rotate now -----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_rotate_now_hands_over_to_a_next_key_published_long_enough(old_keys, staff, as_staff, algorithm):
    before = chain(algorithm)
    others = key_rows(algorithm__in=[other for other in ALGORITHMS if other != algorithm])

    response = as_staff.post(rotate_url(algorithm), follow=True)

    assert response.redirect_chain == [(PAGE, 302)]
    after = chain(algorithm)
    assert after["active"].kid == before["next"].kid
    assert after["next"].kid not in {before["next"].kid, before["active"].kid}  # a new next key, published now
    old = SigningKey.objects.get(kid=before["active"].kid)
    assert old.status == SigningKey.Status.RETIRED
    assert old.retired_at == after["active"].activated_at, "one moment: the handover"
    assert old.withdraw_at == old.retired_at + signed_token_lifetime(), "published until its last token expires"
    assert key_rows(algorithm__in=[other for other in ALGORITHMS if other != algorithm]) == others  # untouched

    event = AuditEvent.objects.get(action="signing_key.rotated")
    assert (event.actor_type, event.actor_id) == ("user", str(staff.pk))
    assert (event.data["kid"], event.data["previous_kid"]) == (before["next"].kid, before["active"].kid)

    assert messages_of(response) == [
        f"{algorithm}: key {before['next'].kid} now signs; "
        f"the previous key stays published until {utc_text(old.withdraw_at)}."
    ]
    body = response.content.decode()
    assert f'<tr data-kid="{old.kid}" data-status="retired">' in body
    assert f'<tr data-kid="{before["next"].kid}" data-status="active">' in body


def test_rotate_now_with_a_young_next_key_brings_the_rotation_forward(signing_key, as_staff):
    before = chain("ES256")
    ready_at = before["next"].created_at + timedelta(days=1)

    response = as_staff.post(rotate_url("ES256"), follow=True)

    after = chain("ES256")
    assert {status: key.kid for status, key in after.items()} == {s: k.kid for s, k in before.items()}
    assert after["active"].rotate_at == ready_at  # the scheduled pass hands over then
    assert not SigningKey.objects.filter(status=SigningKey.Status.RETIRED).exists()
    assert not AuditEvent.objects.filter(action="signing_key.rotated").exists()
    assert messages_of(response) == [
        f"ES256: the next key has been published for less than 1 day; it takes over at {utc_text(ready_at)}."
    ]
    assert html.escape(utc_text(ready_at)) in response.content.decode()

    # Pressing again changes nothing more.
    once = snapshot()
    again = as_staff.post(rotate_url("ES256"), follow=True)
    assert snapshot() == once
    assert messages_of(again) == messages_of(response)


def test_pressing_twice_after_a_rotation_does_not_rotate_the_fresh_next_key(old_keys, as_staff):
    as_staff.post(rotate_url("RS256"), follow=True)
    rotated = snapshot()
    response = as_staff.post(rotate_url("RS256"), follow=True)
    # The new next key was published just now: the second press only schedules, it never rotates.
    assert AuditEvent.objects.filter(action="signing_key.rotated").count() == 1
    assert [row[:3] for row in snapshot()["keys"]] == [row[:3] for row in rotated["keys"]]
    [message] = messages_of(response)
    assert message.startswith("RS256: the next key has been published for less than 1 day; it takes over at ")


# --- Refusals -------------------------------------------------------------------------------------

# Hostile algorithm segments (every other hostile-input test is listed in tests/hostile.py).
HOSTILE = ["HS256", "none", "rs256", "RS256\x00", "R" * 10_240, "' OR 1=1 --", "<script>alert(1)</script>"]


@pytest.mark.parametrize("algorithm", HOSTILE, ids=["hs256", "none", "lowercase", "nul", "10kb", "sql", "xss"])
def test_an_unknown_algorithm_is_404_and_changes_nothing(old_keys, as_staff, algorithm):
    before = snapshot()
    response = as_staff.post(rotate_url(algorithm))
    assert response.status_code == 404
    assert "<script>alert" not in response.content.decode()
    assert snapshot() == before


def test_a_post_without_a_csrf_token_is_403_and_changes_nothing(old_keys, staff):
    browser = signed_in_client(staff, enforce_csrf_checks=True)
    before = snapshot()
    assert browser.post(rotate_url("RS256")).status_code == 403
    assert snapshot() == before
    # The same request with the page's token goes through: the refusal was the missing token.
    token = str(browser.get(PAGE).context["csrf_token"])
    assert browser.post(rotate_url("RS256"), {"csrfmiddlewaretoken": token}).status_code == 302
    assert AuditEvent.objects.filter(action="signing_key.rotated").count() == 1


def test_get_on_the_rotate_url_is_405_and_changes_nothing(old_keys, as_staff):
    before = snapshot()
    assert as_staff.get(rotate_url("RS256")).status_code == 405
    assert snapshot() == before
