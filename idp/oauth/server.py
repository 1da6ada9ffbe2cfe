"""oauthlib's OpenID Connect server, narrowed to what this provider offers."""

from typing import Any

from oauthlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from oauthlib.openid import Server as OpenIDServer

# Authorization code (with PKCE) is the only front-channel flow; implicit and hybrid response
# types are gone (RFC 9700 §2.1.2), as are the password and device grants.
RESPONSE_TYPES = {"code"}
GRANT_TYPES = {"authorization_code", "client_credentials", "refresh_token"}


class RequestNotSupported(OAuth2Error):
    error = "request_not_supported"  # OIDC Core §3.1.2.6
    description = "request objects are not supported"


class RequestUriNotSupported(OAuth2Error):
    error = "request_uri_not_supported"
    description = "request_uri is not supported"


def refuse_request_objects(request: Any) -> dict[str, Any]:
    """OIDC Core §6: an OP that does not support request objects answers these errors. Runs after
    the client and redirect URI are validated, so the error goes back to the client."""
    if request._params.get("request"):
        raise RequestNotSupported(request=request, state=request.state)
    if request._params.get("request_uri"):
        raise RequestUriNotSupported(request=request, state=request.state)
    return {}


# query (the default) and OAuth 2.0 Form Post Response Mode (idp.oauth.views posts the response).
# fragment is refused: an authorization code is never put in a fragment here.
RESPONSE_MODES = {"query", "form_post"}


def judge_response_mode(request: Any) -> dict[str, Any]:
    """Refuse a response mode this provider does not speak, rather than ignore it; the error itself
    goes back in the query. oauthlib builds form_post's response as a query (the view posts it)."""
    mode = request.response_mode
    if mode is None:
        return {}
    request.response_mode = "query"
    if mode not in RESPONSE_MODES:
        raise InvalidRequestError(
            description="response_mode must be query or form_post", request=request, state=request.state
        )
    return {}


class Server(OpenIDServer):
    def __init__(self, request_validator: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(request_validator, *args, **kwargs)
        # Unknown response and grant types then get oauthlib's own RFC 6749 answers
        # (unsupported_response_type, unsupported_grant_type).
        self._response_types = {k: v for k, v in self._response_types.items() if k in RESPONSE_TYPES}
        self._grant_types = {k: v for k, v in self._grant_types.items() if k in GRANT_TYPES}
        # Only our opaque bearer tokens open the userinfo endpoint; an ID token is not an access
        # token (oauthlib would otherwise accept any JWT it recognises as one).
        self._tokens = {k: v for k, v in self._tokens.items() if k == "Bearer"}
        for grant in (self.auth_grant, self.openid_connect_auth):
            grant.custom_validators.pre_auth.append(refuse_request_objects)
            grant.custom_validators.pre_auth.append(judge_response_mode)
        # PKCE S256 only, refused at the authorization request with oauthlib's own error (a
        # missing method means "plain", RFC 7636 §4.3). DOT's RFC 9700 gate would refuse "plain"
        # only once the code is minted, after the user consented.
        for grant in (self.auth_grant, self.openid_connect_auth.proxy_target):
            grant._code_challenge_methods = {"S256": grant._code_challenge_methods["S256"]}
