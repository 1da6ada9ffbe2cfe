"""Django's SessionMiddleware, telling each new session where it comes from (device, address,
issuer) and keeping "last active" of the sessions it only reads."""

from __future__ import annotations

from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from oauth2_provider.settings import oauth2_settings

from audit.context import client_ip
from idp.models import USER_AGENT_MAX
from idp.sessions.backend import Origin, SessionStore


def _origin(request: HttpRequest) -> Origin:
    try:
        issuer = oauth2_settings.oidc_issuer(request)
    except DisallowedHost:
        issuer = ""
    return Origin(
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX].replace("\x00", ""),
        ip_address=client_ip(request),
        issuer=issuer,
    )


class SessionMiddleware(DjangoSessionMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        session = request.session
        if isinstance(session, SessionStore):
            # Worked out only when a session is inserted: most requests insert none.
            session.origin_of = lambda: _origin(request)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response = super().process_response(request, response)
        session = getattr(request, "session", None)
        if isinstance(session, SessionStore) and not session.modified:
            session.touch()
        return response
