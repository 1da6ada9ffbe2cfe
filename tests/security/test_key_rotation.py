"""Rotating the key-encryption key: `manage.py rotate_encryption_key` moves every stored ciphertext
(signing keys, API keys' pending secrets) under the new key, after which the old key can leave the
environment and tokens still sign and secrets still reveal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import StringIO

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command
from django.utils import timezone
from jwcrypto import jwk, jwt

import audit
from accounts.selectors import Caller
from apikeys.models import ApiKey
from apikeys.selectors import apikey_verify
from apikeys.services import apikey_create, apikey_reveal, apikeys_rotate_due
from audit.models import AuditEvent
from idp.keys.signing import signing_key_active, signing_keys_published
from idp.mfa.factors import totp_verify as verify_totp
from idp.models import SigningKey, TotpDevice
from tests.factories import totp_device
from tests.mfa.codes import totp_code

NEW_KEY = Fernet.generate_key().decode()
OTHER_KEY = Fernet.generate_key().decode()
SYSTEM = audit.Actor.system("tests")


@dataclass(frozen=True)
class Stored:
    signing_key: SigningKey
    successor: ApiKey  # made by the scheduler: its secret waits, encrypted, to be revealed
    now: datetime
    totp: TotpDevice | None = None  # an authenticator app: its seed is encrypted too
    totp_seed: bytes = b""


@pytest.fixture
def old_keys(settings):
    return list(settings.KEY_ENCRYPTION_KEYS)


@pytest.fixture
def stored(signing_key, alice):
    now = timezone.now()
    key = apikey_create(
        name="deploy", caller=Caller.operator(SYSTEM), user=alice, rotate_every=timedelta(hours=1), now=now
    ).key
    later = now + timedelta(hours=1, seconds=1)
    assert apikeys_rotate_due(now=later) == 1
    successor = ApiKey.objects.get(rotated_from=key)
    assert successor.pending_secret
    device, seed = totp_device(alice)
    return Stored(signing_key=signing_key, successor=successor, now=later, totp=device, totp_seed=seed)


def rotate(*args: str) -> str:
    out = StringIO()
    call_command("rotate_encryption_key", *args, stdout=out)
    return out.getvalue()


def ciphertexts(stored: Stored) -> tuple[str, str]:
    return (
        SigningKey.objects.get(pk=stored.signing_key.pk).private_key_encrypted,
        ApiKey.objects.get(pk=stored.successor.pk).pending_secret,
    )


def assert_signs_and_reveals(stored: Stored) -> None:
    active = signing_key_active()
    assert active.kid == stored.signing_key.kid
    token = jwt.JWT(header={"alg": "RS256", "kid": active.kid}, claims={"sub": "alice"})
    token.make_signed_token(active.jwk)
    published = jwk.JWKSet.from_json(json.dumps({"keys": signing_keys_published()}))
    assert json.loads(jwt.JWT(jwt=token.serialize(), key=published).claims) == {"sub": "alice"}

    secret = apikey_reveal(key_id=stored.successor.pk, caller=Caller.operator(SYSTEM), now=stored.now)
    verified = apikey_verify(presented=secret, now=stored.now)
    assert verified is not None and verified.key.pk == stored.successor.pk


def rotation_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=audit.Action.ENCRYPTION_KEY_ROTATED))


def test_after_rotation_the_new_key_alone_signs_and_reveals(settings, old_keys, stored):
    settings.KEY_ENCRYPTION_KEYS = [NEW_KEY, *old_keys]
    signing_keys = SigningKey.objects.count()  # every algorithm's active and next key
    assert signing_keys == 6
    assert json.loads(rotate("--json")) == {
        "signing_keys": signing_keys,
        "apikey_secrets": 1,
        "totp_seeds": 1,
        "upstream_secrets": 0,
    }

    settings.KEY_ENCRYPTION_KEYS = [NEW_KEY]  # the old key leaves the environment
    new = Fernet(NEW_KEY.encode())
    assert all(new.decrypt(ciphertext.encode()) for ciphertext in ciphertexts(stored))
    assert_signs_and_reveals(stored)
    [event] = rotation_events()
    assert (event.actor_type, event.actor_id) == ("system", "rotate_encryption_key")
    assert event.data == {
        "signing_keys": signing_keys,
        "apikey_secrets": 1,
        "totp_seeds": 1,
        "upstream_secrets": 0,
        "keys_configured": 1 + len(old_keys),
    }
    # The authenticator app's seed too: its codes still check under the new key alone.
    device = TotpDevice.objects.get(pk=stored.totp.pk)
    assert verify_totp(user=device.user, code=totp_code(stored.totp_seed)) is not None


def test_without_rotation_the_new_key_alone_cannot_decrypt(settings, stored):
    settings.KEY_ENCRYPTION_KEYS = [NEW_KEY]  # the old key removed before running the command
    with pytest.raises(InvalidToken):
        signing_key_active()
    with pytest.raises(InvalidToken):
        apikey_reveal(key_id=stored.successor.pk, caller=Caller.operator(SYSTEM), now=stored.now)


def test_a_second_run_changes_nothing_and_records_nothing(settings, old_keys, stored):
    settings.KEY_ENCRYPTION_KEYS = [NEW_KEY, *old_keys]
    rotate()
    after_first = ciphertexts(stored)
    assert json.loads(rotate("--json")) == {
        "signing_keys": 0,
        "apikey_secrets": 0,
        "totp_seeds": 0,
        "upstream_secrets": 0,
    }
    assert ciphertexts(stored) == after_first
    assert len(rotation_events()) == 1


def test_with_one_key_there_is_nothing_to_do(stored):
    before = ciphertexts(stored)
    assert "Re-encrypted 0 signing key(s), 0 pending API key secret(s), 0 authenticator app seed(s)" in rotate()
    assert ciphertexts(stored) == before
    assert rotation_events() == []


def test_a_ciphertext_under_none_of_the_keys_stops_the_rotation_and_changes_nothing(
    settings, old_keys, signing_key, alice
):
    # The pending secret was made under a key that is no longer configured: the signing key could
    # be re-encrypted, but the rotation is all or nothing.
    settings.KEY_ENCRYPTION_KEYS = [OTHER_KEY]
    now = timezone.now()
    key = apikey_create(
        name="deploy", caller=Caller.operator(SYSTEM), user=alice, rotate_every=timedelta(hours=1), now=now
    ).key
    assert apikeys_rotate_due(now=now + timedelta(hours=2)) == 1
    successor = ApiKey.objects.get(rotated_from=key)
    stored = Stored(signing_key=signing_key, successor=successor, now=now)
    before = ciphertexts(stored)

    settings.KEY_ENCRYPTION_KEYS = [NEW_KEY, *old_keys]
    with pytest.raises(CommandError, match=f"API key {successor.public_id} is encrypted under none"):
        rotate()
    assert ciphertexts(stored) == before
    assert rotation_events() == []
