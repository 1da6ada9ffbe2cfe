"""Reads of the provider core that are not protocol steps (those are in idp/oauth/selectors.py)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from idp.models import Application, Consent


def client_list() -> QuerySet[Application]:
    return Application.objects.all()


def client_get(*, client_id: str) -> Application:
    """Raises Application.DoesNotExist."""
    return Application.objects.get(client_id=client_id)


def consent_list_for(*, user: Any) -> QuerySet[Consent]:
    """The applications a user allowed to skip the consent page."""
    return Consent.objects.filter(user=user).select_related("application").order_by("application__name")


def consent_get_for(*, user: Any, client_id: str) -> Consent:
    """The user's own consent for a client; Consent.DoesNotExist alike for missing and not theirs."""
    return consent_list_for(user=user).get(application__client_id=client_id)
