"""The UserInfo endpoint (OIDC Core §5.3)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from oauth2_provider import views as dot_views

from idp.http.policy import endpoint


@endpoint(cache="no-store", cors=True, errors="json", single_valued_params=True)
class UserInfoView(dot_views.UserInfoView):
    """DOT's userinfo, without the access token in the query string: RFC 9700 §4.3.2 and RFC 6750
    §5.3 forbid it (it lands in proxy and browser logs), and DOT's own BCP switch
    (COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT) guards only its protected-resource decorator,
    not this view. The header (and RFC 6750 §2.2's form body) still work."""

    def _create_userinfo_response(self, request: HttpRequest) -> HttpResponse:
        if "access_token" in request.GET:
            response = JsonResponse(
                {"error": "invalid_request", "error_description": "send the access token in the Authorization header"},
                status=400,
            )
            response["WWW-Authenticate"] = 'Bearer realm="idp", error="invalid_request"'
            response["Cache-Control"] = "no-store"
            return response
        return super()._create_userinfo_response(request)
