"""Row locks that must not reach further than the row they protect.

PostgreSQL checks Django's foreign keys (DEFERRABLE INITIALLY DEFERRED) at COMMIT, and by then a
token request holds the audit chain's lock (audit.record). A transaction that locks a user's or a
client's row FOR UPDATE, and then waits for that audit lock, deadlocks with any token issued to
that user or client meanwhile: the token's COMMIT waits for the row (FOR KEY SHARE), the other
transaction for the audit lock. make bench found it (a code exchange against a refresh of the same
user). So these locks are FOR NO KEY UPDATE of their own row only: an insert that merely refers to
the row commits at once while they are held.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from oauthlib.common import Request

import audit
from accounts.selectors import Caller
from accounts.services import user_deactivate
from idp.models import AccessToken, Grant
from idp.oauth import clients
from idp.oauth.validator import IdpValidator
from tests.factories import make_client, make_user

SYSTEM = audit.Actor.system("tests")
WAIT_SECONDS = 10


def _holding(lock: Callable[[], None], meanwhile: Callable[[], None]) -> None:
    """Run lock() in a transaction of its own thread and keep it open while meanwhile() runs (and
    commits) here; fail if meanwhile() had to wait for the held transaction."""
    locked, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                lock()
                locked.set()
                release.wait(WAIT_SECONDS * 2)
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            failures.append(error)
            locked.set()
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(WAIT_SECONDS)
        assert not failures, failures
        with connection.cursor() as cursor:
            # Waiting for the held row would otherwise be forever: fail after a while instead.
            cursor.execute(f"SET lock_timeout = '{WAIT_SECONDS}s'")
        meanwhile()
    finally:
        release.set()
        holder.join(WAIT_SECONDS * 2)
    assert not failures, failures


def _token_for(*, user, application) -> None:
    """What every token request inserts: a row referring to the user and the client, committed."""
    with transaction.atomic():
        AccessToken.objects.create(
            user=user,
            application=application,
            token="",
            token_checksum=f"{threading.get_ident():x}{timezone.now().timestamp()}".ljust(64, "0")[:64],
            expires=timezone.now() + timedelta(minutes=5),
            scope="openid",
        )


@pytest.mark.django_db(transaction=True)
def test_redeeming_a_code_does_not_lock_its_user_against_other_tokens():
    user = make_user()
    client = make_client().application
    Grant.objects.create(
        user=user,
        code="the-code",
        application=client,
        expires=timezone.now() + timedelta(minutes=1),
        redirect_uri="http://127.0.0.1:9999/callback",
        scope="openid",
    )

    def redeem() -> None:
        assert IdpValidator().validate_code(client.client_id, "the-code", client, Request("https://id.test/token"))

    _holding(redeem, lambda: _token_for(user=user, application=client))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "change",
    [
        lambda application: clients.client_disable(application_id=application.pk, actor=SYSTEM),
        lambda application: clients.client_secret_rotate(
            application_id=application.pk, grace_seconds=0, caller=Caller.operator(SYSTEM)
        ),
        lambda application: clients.client_secret_reset(application_id=application.pk, caller=Caller.operator(SYSTEM)),
    ],
    ids=["disable", "rotate-secret", "reset-secret"],
)
def test_changing_a_client_does_not_lock_it_against_its_tokens(change):
    user = make_user()
    client = make_client().application
    _holding(lambda: change(client), lambda: _token_for(user=user, application=client))


@pytest.mark.django_db(transaction=True)
def test_deactivating_a_user_does_not_lock_them_against_tokens_in_flight():
    user = make_user()
    client = make_client().application
    _holding(
        lambda: user_deactivate(user_id=user.pk, actor=SYSTEM),
        lambda: _token_for(user=user, application=client),
    )
