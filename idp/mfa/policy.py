"""Who must use a second factor: the holders of a role that requires one (idp-admin does), every
sign-in to a client that requires one, staff in Django admin, and any authorization request that
asks for a level (acr_values, claims)."""

from __future__ import annotations

from typing import Any

from accounts.selectors import user_requires_mfa
from idp.mfa.levels import Level


def level_required(*, user: Any, application: Any = None, admin: bool = False) -> Level:
    """The lowest level this user's sign-in may have, for this client (if any) or Django admin."""
    if application is not None and getattr(application, "require_mfa", False):
        return Level.MFA
    if admin and (user.is_staff or user.is_superuser):
        return Level.MFA
    if user.is_authenticated and user_requires_mfa(user_id=user.pk):
        return Level.MFA
    return Level.PWD
