"""The database holds no usable key: only a keyed hash (HMAC-SHA256 under a pepper that never
reaches the database), and the raw key is shown once, in what create and rotate return."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.forms.models import model_to_dict
from django.utils import timezone

from accounts.selectors import Caller
from apikeys.models import ApiKey
from apikeys.selectors import apikey_claims, apikey_verify
from apikeys.services import apikey_reveal, apikey_revoke, apikey_rotate, apikeys_rotate_due
from tests.apikeys.conftest import SYSTEM, USERS, key_headers

WINDOW = 12  # no run of this many secret characters may appear anywhere


def every_stored_value() -> str:
    """Every column of every API-key row, of the key-role links and of every audit row, read with
    raw SQL (no model in between to hide or transform anything)."""
    dump = []
    with connection.cursor() as cursor:
        for table in ("apikeys_apikey", "apikeys_apikey_roles", "audit_auditevent"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed table names)
            dump += [repr(value) for row in cursor.fetchall() for value in row]
    return "\n".join(dump)


def secret_parts(key: str) -> list[str]:
    """The key, its secret-and-checksum part, and every WINDOW-long run of its secret."""
    secret = key[len("idpk_") + 13 :]
    return [key, secret, *(secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1))]


def leaked(key: str, text: str) -> list[str]:
    return [part for part in secret_parts(key) if part in text]


def test_after_create_and_rotate_no_column_holds_any_part_of_a_key(admin_key):
    successor = apikey_rotate(key_id=admin_key.key.pk, caller=Caller.operator(SYSTEM))
    third = apikey_rotate(key_id=successor.key.pk, caller=Caller.operator(SYSTEM))

    stored = every_stored_value()
    assert admin_key.key.public_id in stored, "the dump really holds the keys' rows"
    assert third.key.public_id in stored
    for key in (admin_key.secret, successor.secret, third.secret):
        assert leaked(key, stored) == []
        assert apikey_verify(presented=key) is not None, "the keys are real: each still verifies"


def test_a_scheduled_rotations_waiting_key_is_stored_encrypted(issue_key):
    created = timezone.now() - timedelta(days=2)
    issued = issue_key(rotate_every=timedelta(days=1), now=created)
    assert apikeys_rotate_due(now=timezone.now()) == 1
    successor = ApiKey.objects.get(rotated_from=issued.key)
    assert successor.pending_secret, "the scheduler keeps the new key for the owner to reveal"

    stored_while_pending = every_stored_value()
    revealed = apikey_reveal(key_id=successor.pk, caller=Caller.operator(SYSTEM))

    assert apikey_verify(presented=revealed) is not None
    assert leaked(revealed, stored_while_pending) == [], "the waiting key is ciphertext, not the key"
    assert leaked(revealed, every_stored_value()) == []
    assert ApiKey.objects.get(pk=successor.pk).pending_secret == "", "revealed once, then wiped"


def test_the_stored_hash_is_an_hmac_under_the_pepper(admin_key, settings):
    key = admin_key.secret
    stored = ApiKey.objects.get(pk=admin_key.key.pk).secret_hash

    expected = hmac.new(settings.API_KEY_PEPPER.encode(), key.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(stored, expected)
    assert stored != hashlib.sha256(key.encode()).hexdigest(), "not a plain SHA-256 of the key"
    assert stored != hashlib.sha256(key[len("idpk_") + 13 :].encode()).hexdigest()
    assert settings.API_KEY_PEPPER not in every_stored_value(), "the pepper never reaches the database"

    # Without the pepper a copy of the database cannot even test a candidate key.
    settings.API_KEY_PEPPER = settings.API_KEY_PEPPER + "-another"
    assert apikey_verify(presented=key) is None


def test_the_key_is_shown_once_by_the_command_and_never_again(owner, client, resource_server, caplog):
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    call_command(
        "create_api_key",
        "--user",
        owner.username,
        "--name",
        "ci",
        "--scope",
        "idp.manage",
        "--role",
        "idp-admin",
        stdout=out,
    )
    printed = out.getvalue()
    key = printed.strip().splitlines()[-1]
    assert key.startswith("idpk_")
    assert printed.count(key) == 1, "printed once"
    row = ApiKey.objects.get(public_id=key[5:17])

    # Later reads: the row as a model and as a dict, its string forms, the introspection answer,
    # the management API used with it, rotating and revoking it.
    assert leaked(key, repr(model_to_dict(row)) + str(row) + repr(row)) == []
    later = [
        json.dumps(apikey_claims(verified=apikey_verify(presented=key), issuer="https://idp.example")),
        client.get(USERS, headers=key_headers(key)).content.decode(),
    ]
    rotate_out, revoke_out = io.StringIO(), io.StringIO()
    call_command("rotate_api_key", row.public_id, "--json", stdout=rotate_out)
    call_command("revoke_api_key", row.public_id, stdout=revoke_out)
    later += [rotate_out.getvalue(), revoke_out.getvalue()]
    assert json.loads(later[1])["count"] >= 1, "the key really called the API"
    assert [text for text in later if leaked(key, text)] == []

    assert leaked(key, every_stored_value()) == [], "nor in the audit rows"
    assert leaked(key, "\n".join(record.getMessage() for record in caplog.records)) == [], "nor in the logs"


@pytest.mark.parametrize("reason", ["revoked", "rotated"])
def test_a_revoked_or_rotated_key_leaves_no_usable_secret_behind(admin_key, reason):
    if reason == "revoked":
        apikey_revoke(key_id=admin_key.key.pk, actor=SYSTEM, reason="leaked")
    else:
        apikey_rotate(key_id=admin_key.key.pk, caller=Caller.operator(SYSTEM))
    row = ApiKey.objects.get(pk=admin_key.key.pk)
    assert row.pending_secret == ""
    assert leaked(admin_key.secret, every_stored_value()) == []
