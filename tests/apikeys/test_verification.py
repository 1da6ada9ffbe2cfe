"""The /api/v1 API accepts API keys (X-API-Key or Authorization: Bearer) with their scopes and
the roles their owner still holds, beside OAuth access tokens; revoked, expired and past-grace
keys, and keys of deactivated owners, are refused at once. last_used_at is written behind the
requests (noted in Redis, written by a beat task), never by a request."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import time_machine
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import RoleAssignment
from accounts.selectors import Caller
from accounts.services import role_create, role_grant, role_revoke, user_deactivate
from apikeys.keyformat import key_new
from apikeys.models import ApiKey
from apikeys.services import apikey_revoke, apikey_rotate, apikeys_record_uses
from apikeys.tasks import record_apikey_uses
from apikeys.usage import LAST_USED_KEY, usage_forget, usage_pending
from idp.oauth.clients import client_disable
from tests.apikeys.conftest import SYSTEM, USERS, VIA, basic_auth, key_headers
from tests.factories import make_client, make_user
from tests.redis_keys import raw_redis

INVALID_TOKEN_CHALLENGE = 'Bearer realm="idp", error="invalid_token"'


def get_users(client, key: str, via: str = "x-api-key"):
    return client.get(USERS, headers=key_headers(key, via))


def assert_invalid_token(reply) -> None:
    """RFC 6750 §3.1: 401, a Bearer challenge naming invalid_token, and the RFC 6749 error body."""
    assert reply.status_code == 401, reply.content
    assert reply["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE
    body = reply.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "invalid_token"


def usernames(reply) -> set[str]:
    return {user["username"] for user in reply.json()["results"]}


# --- Accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("via", [*VIA, "lowercase bearer"])
def test_a_key_with_the_scope_and_the_role_calls_the_api(client, owner, admin_key, via):
    if via == "lowercase bearer":
        reply = client.get(USERS, headers={"Authorization": f"bearer {admin_key.secret}"})  # RFC 7235: any case
    else:
        reply = get_users(client, admin_key.secret, via)
    assert reply.status_code == 200, reply.content
    assert owner.username in usernames(reply)


def test_a_machine_clients_key_calls_the_api_as_its_service_account(client, machine, issue_key):
    issued = issue_key(user=None, application=machine.application)
    assert get_users(client, issued.secret).status_code == 200


def test_an_oauth_access_token_still_works_beside_keys(client, machine, admin_key):
    token_reply = client.post(
        "/oauth/token/",
        "grant_type=client_credentials&scope=idp.manage",
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": basic_auth(machine.application.client_id, machine.client_secret)},
    )
    assert token_reply.status_code == 200, token_reply.content
    access_token = token_reply.json()["access_token"]

    by_token = client.get(USERS, headers={"Authorization": f"Bearer {access_token}"})
    by_key = get_users(client, admin_key.secret)
    assert by_token.status_code == by_key.status_code == 200
    assert usernames(by_token) == usernames(by_key)


def test_keys_and_tokens_over_real_http(live_server, machine, admin_key):
    """The same through a real HTTP server: both headers, and an access token from the token endpoint."""
    url = f"{live_server.url}{USERS}"
    token = requests.post(
        f"{live_server.url}/oauth/token/",
        data={"grant_type": "client_credentials", "scope": "idp.manage"},
        auth=(machine.application.client_id, machine.client_secret),
        timeout=10,
    ).json()["access_token"]
    replies = {
        "x-api-key": requests.get(url, headers=key_headers(admin_key.secret, "x-api-key"), timeout=10),
        "bearer key": requests.get(url, headers=key_headers(admin_key.secret, "bearer"), timeout=10),
        "access token": requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10),
    }
    assert {name: reply.status_code for name, reply in replies.items()} == dict.fromkeys(replies, 200)

    apikey_revoke(key_id=admin_key.key.pk, actor=SYSTEM)
    refused = requests.get(url, headers=key_headers(admin_key.secret, "bearer"), timeout=10)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE
    assert refused.json()["error"] == "invalid_token"


# --- Scope and roles: 403 ---------------------------------------------------------------------


@pytest.mark.parametrize("via", VIA)
def test_a_key_without_the_management_scope_is_insufficient_scope(client, issue_key, via):
    issued = issue_key(scopes=["profile"])
    reply = get_users(client, issued.secret, via)
    assert reply.status_code == 403
    assert reply.json() == {"error": "insufficient_scope", "error_description": "the token needs scope idp.manage"}
    assert reply["WWW-Authenticate"] == 'Bearer realm="idp", error="insufficient_scope", scope="idp.manage"'


@pytest.mark.parametrize("via", VIA)
def test_a_key_without_the_role_is_refused_though_its_owner_holds_it(client, owner, issue_key, via):
    issued = issue_key(role_ids=[])
    reply = get_users(client, issued.secret, via)
    assert reply.status_code == 403
    assert reply.json() == {"error": "access_denied", "error_description": "requires permission idp.users.read"}


@pytest.mark.parametrize("via", VIA)
def test_a_role_taken_from_the_owner_leaves_the_key_at_once(client, owner, admin_role, admin_key, via):
    assert get_users(client, admin_key.secret, via).status_code == 200
    role_revoke(assignment=RoleAssignment.objects.get(user=owner, role=admin_role), actor=SYSTEM)

    reply = get_users(client, admin_key.secret, via)
    assert reply.status_code == 403
    assert reply.json()["error"] == "access_denied"

    role_grant(role=admin_role, user=owner, actor=SYSTEM)
    assert get_users(client, admin_key.secret, via).status_code == 200, "the key's role counts again"


def test_a_role_held_through_a_group_leaves_the_key_with_the_group(client, issue_key):
    admins = Group.objects.create(name="provider-admins")
    member = make_user()
    member.groups.add(admins)
    admin_role = role_create(name="group-admin", permissions=["idp.users.read"], actor=SYSTEM)
    role_grant(role=admin_role, group=admins, actor=SYSTEM)
    issued = issue_key(user=member, role_ids=[admin_role.pk])
    assert get_users(client, issued.secret).status_code == 200

    member.groups.remove(admins)

    reply = get_users(client, issued.secret)
    assert reply.status_code == 403
    assert reply.json()["error"] == "access_denied"


def test_a_clients_own_role_never_administers_the_provider(client, owner, issue_key):
    """The management API counts global roles only: a role a client defines for itself, carried by
    a user's key for that client, opens nothing here even with the permission's name."""
    console = make_client(scopes=["openid", "profile", "idp.manage"]).application
    own_role = role_create(name="console-admin", application=console, permissions=["idp.users.read"], actor=SYSTEM)
    role_grant(role=own_role, user=owner, actor=SYSTEM)
    issued = issue_key(application=console, role_ids=[own_role.pk])

    reply = get_users(client, issued.secret)
    assert reply.status_code == 403
    assert reply.json()["error"] == "access_denied"


# --- Unusable keys: 401 -----------------------------------------------------------------------


@pytest.mark.parametrize("via", VIA)
def test_a_revoked_key_is_refused_at_once(client, admin_key, via):
    assert get_users(client, admin_key.secret, via).status_code == 200
    apikey_revoke(key_id=admin_key.key.pk, actor=SYSTEM, reason="leaked")
    assert_invalid_token(get_users(client, admin_key.secret, via))


@pytest.mark.parametrize("via", VIA)
def test_a_deactivated_owners_key_is_refused_at_once(client, owner, admin_key, via):
    assert get_users(client, admin_key.secret, via).status_code == 200
    user_deactivate(user_id=owner.pk, actor=SYSTEM)
    assert_invalid_token(get_users(client, admin_key.secret, via))


def test_a_disabled_machine_clients_key_is_refused_at_once(client, machine, issue_key):
    issued = issue_key(user=None, application=machine.application)
    assert get_users(client, issued.secret).status_code == 200
    client_disable(application_id=machine.application.pk, actor=SYSTEM)
    assert_invalid_token(get_users(client, issued.secret))


@pytest.mark.parametrize("via", VIA)
def test_a_right_looking_key_with_another_secret_is_refused(client, admin_key, via):
    """The public id and checksum are public knowledge: anyone can build a key that passes the
    checksum for a known id. Only the secret opens it."""
    forged = key_new(admin_key.key.public_id)
    assert forged != admin_key.secret
    assert_invalid_token(get_users(client, forged, via))
    assert get_users(client, admin_key.secret, via).status_code == 200


@pytest.mark.parametrize(
    ("after", "status"),
    [(timedelta(minutes=59), 200), (timedelta(hours=1), 401), (timedelta(days=400), 401)],
    ids=["before-expiry", "at-expiry", "long-after"],
)
@pytest.mark.parametrize("via", VIA)
def test_a_key_stops_at_its_expiry(client, issue_key, via, after, status):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        issued = issue_key(expires_at=start + timedelta(hours=1))
    with time_machine.travel(start + after, tick=False):
        reply = get_users(client, issued.secret, via)
    assert reply.status_code == status, reply.content
    if status == 401:
        assert_invalid_token(reply)


@pytest.mark.parametrize(
    ("after", "old_status"),
    [(timedelta(0), 200), (timedelta(hours=1, minutes=59), 200), (timedelta(hours=2), 401), (timedelta(days=3), 401)],
    ids=["just-rotated", "in-grace", "grace-over", "long-after"],
)
@pytest.mark.parametrize("via", VIA)
def test_a_rotated_key_works_through_its_grace_period_only(client, issue_key, via, after, old_status):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        old = issue_key(grace_period=timedelta(hours=2))
        new = apikey_rotate(key_id=old.key.pk, caller=Caller.operator(SYSTEM))
    with time_machine.travel(start + after, tick=False):
        old_reply = get_users(client, old.secret, via)
        new_reply = get_users(client, new.secret, via)
    assert new_reply.status_code == 200, "the successor works throughout"
    assert old_reply.status_code == old_status, old_reply.content
    if old_status == 401:
        assert_invalid_token(old_reply)


# --- last_used_at -----------------------------------------------------------------------------


def noted(key: ApiKey) -> str | None:
    """The use of `key` noted in Redis and not yet written, as stored (epoch seconds)."""
    value = raw_redis().hget(LAST_USED_KEY, key.public_id)
    return value.decode() if value is not None else None


def last_used_writes(queries) -> list[str]:
    return [query["sql"] for query in queries if query["sql"].startswith('UPDATE "apikeys_apikey"')]


def test_a_use_writes_nothing_to_the_database_and_the_task_records_it_after(client, admin_key):
    key = admin_key.key
    start = timezone.now().replace(microsecond=0)
    assert ApiKey.objects.get(pk=key.pk).last_used_at is None

    with time_machine.travel(start, tick=False), CaptureQueriesContext(connection) as used:
        for via in VIA:
            assert get_users(client, admin_key.secret, via).status_code == 200
    assert last_used_writes(used.captured_queries) == [], "no database write on the request"
    assert ApiKey.objects.get(pk=key.pk).last_used_at is None
    assert noted(key) == f"{start.timestamp():.6f}"

    assert record_apikey_uses() >= 1  # the beat task, as a worker runs it
    assert ApiKey.objects.get(pk=key.pk).last_used_at == start
    assert noted(key) is None, "written, so no longer waiting"

    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        assert get_users(client, admin_key.secret, "bearer").status_code == 200
    record_apikey_uses()
    assert ApiKey.objects.get(pk=key.pk).last_used_at == start + timedelta(seconds=61)


def test_last_used_never_moves_back_and_a_use_noted_meanwhile_is_kept(admin_key):
    key = admin_key.key
    later = timezone.now().replace(microsecond=0)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=later)
    raw_redis().hset(LAST_USED_KEY, key.public_id, f"{(later - timedelta(hours=1)).timestamp():.6f}")

    record_apikey_uses()

    assert ApiKey.objects.get(pk=key.pk).last_used_at == later, "an older note never overwrites"
    # Taken, then noted again before the task removed it: only what was written goes.
    taken = usage_pending(batch=100)
    raw_redis().hset(LAST_USED_KEY, key.public_id, "1999999999.000000")
    assert usage_forget(taken) == 0
    assert noted(key) == "1999999999.000000"
    raw_redis().hdel(LAST_USED_KEY, key.public_id)


def test_the_writer_takes_the_notes_in_batches_and_leaves_none_behind(admin_key):
    """Many noted uses (here 7 with batches of 2): every one is taken, each in a bounded call."""
    when = timezone.now().replace(microsecond=0)
    stale = {f"gone{number:012d}": f"{when.timestamp():.6f}" for number in range(6)}  # keys deleted since
    raw_redis().hset(LAST_USED_KEY, mapping={**stale, admin_key.key.public_id: f"{when.timestamp():.6f}"})

    assert apikeys_record_uses(batch=2) >= 7

    assert ApiKey.objects.get(pk=admin_key.key.pk).last_used_at == when
    assert not any(raw_redis().hexists(LAST_USED_KEY, public_id) for public_id in [*stale, admin_key.key.public_id])


def test_the_writer_is_a_beat_row_every_10_seconds_whose_stale_messages_expire(db):
    from django_celery_beat.models import PeriodicTask

    row = PeriodicTask.objects.select_related("interval").get(name="record-apikey-uses")
    assert row.task == record_apikey_uses.name
    assert (row.interval.every, row.interval.period, row.expire_seconds, row.enabled) == (10, "seconds", 30, True)


def test_a_refused_key_records_no_use(client, admin_key):
    apikey_revoke(key_id=admin_key.key.pk, actor=SYSTEM)
    with CaptureQueriesContext(connection) as queries:
        assert get_users(client, admin_key.secret).status_code == 401
    assert last_used_writes(queries.captured_queries) == []
    assert ApiKey.objects.get(pk=admin_key.key.pk).last_used_at is None
    assert noted(admin_key.key) is None
