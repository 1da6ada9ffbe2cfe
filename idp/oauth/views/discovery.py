"""Discovery (OIDC Discovery 1.0) and the JSON Web Key Set: what a relying party reads first."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider import views as dot_views
from oauth2_provider.settings import oauth2_settings

from idp.http.policy import endpoint
from idp.keys import signing as keys
from idp.mfa import levels


@endpoint(cors=True, errors="json")
class ConnectDiscoveryInfoView(dot_views.ConnectDiscoveryInfoView):
    """DOT's discovery document, corrected for what this provider really supports.

    The document follows from settings and the issuer alone, so each process builds it once per
    issuer (one in production; in development the issuer is the request's host) and serves the
    same bytes after that: every process derives the same document."""

    _documents: dict[str, bytes] = {}

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        issuer = oauth2_settings.oidc_issuer(request)
        document = self._documents.get(issuer)
        if document is None:
            document = json.dumps(self._document(request, *args, **kwargs)).encode()
            if len(self._documents) >= 16:  # development: any port of an allowed host is an issuer
                self._documents.clear()
            self._documents[issuer] = document
        return HttpResponse(document, content_type="application/json")

    def _document(self, request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
        data = json.loads(super().get(request, *args, **kwargs).content)
        data.update(
            {
                # Keys live in the database, which DOT's document cannot see (it looks for a PEM
                # in settings and would otherwise announce HS256 only): one chain per algorithm.
                "id_token_signing_alg_values_supported": list(settings.SIGNING_ALGORITHMS),
                "grant_types_supported": list(oauth2_settings.OAUTH2_GRANT_TYPES_SUPPORTED),
                "code_challenge_methods_supported": ["S256"],
                "revocation_endpoint": self._get_endpoint_url(request, "revoke-token", required=True),
                "introspection_endpoint": self._get_endpoint_url(request, "introspect", required=True),
                "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "response_modes_supported": ["query", "form_post"],
                "prompt_values_supported": ["none", "login", "consent"],
                "claims_parameter_supported": True,
                "claim_types_supported": ["normal"],
                "request_parameter_supported": False,
                "request_uri_parameter_supported": False,
                # Authentication levels and methods (idp.mfa.levels), asked for with acr_values
                # or the claims parameter's acr, told in ID tokens' acr and amr.
                "acr_values_supported": list(levels.ACR_VALUES_SUPPORTED),
                # Single logout (idp.sessions.logout): logout tokens carry the sid, and
                # front-channel URIs get iss and sid when the client registered for them.
                "backchannel_logout_supported": True,
                "backchannel_logout_session_supported": True,
                "frontchannel_logout_supported": True,
                "frontchannel_logout_session_supported": True,
            }
        )
        data["claims_supported"] = sorted(
            data["claims_supported"] + ["iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "acr", "amr"]
        )
        return data


@endpoint(cors=True, errors="json")
@method_decorator(csrf_exempt, name="dispatch")
class JwksInfoView(View):
    """The JSON Web Key Set: the public halves of the signing keys kept in the database.

    Public and cookie-free, so CSRF does not apply: a write method gets a plain 405.
    """

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = JsonResponse({"keys": keys.signing_keys_published()})
        max_age = oauth2_settings.OIDC_JWKS_MAX_AGE_SECONDS
        response["Cache-Control"] = f"public, max-age={max_age}"
        return response
