"""oauthlib's OpenID Connect server, narrowed to what this provider offers."""

import json
import re
from typing import Any

from oauthlib.oauth2.rfc6749.errors import InvalidRequestError, MissingRedirectURIError, OAuth2Error
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
# RFC 7636 §4.2: code_challenge = BASE64URL(SHA256(verifier)), 43 characters for S256; the grammar
# allows 43 to 128 unreserved characters. Grant.code_challenge holds at most 128.
CODE_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
NONCE_MAX = 255  # Grant.nonce


def judge_authorization_request(request: Any) -> dict[str, Any]:
    """What oauthlib leaves unchecked, judged before anyone signs in, once the client and its
    redirect URI are known (so an error goes back to the client, with its state):
    - an OpenID request without redirect_uri (OIDC Core §3.1.2.1 requires it): an error page;
    - response_mode other than query and form_post: refused, not ignored (oauthlib builds
      form_post's response as a query, which the view then posts);
    - max_age that is no non-negative integer, a malformed claims parameter, a nonce or a
      code_challenge too long to keep or off the RFC 7636 grammar: invalid_request."""
    scopes = (request.scope or "").split()
    if "openid" in scopes and getattr(request, "using_default_redirect_uri", False):
        raise MissingRedirectURIError(request=request)
    mode = request.response_mode
    if mode is not None:
        request.response_mode = "query"  # the error below, and the answer, go in the query
        if mode not in RESPONSE_MODES:
            _refuse(request, "response_mode must be query or form_post")
    max_age = request._params.get("max_age")
    if max_age is not None and not (isinstance(max_age, str) and max_age.isdigit()):
        _refuse(request, "max_age must be a number of seconds")
    claims = request._params.get("claims")
    if claims is not None:
        try:
            parsed = json.loads(claims)
        except (TypeError, ValueError):
            parsed = None
        if not isinstance(parsed, dict):
            _refuse(request, "claims must be a JSON object")
    if request.nonce is not None and len(request.nonce) > NONCE_MAX:
        _refuse(request, f"nonce is longer than {NONCE_MAX} characters")
    if request.code_challenge is not None and not CODE_CHALLENGE.fullmatch(request.code_challenge):
        _refuse(request, "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
    return {}


def _refuse(request: Any, description: str) -> None:
    raise InvalidRequestError(description=description, request=request, state=request.state)


class Server(OpenIDServer):
    def __init__(self, request_validator: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(request_validator, *args, **kwargs)
        # Unknown response and grant types then get oauthlib's own RFC 6749 answers
        # (unsupported_response_type, unsupported_grant_type).
        self._response_types: dict[str, Any] = {k: v for k, v in self._response_types.items() if k in RESPONSE_TYPES}
        self._grant_types: dict[str, Any] = {k: v for k, v in self._grant_types.items() if k in GRANT_TYPES}
        # Only our opaque bearer tokens open the userinfo endpoint; an ID token is not an access
        # token (oauthlib would otherwise accept any JWT it recognises as one).
        self._tokens: dict[str, Any] = {k: v for k, v in self._tokens.items() if k == "Bearer"}
        for grant in (self.auth_grant, self.openid_connect_auth):
            grant.custom_validators.pre_auth.append(refuse_request_objects)
            grant.custom_validators.pre_auth.append(judge_authorization_request)
        # PKCE S256 only, refused at the authorization request with oauthlib's own error (a
        # missing method means "plain", RFC 7636 §4.3). DOT's RFC 9700 gate would refuse "plain"
        # only once the code is minted, after the user consented.
        for grant in (self.auth_grant, self.openid_connect_auth.proxy_target):
            grant._code_challenge_methods = {"S256": grant._code_challenge_methods["S256"]}
