"""Reads of the provider core that are not protocol steps (those are in idp/oauth/selectors.py)."""

from __future__ import annotations

from django.db.models import QuerySet

from idp.models import Application


def client_list() -> QuerySet[Application]:
    return Application.objects.all()


def client_get(*, client_id: str) -> Application:
    """Raises Application.DoesNotExist."""
    return Application.objects.get(client_id=client_id)
