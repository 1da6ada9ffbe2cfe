"""Introspection answers kept in the shared cache (idp.oauth.introspection_cache): a token asked
about again is answered from one cache read, without the database, and whatever ends the token or
changes its answer (revocation on any path, the user's or the client's deactivation, a role) shows
in the very next answer, of every web process."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import redis
import requests
from django.test import Client

import audit
from accounts.services import role_grant, user_deactivate
from idp.oauth import clients
from idp.oauth.introspection_cache import TOMBSTONE, checksum_of, entry_key, token_entry
from tests.factories import make_machine_client, make_resource_server, role_with, tokens_at
from tests.ops.processes import gunicorn_start, gunicorn_stop

SYSTEM = audit.Actor.system("tests")


def basic(issued) -> str:
    pair = f"{quote(issued.application.client_id, safe='')}:{quote(issued.client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


@pytest.fixture
def web():
    return Client(REMOTE_ADDR="127.0.0.1")


def machine_token(web: Client, machine) -> str:
    reply = web.post(
        "/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic(machine), secure=True
    )
    assert reply.status_code == 200, reply.content
    return reply.json()["access_token"]


def introspect(web: Client, resource_server, token: str) -> dict:
    reply = web.post("/oauth/introspect/", {"token": token}, HTTP_AUTHORIZATION=basic(resource_server), secure=True)
    assert reply.status_code == 200, reply.content
    return reply.json()


def kept(token: str) -> bool:
    from django.core.cache import cache

    return cache.get(entry_key(token_entry(checksum_of(token)))) not in (None, TOMBSTONE)


class RoundTrips:
    """Requests to Redis from this process: each command, or each pipeline, is one packet sent."""

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        send = redis.connection.AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            self.count += 1
            return send(connection, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)


def test_a_token_asked_about_again_is_answered_without_the_database(
    web, machine, resource_server, signing_key, django_assert_num_queries, monkeypatch
):
    token = machine_token(web, machine)
    first = introspect(web, resource_server, token)
    assert first["active"] is True
    assert kept(token)

    trips = RoundTrips(monkeypatch)
    with django_assert_num_queries(0):
        again = introspect(web, resource_server, token)
    assert again == first
    # One pipeline before the view: the rate-limit windows with a place held in the bucket of the
    # client the request names (kept once it authenticates), and the client and the kept answer
    # with their marks, read ahead (idp.ops.cache).
    assert trips.count == 1, trips.count


def test_a_client_credentials_token_costs_one_redis_round_trip(web, machine, signing_key, monkeypatch):
    """The token endpoint reads ahead too (idp.oauth.clients.client_read_ahead): its windows, the place
    held in the client's bucket and the client's cached record come back in one pipeline."""
    machine_token(web, machine)
    trips = RoundTrips(monkeypatch)
    machine_token(web, machine)
    assert trips.count == 1, trips.count


def test_an_unknown_or_inactive_token_is_not_kept(web, resource_server, signing_key):
    assert introspect(web, resource_server, "never-issued")["active"] is False
    assert not kept("never-issued")


def test_a_revoked_token_is_inactive_at_once(web, machine, resource_server, signing_key):
    token = machine_token(web, machine)
    assert introspect(web, resource_server, token)["active"] is True
    assert kept(token)

    revoked = web.post("/oauth/revoke/", {"token": token}, HTTP_AUTHORIZATION=basic(machine), secure=True)
    assert revoked.status_code == 200

    assert introspect(web, resource_server, token) == {"active": False}


def test_a_deactivated_user_or_client_or_a_new_role_shows_in_the_next_answer(
    live_server, rp, alice, resource_server, signing_key
):
    web = Client(REMOTE_ADDR="127.0.0.1")
    user_token = tokens_at(rp, alice)["access_token"]
    answer = introspect(web, resource_server, user_token)
    assert answer["active"] is True and answer["roles"] == []
    assert kept(user_token)

    role_grant(role=role_with(["idp.view_activity"], name="watchers"), user=alice, actor=SYSTEM)
    assert introspect(web, resource_server, user_token)["roles"] == ["watchers"]

    user_deactivate(user_id=alice.pk, actor=SYSTEM)
    assert introspect(web, resource_server, user_token) == {"active": False}


def test_a_users_sign_in_elsewhere_leaves_the_kept_answers_alone(
    live_server, rp, alice, resource_server, signing_key, django_assert_num_queries
):
    """Signing in stamps last_login (and may upgrade the password's hash): nothing an answer holds,
    so it must not make every kept answer stale, or each sign-in anywhere would empty the cache."""
    from django.utils import timezone

    web = Client(REMOTE_ADDR="127.0.0.1")
    token = tokens_at(rp, alice)["access_token"]
    answer = introspect(web, resource_server, token)

    alice.last_login = timezone.now()
    alice.save(update_fields=["last_login"])

    with django_assert_num_queries(0):
        assert introspect(web, resource_server, token) == answer


def test_a_disabled_clients_tokens_are_inactive_at_once(web, machine, resource_server, signing_key):
    token = machine_token(web, machine)
    assert introspect(web, resource_server, token)["active"] is True
    assert kept(token)

    clients.client_disable(application_id=machine.application.pk, actor=SYSTEM)

    assert introspect(web, resource_server, token) == {"active": False}


def test_a_refreshed_away_access_token_is_inactive_at_once(live_server, rp, alice, resource_server, signing_key):
    web = Client(REMOTE_ADDR="127.0.0.1")
    tokens = tokens_at(rp, alice, scope="openid offline_access")
    assert introspect(web, resource_server, tokens["access_token"])["active"] is True
    assert kept(tokens["access_token"])

    refreshed = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text

    assert introspect(web, resource_server, tokens["access_token"]) == {"active": False}


# --- Two web processes ---------------------------------------------------------------------------


def test_a_revocation_through_one_worker_is_seen_by_both_before_its_answer(transactional_db, tmp_path):
    """gunicorn as the Procfile starts it (two workers): both keep the token's answer, one revokes
    it, and every answer after the revocation's own, from whichever worker, is inactive."""
    from idp.keys.rotation import signing_keys_ensure

    signing_keys_ensure(actor=SYSTEM)
    machine, resource_server = make_machine_client(), make_resource_server()
    server = gunicorn_start(tmp_path / "gunicorn.log")
    try:
        session = requests.Session()

        def post(path: str, issued, data: dict[str, str]) -> requests.Response:
            return session.post(f"{server.url}{path}", data=data, headers={"Authorization": basic(issued)}, timeout=30)

        def introspected(token: str) -> dict:
            # A connection each: gunicorn's sync workers take turns accepting them.
            reply = requests.post(
                f"{server.url}/oauth/introspect/",
                data={"token": token},
                headers={"Authorization": basic(resource_server)},
                timeout=30,
            )
            assert reply.status_code == 200, reply.text
            return reply.json()

        token = post("/oauth/token/", machine, {"grant_type": "client_credentials"}).json()["access_token"]
        with ThreadPoolExecutor(max_workers=8) as pool:
            before = list(pool.map(introspected, [token] * 40))
        assert all(answer["active"] is True for answer in before)
        assert kept(token)

        assert post("/oauth/revoke/", machine, {"token": token}).status_code == 200

        with ThreadPoolExecutor(max_workers=8) as pool:
            after = list(pool.map(introspected, [token] * 40))
        assert after == [{"active": False}] * 40
    finally:
        gunicorn_stop(server)


# --- API keys ------------------------------------------------------------------------------------


@pytest.fixture
def owner_key(db):
    from accounts.selectors import Caller
    from accounts.services import admin_role_ensure
    from apikeys.services import apikey_create
    from tests.factories import make_user
    from tests.redis_keys import expire_now

    admins = admin_role_ensure(actor=SYSTEM)
    owner = make_user()
    role_grant(role=admins, user=owner, actor=SYSTEM)
    issued = apikey_create(name="ci", caller=Caller.operator(SYSTEM), user=owner, role_ids=[admins.pk])
    # Giving the new key its roles marked it changed (a tombstone and a marker): answered from the
    # database for its first minute (introspection_cache.CHANGED_SECONDS). That minute is over.
    expire_now(f"*idp:introspect*:apikey:{issued.key.public_id}")
    return issued


def key_kept(public_id: str) -> bool:
    from django.core.cache import cache

    from idp.oauth.introspection_cache import apikey_entry

    return cache.get(entry_key(apikey_entry(public_id))) not in (None, TOMBSTONE)


def test_an_api_key_asked_about_again_is_answered_without_the_database_and_its_use_noted(
    web, resource_server, owner_key, django_assert_num_queries, monkeypatch
):
    from apikeys.usage import LAST_USED_KEY
    from tests.redis_keys import raw_redis

    first = introspect(web, resource_server, owner_key.secret)
    assert first["active"] is True and first["token_type"] == "api_key" and first["roles"] == ["idp-admin"]
    assert key_kept(owner_key.key.public_id)
    raw_redis().hdel(LAST_USED_KEY, owner_key.key.public_id)

    trips = RoundTrips(monkeypatch)
    with django_assert_num_queries(0):
        again = introspect(web, resource_server, owner_key.secret)
    assert again == first
    # The windows with the client's place held and the reads ahead; the use noted.
    assert trips.count == 2, trips.count
    assert raw_redis().hget(LAST_USED_KEY, owner_key.key.public_id) is not None, "the use is noted"


def test_a_kept_api_key_answer_is_not_given_for_another_secret_under_its_public_id(web, resource_server, owner_key):
    from apikeys.keyformat import key_new

    assert introspect(web, resource_server, owner_key.secret)["active"] is True
    assert key_kept(owner_key.key.public_id)

    assert introspect(web, resource_server, key_new(owner_key.key.public_id)) == {"active": False}


def test_a_kept_api_key_revoked_or_stripped_of_its_role_shows_in_the_next_answer(web, resource_server, owner_key):
    from apikeys.services import apikey_revoke

    assert introspect(web, resource_server, owner_key.secret)["roles"] == ["idp-admin"]
    owner_key.key.roles.clear()
    assert introspect(web, resource_server, owner_key.secret)["roles"] == []

    apikey_revoke(key_id=owner_key.key.pk, actor=SYSTEM, reason="leaked")
    assert introspect(web, resource_server, owner_key.secret) == {"active": False}


def test_a_role_taken_from_the_keys_side_of_the_role_shows_in_the_next_answer(web, resource_server, owner_key):
    role = owner_key.key.roles.get()
    assert introspect(web, resource_server, owner_key.secret)["roles"] == ["idp-admin"]

    role.api_keys.remove(owner_key.key)

    assert introspect(web, resource_server, owner_key.secret)["roles"] == []


# --- Races and eviction --------------------------------------------------------------------------


def test_an_answer_read_before_a_revocation_committed_never_comes_back(transactional_db, signing_key, monkeypatch):
    """An introspection reads the row, then the token is revoked (committed, answered), then that
    introspection gets round to keeping its answer: it must neither show now nor once the
    revocation's marker has gone. (Lifetimes shortened to seconds, in production's proportions.)"""
    import time

    from idp.oauth import introspection_cache

    monkeypatch.setattr(introspection_cache, "KEEP_SECONDS", 4)
    monkeypatch.setattr(introspection_cache, "CHANGED_SECONDS", 4)
    monkeypatch.setattr(introspection_cache, "_KEEP_MARGIN_SECONDS", 1)
    web = Client(REMOTE_ADDR="127.0.0.1")
    machine, resource_server = make_machine_client(), make_resource_server()
    token = machine_token(web, machine)
    keep, revoked_at = introspection_cache.answer_keep, []

    def keep_after_a_revocation(**kwargs):
        if not revoked_at:
            other = Client(REMOTE_ADDR="127.0.0.2")
            reply = other.post("/oauth/revoke/", {"token": token}, HTTP_AUTHORIZATION=basic(machine), secure=True)
            assert reply.status_code == 200
            revoked_at.append(time.monotonic())
            time.sleep(1.5)  # this request is slow to keep what it read before the revocation
        return keep(**kwargs)

    monkeypatch.setattr(introspection_cache, "answer_keep", keep_after_a_revocation)
    assert introspect(web, resource_server, token)["active"] is True, "read before the revocation"
    assert introspect(web, resource_server, token) == {"active": False}
    while time.monotonic() < revoked_at[0] + 4.5:  # the marker's lifetime, and a little more
        time.sleep(0.1)
    assert introspect(web, resource_server, token) == {"active": False}


@pytest.mark.parametrize("evicted", ["marker", "tombstone"])
def test_a_revocation_holds_when_redis_evicts_one_of_its_keys(web, machine, resource_server, signing_key, evicted):
    """A Redis short of memory may evict keys with a lifetime (volatile-lru and the like): the
    revocation leaves two, and either one alone keeps the revoked answer from coming back."""
    from django.core.cache import cache

    from idp.oauth.introspection_cache import changed_key
    from tests.redis_keys import raw_redis

    token = machine_token(web, machine)
    assert introspect(web, resource_server, token)["active"] is True
    assert (
        web.post("/oauth/revoke/", {"token": token}, HTTP_AUTHORIZATION=basic(machine), secure=True).status_code == 200
    )
    name = token_entry(checksum_of(token))
    raw_redis().delete(cache.make_key(changed_key(name) if evicted == "marker" else entry_key(name)))

    assert introspect(web, resource_server, token) == {"active": False}
