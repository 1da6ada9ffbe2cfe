"""Reads of the provider core that are not protocol steps (those are in idp/oauth/selectors.py)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import MANAGEMENT_PERMISSIONS, ROLES_READ, USERS_READ
from accounts.permissions import MANAGE_SCOPE
from accounts.selectors import Holdings, holdings_of
from idp.models import Application, Consent


def client_carries(*, application: Application, saved: bool = True) -> Holdings:
    """What a client's secret carries: every role its service account holds (for every client) with
    their permissions; when the client is registered for the management API's scope, every
    management permission (a client for idp.manage obtains tokens that administer the provider);
    and for a resource server, reading users and roles (introspection tells whose a token is and
    what it holds). A client not saved yet holds no role."""
    carried = holdings_of(client_pk=application.pk) if saved else Holdings()
    if MANAGE_SCOPE in application.scope_list:
        carried = carried | Holdings(permissions=frozenset(MANAGEMENT_PERMISSIONS))
    if application.is_resource_server:
        carried = carried | Holdings(permissions=frozenset({USERS_READ, ROLES_READ}))
    return carried


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
