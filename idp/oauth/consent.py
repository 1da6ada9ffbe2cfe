"""Remembered consent: a user's "allow" for a client, kept when they tick "remember this decision",
and its withdrawal (which ends the client's access)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet

import audit
from idp.models import Application, Consent, Grant
from idp.oauth.tokens import user_tokens_revoke


def consent_covers(*, user_id: int, client_id: str, scopes: list[str]) -> bool:
    consent = Consent.objects.filter(user_id=user_id, application__client_id=client_id).first()
    return consent is not None and consent.covers(scopes)


def consent_list_for(*, user: Any) -> QuerySet[Consent]:
    """The applications a user allowed to skip the consent page."""
    return Consent.objects.filter(user=user).select_related("application").order_by("application__name")


def consent_get_for(*, user: Any, client_id: str) -> Consent:
    """The user's own consent for a client; Consent.DoesNotExist alike for missing and not theirs."""
    return consent_list_for(user=user).get(application__client_id=client_id)


@transaction.atomic
def consent_grant(*, user_id: int, application: Application, scopes: list[str], remember: bool) -> Consent | None:
    """The user allowed these scopes for the client on the consent page. With remember, the
    decision is kept (added to what was allowed before) so the page is not shown again for them."""
    consent = None
    if remember:
        consent, _ = Consent.objects.select_for_update().get_or_create(
            user_id=user_id, application=application, defaults={"scope": ""}
        )
        merged = sorted(set(consent.scope.split()) | set(scopes))
        if merged != sorted(consent.scope.split()):
            consent.scope = " ".join(merged)
            consent.save(update_fields=["scope", "updated_at"])
    audit.record(
        audit.Action.CONSENT_GRANTED,
        actor=audit.Actor("user", str(user_id)),
        target=audit.Target.client(application),
        client_id=application.client_id,
        data={"scope": scopes, "remembered": remember},
    )
    return consent


@transaction.atomic
def consent_revoke(*, user: Any, client_id: str, actor: audit.Actor) -> bool:
    """Withdraw a user's remembered consent for a client and end the client's access: every token
    it holds for the user (refresh-token families included) and every code not yet redeemed.

    Safe to call twice: the second call finds nothing, changes nothing and records nothing.
    Returns whether there was anything to withdraw."""
    application = Application.objects.filter(client_id=client_id).first()
    if application is None:
        return False
    consent = Consent.objects.select_for_update().filter(user=user, application=application).first()
    # An unredeemed code would still buy tokens after the revocation. Redeemed ones stay: they
    # are how a code presented again is recognised as reuse (validator.validate_code).
    codes, _ = Grant.objects.filter(user=user, application=application, redeemed_at__isnull=True).delete()
    if consent is not None:
        consent.delete()
        audit.record(
            audit.Action.CONSENT_REVOKED,
            actor=actor,
            target=audit.Target.client(application),
            client_id=application.client_id,
            data={"scope": consent.scope.split(), "pending_codes": codes},
        )
    revoked = user_tokens_revoke(user_id=user.pk, actor=actor, reason="consent_revoked", application=application)
    return consent is not None or codes > 0 or revoked > 0
