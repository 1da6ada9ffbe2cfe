"""Who may call the management API: DRF permission classes, shared by every app's api.py."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts.selectors import Caller, caller_get

# The scope a token needs before its subject's permissions count at all: a token a user gave some
# third-party app for their profile must not administer the provider (least privilege).
MANAGE_SCOPE = "idp.manage"


class InsufficientScope(exceptions.PermissionDenied):
    """RFC 6750 §3.1: the token is valid but was not issued for the management API."""

    error_code = "insufficient_scope"
    default_detail = f"the token needs scope {MANAGE_SCOPE}"
    auth_header = f'Bearer realm="idp", error="insufficient_scope", scope="{MANAGE_SCOPE}"'


class NotPermitted(exceptions.PermissionDenied):
    error_code = "access_denied"


def request_caller(request: Request) -> Caller:
    """The caller of an API request, computed once per request (HasPermission does it first)."""
    caller = getattr(request, "_idp_caller", None)
    if caller is None:
        # What the authenticator returned: an AccessToken, or an API key's VerifiedKey.
        token: Any = request.auth
        if hasattr(token, "caller"):
            caller = token.caller()  # an API key (apikeys.selectors.VerifiedKey) knows its caller
        else:
            caller = caller_get(user=token.user if token.user_id else None, application=token.application)
        request._idp_caller = caller  # type: ignore[attr-defined]  # a memo DRF's Request does not declare
    return caller


def HasPermission(codename: str, *, write: str | None = None) -> type[BasePermission]:  # noqa: N802
    """A permission class requiring a bearer token (or an API key) with scope idp.manage whose
    subject holds `codename` (or, for unsafe methods, `write` when given) through a global role
    (an API key: through the global roles it carries): a client's own roles never administer the
    provider (accounts.selectors.Caller).

    No token: 401. A token without the scope, or a subject without the permission: 403.
    """

    class _HasPermission(BasePermission):
        def has_permission(self, request: Request, view: Any) -> bool:
            token: Any = request.auth  # as in request_caller
            if token is None or not hasattr(token, "allow_scopes"):
                return False  # DRF answers 401 with WWW-Authenticate: no authenticator succeeded
            if token.user_id is not None and not token.user.is_active:
                # A deactivated user's tokens stop working here at once, not when they expire.
                raise exceptions.NotAuthenticated("the token's user is deactivated")
            if not token.allow_scopes([MANAGE_SCOPE]):
                raise InsufficientScope()
            needed = write if write is not None and request.method not in SAFE_METHODS else codename
            if needed not in request_caller(request).access.permissions:
                raise NotPermitted(f"requires permission {needed}")
            return True

    _HasPermission.__name__ = _HasPermission.__qualname__ = f"HasPermission({codename!r}, write={write!r})"
    return _HasPermission
