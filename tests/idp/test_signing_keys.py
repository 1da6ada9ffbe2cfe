"""The signing-key lifecycle: next (published, signing nothing) -> active -> retired (published
until its tokens expire) -> deleted, one chain per algorithm, moved on by the scheduled pass
(Celery beat) and by staff; seen from the outside by relying parties that cache the JWKS."""

from __future__ import annotations

import base64
import json
import threading
from datetime import datetime, timedelta
from io import StringIO

import pytest
import requests
import time_machine
from authlib.integrations.base_client.sync_openid import OpenIDMixin
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connections
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

import audit
from audit.models import AuditEvent
from idp.keys.checkpoints import audit_checkpoint_create
from idp.keys.rotation import signing_key_rotate_now, signing_keys_ensure, signing_keys_rotate_due
from idp.keys.signing import signed_token_lifetime, signing_key_active
from idp.models import SigningKey
from idp.tasks import rotate_signing_keys
from tests.conformance.test_rp_initiated_logout_plan import end_session
from tests.conftest import POST_LOGOUT_REDIRECT_URI, REDIRECT_URI
from tests.factories import make_client, make_resource_server, relying_party, sign_in_at
from tests.relying_party import RelyingParty

BEAT = audit.Actor.system("rotate_signing_keys")
ROTATION = timedelta(seconds=settings.SIGNING_KEY_ROTATION_SECONDS)
PREPUBLISH = timedelta(seconds=settings.SIGNING_KEY_PREPUBLISH_SECONDS)


def chain(algorithm: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {"next": [], "active": [], "retired": []}
    for kid, status in (
        SigningKey.objects.filter(algorithm=algorithm).order_by("created_at").values_list("kid", "status")
    ):
        keys[status].append(kid)
    return keys


def published_kids(base_url: str) -> set[str]:
    return {key["kid"] for key in requests.get(f"{base_url}/.well-known/jwks.json", timeout=10).json()["keys"]}


def actions(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


@pytest.fixture
def old_keys(db) -> datetime:
    """Key chains made long ago: every next key has been published longer than the window."""
    made_at = timezone.now() - ROTATION - PREPUBLISH
    signing_keys_ensure(actor=BEAT, now=made_at)
    return made_at


# --- The schedule -----------------------------------------------------------------------------


def test_the_rotation_schedule_is_a_beat_row_operators_can_edit(db):
    task = PeriodicTask.objects.get(name="rotate-signing-keys")
    assert task.task == "idp.tasks.rotate_signing_keys" and task.enabled
    assert (task.interval.every, task.interval.period) == (1, "minutes")


def test_a_key_past_its_period_is_replaced_by_its_prepublished_successor(old_keys):
    before = {algorithm: chain(algorithm) for algorithm in settings.SIGNING_ALGORITHMS}
    now = timezone.now()

    changes = signing_keys_rotate_due(now=now, actor=BEAT)

    for algorithm in settings.SIGNING_ALGORITHMS:
        after = chain(algorithm)
        assert after["active"] == before[algorithm]["next"], "the pre-published key signs now"
        assert after["retired"] == before[algorithm]["active"]
        assert len(after["next"]) == 1 and after["next"] != before[algorithm]["next"], "a new key is published"
    assert sorted(changes.rotated) == sorted(kid for chains in before.values() for kid in chains["next"])
    retired = SigningKey.objects.get(kid=before["RS256"]["active"][0])
    assert retired.retired_at == now and retired.withdraw_at == now + signed_token_lifetime()
    active = SigningKey.objects.get(kid=before["RS256"]["next"][0])
    assert active.activated_at == now and active.rotate_at == now + ROTATION
    rotated = actions("signing_key.rotated")
    assert len(rotated) == 3
    assert {(event.actor_type, event.actor_id, event.data["reason"]) for event in rotated} == {
        ("system", "rotate_signing_keys", "scheduled")
    }
    assert {event.data["previous_kid"] for event in rotated} == {c["active"][0] for c in before.values()}


def test_a_pass_with_nothing_due_changes_nothing(old_keys):
    signing_keys_rotate_due(now=timezone.now(), actor=BEAT)
    keys = list(SigningKey.objects.order_by("pk").values_list("kid", "status"))
    events = AuditEvent.objects.count()

    changes = rotate_signing_keys()  # the beat task, as a worker runs it

    assert changes == {"created": [], "rotated": [], "withdrawn": []}
    assert list(SigningKey.objects.order_by("pk").values_list("kid", "status")) == keys
    assert AuditEvent.objects.count() == events


def test_a_next_key_never_signs_before_it_was_published_for_the_whole_window(db):
    made_at = timezone.now()
    signing_keys_ensure(actor=BEAT, now=made_at)  # active and next made at the same moment
    upcoming = chain("RS256")["next"]

    # The active key's period is over, but its successor is only just published.
    SigningKey.objects.filter(status="active").update(rotate_at=made_at)
    assert not signing_keys_rotate_due(now=made_at + PREPUBLISH - timedelta(seconds=1), actor=BEAT).rotated
    assert chain("RS256")["next"] == upcoming

    assert len(signing_keys_rotate_due(now=made_at + PREPUBLISH, actor=BEAT).rotated) == 3
    assert chain("RS256")["active"] == upcoming


def test_a_retired_key_stays_published_until_its_tokens_expire_then_goes(old_keys, live_server):
    now = timezone.now()
    signing_keys_rotate_due(now=now, actor=BEAT)
    [retired] = SigningKey.objects.filter(algorithm="RS256", status="retired")

    assert not signing_keys_rotate_due(now=retired.withdraw_at - timedelta(seconds=1), actor=BEAT).withdrawn
    assert retired.kid in published_kids(live_server.url)

    changes = signing_keys_rotate_due(now=retired.withdraw_at, actor=BEAT)

    assert retired.kid in changes.withdrawn and len(changes.withdrawn) == 3
    assert not SigningKey.objects.filter(status="retired").exists(), "the private half is gone with the row"
    assert retired.kid not in published_kids(live_server.url)
    assert len(published_kids(live_server.url)) == 6, "each algorithm's active and next key"
    withdrawn = [event for event in actions("signing_key.withdrawn") if event.data["kid"] == retired.kid]
    assert len(withdrawn) == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_rotating_at_the_same_moment_rotate_each_chain_once():
    made_at = timezone.now() - ROTATION - PREPUBLISH
    signing_keys_ensure(actor=BEAT, now=made_at)
    now = timezone.now()
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            signing_keys_rotate_due(now=now, actor=BEAT)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for algorithm in settings.SIGNING_ALGORITHMS:
        keys = chain(algorithm)
        assert (len(keys["next"]), len(keys["active"]), len(keys["retired"])) == (1, 1, 1), algorithm
    assert len(actions("signing_key.rotated")) == 3


# --- Rotate now (the service behind the staff dashboard) -------------------------------------


def test_rotate_now_with_a_ripe_successor_rotates_at_once(old_keys, alice):
    before = chain("ES256")
    result = signing_key_rotate_now(algorithm="ES256", now=timezone.now(), actor=audit.Actor.user(alice))
    assert result.rotated_kid == before["next"][0] and result.ready_at is None
    assert chain("ES256")["active"] == before["next"]
    assert chain("RS256")["retired"] == [], "only the chain asked for"
    [event] = actions("signing_key.rotated")
    assert (event.actor_type, event.actor_id, event.data["reason"]) == ("user", str(alice.pk), "manual")


def test_rotate_now_with_a_young_successor_brings_the_rotation_forward(db, alice):
    made_at = timezone.now()
    signing_keys_ensure(actor=BEAT, now=made_at)
    before = chain("RS256")
    result = signing_key_rotate_now(algorithm="RS256", now=made_at, actor=audit.Actor.user(alice))
    assert result.rotated_kid is None and result.ready_at == made_at + PREPUBLISH
    assert chain("RS256") == before
    assert SigningKey.objects.get(kid=before["active"][0]).rotate_at == made_at + PREPUBLISH
    [requested] = actions("signing_key.rotation_requested")
    assert (requested.actor_type, requested.actor_id) == ("user", str(alice.pk))
    assert requested.data["kid"] == before["active"][0]
    signing_key_rotate_now(algorithm="RS256", now=made_at, actor=audit.Actor.user(alice))
    assert len(actions("signing_key.rotation_requested")) == 1, "pressed twice: asked once"

    signing_keys_rotate_due(now=made_at + PREPUBLISH, actor=BEAT)
    assert chain("RS256")["active"] == before["next"], "the scheduled pass performs it when it is safe"
    assert chain("ES256")["active"] != chain("ES256")["next"] and not chain("ES256")["retired"]


# --- What relying parties see -----------------------------------------------------------------


def test_the_jwks_max_age_is_shorter_than_the_prepublication_window(live_server, signing_key):
    reply = requests.get(f"{live_server.url}/.well-known/jwks.json", timeout=10)
    max_age = int(reply.headers["Cache-Control"].split("max-age=")[1].split(",")[0])
    assert 0 < max_age < settings.SIGNING_KEY_PREPUBLISH_SECONDS
    kids = {key["kid"] for key in reply.json()["keys"]}
    assert kids == set(SigningKey.objects.values_list("kid", flat=True)), "next keys are published too"
    assert {key["alg"] for key in reply.json()["keys"]} == {"RS256", "ES256", "EdDSA"}
    assert all("d" not in key for key in reply.json()["keys"])


def test_discovery_lists_every_signing_algorithm(live_server, signing_key):
    metadata = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256", "ES256", "EdDSA"]


class CachingRelyingParty(RelyingParty):
    """A relying party that keeps the JWKS exactly as long as its Cache-Control max-age says, and
    never fetches it otherwise: the most a provider may count on."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.jwks: dict | None = None
        self.jwks_expires_at = 0.0
        self.fetches = 0

    def cached_jwks(self) -> KeySet:
        now = timezone.now().timestamp()
        if self.jwks is None or now >= self.jwks_expires_at:
            reply = requests.get(self.metadata["jwks_uri"], timeout=10)
            max_age = int(reply.headers["Cache-Control"].split("max-age=")[1])
            self.jwks, self.jwks_expires_at = reply.json(), now + max_age
            self.fetches += 1
        return KeySet.import_key_set(self.jwks)

    def verify_cached(self, id_token: str) -> dict:
        decoded = jwt.decode(id_token, self.cached_jwks(), algorithms=["RS256"])  # raises on an unknown kid
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.metadata["issuer"]}).validate(decoded.claims)
        return decoded.header


def test_a_relying_party_honouring_max_age_never_fails_across_two_rotations(live_server, issued_client, alice):
    """Sign-ins are verified all along a timeline crossing two scheduled rotations, including a
    JWKS fetched just before each rotation and still cached after it."""
    start = timezone.now()
    signing_keys_ensure(actor=BEAT, now=start)
    rp = CachingRelyingParty(
        base_url=live_server.url,
        client_id=issued_client.application.client_id,
        client_secret=issued_client.client_secret,
        redirect_uri=REDIRECT_URI,
    )
    max_age = timedelta(seconds=settings.JWKS_MAX_AGE_SECONDS)
    moments = [timedelta(0)]
    for rotation in (1, 2):
        due = ROTATION * rotation
        moments += [due - max_age / 2, due, due + max_age / 4, due + max_age + timedelta(seconds=1)]
    kids_seen = []
    for offset in moments:
        with time_machine.travel(start + offset, tick=False):
            signing_keys_rotate_due(now=timezone.now(), actor=BEAT)  # the beat, every minute
            result = sign_in_at(rp, alice, scope="openid")
            tokens = rp.exchange(result)
            kids_seen.append(rp.verify_cached(tokens["id_token"])["kid"])
    assert len(set(kids_seen)) == 3, "three keys signed in turn"
    assert kids_seen[2] != kids_seen[1], "the first token after a rotation names a key fetched before it"
    assert rp.fetches < len(moments), "the cache was used, not refetched at every sign-in"


def test_tokens_signed_before_a_rotation_verify_until_they_expire(live_server, old_keys, alice):
    app = make_client(
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=[POST_LOGOUT_REDIRECT_URI],
        scopes=["openid", "profile"],
        access_token_format="jwt",
    )
    rp = relying_party(live_server.url, app)
    gateway = make_resource_server()
    result = sign_in_at(rp, alice, scope="openid profile")
    tokens = rp.exchange(result)
    old_kid = signing_key_active().kid

    signing_keys_rotate_due(now=timezone.now(), actor=BEAT)
    assert signing_key_active().kid != old_kid

    claims = rp.verify_id_token(tokens["id_token"], nonce=result.nonce)  # fresh JWKS, joserfc
    assert claims["sub"] == str(alice.pk)
    introspected = requests.post(
        f"{live_server.url}/oauth/introspect/",
        data={"token": tokens["access_token"]},
        auth=(gateway.application.client_id, gateway.client_secret),
        timeout=10,
    ).json()
    assert introspected["active"] is True, "a JWT access token signed by the retired key is still good"
    replies = end_session(
        rp, id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT_REDIRECT_URI, state="s"
    )
    final = replies[-1]
    assert final.status_code == 302, "an id_token_hint signed by the retired key is still recognised"
    assert final.headers["Location"] == f"{POST_LOGOUT_REDIRECT_URI}?state=s"
    assert old_kid in published_kids(live_server.url)


class AuthlibOpenIDClient(OpenIDMixin):
    """authlib's own relying-party code (the OpenID mixin its framework clients share), over the
    provider's discovery document and JWKS: parse_id_token checks the signature with the JWKS key
    the kid names and an algorithm discovery lists, then iss, aud, exp, iat, nonce and at_hash."""

    def __init__(self, rp: RelyingParty) -> None:
        self.client_id = rp.client_id
        self.server_metadata = dict(rp.metadata)

    def load_server_metadata(self) -> dict:
        return self.server_metadata

    def fetch_jwk_set(self, force: bool = False) -> dict:
        return requests.get(self.server_metadata["jwks_uri"], timeout=10).json()


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_id_tokens_of_the_clients_algorithm_verify_with_authlib(live_server, signing_key, alice, algorithm):
    app = make_client(redirect_uris=[REDIRECT_URI], id_token_signed_response_alg=algorithm)
    rp = relying_party(live_server.url, app)
    result = sign_in_at(rp, alice, scope="openid profile")
    tokens = rp.exchange(result)

    userinfo = AuthlibOpenIDClient(rp).parse_id_token(tokens, nonce=result.nonce)

    assert userinfo["sub"] == str(alice.pk) and userinfo["aud"] == rp.client_id
    header, _ = (json.loads(base64.urlsafe_b64decode(part + "==")) for part in tokens["id_token"].split(".")[:2])
    assert header["alg"] == algorithm
    assert header["kid"] == signing_key_active(algorithm).kid
    with pytest.raises(JoseError):  # the same token, once its signature is tampered with
        forged = tokens["id_token"][:-4] + ("AAAA" if not tokens["id_token"].endswith("AAAA") else "BBBB")
        AuthlibOpenIDClient(rp).parse_id_token({**tokens, "id_token": forged}, nonce=result.nonce)


# --- The audit checkpoints outlive the key that signed them ------------------------------------


def test_checkpoints_stay_verifiable_after_their_key_is_withdrawn(old_keys, live_server, tmp_path):
    first = audit_checkpoint_create(now=timezone.now())
    assert first is not None
    first_kid = first.kid

    now = timezone.now()
    signing_keys_rotate_due(now=now, actor=BEAT)  # signs the head again with the new key
    signing_keys_rotate_due(now=now + signed_token_lifetime(), actor=BEAT)  # the old key is withdrawn
    assert first_kid not in published_kids(live_server.url)

    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().startswith("ok: ")
    assert "1 earlier checkpoints are signed by keys since withdrawn" in out.getvalue()
    export = tmp_path / "audit.jsonl"
    with export.open("w") as stream:
        call_command("export_audit", stdout=stream)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(requests.get(f"{live_server.url}/.well-known/jwks.json", timeout=10).text)
    out = StringIO()
    call_command("verify_audit", "--file", str(export), "--jwks", str(jwks), stdout=out)
    assert out.getvalue().startswith("ok: ")
    assert "1 earlier checkpoints are signed by keys since withdrawn" in out.getvalue()


def test_a_latest_checkpoint_of_a_key_the_jwks_lacks_is_a_break(signing_key, tmp_path):
    """Passing over withdrawn keys never lets a checkpoint at the end go unchecked."""
    audit_checkpoint_create(now=timezone.now())
    export = tmp_path / "audit.jsonl"
    with export.open("w") as stream:
        call_command("export_audit", stdout=stream)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.public_jwk for key in SigningKey.objects.exclude(pk=signing_key.pk)]}))
    with pytest.raises(CommandError, match="the latest checkpoint cannot be checked"):
        call_command("verify_audit", "--file", str(export), "--jwks", str(jwks), stdout=StringIO())
