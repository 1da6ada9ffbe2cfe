"""Telling clients that a session they signed in through has ended: OpenID Connect Back-Channel
Logout 1.0 (a signed logout token POSTed to the client, by Celery) and Front-Channel Logout 1.0
(the signed-out page loads the client's URI in an iframe).

A logout token is signed like an ID token (idp.keys.signing: the active key of the algorithm the
client registered, with its kid), header typ logout+jwt (§2.4), with iss, aud, iat, exp, jti, sub,
sid (whenever the session is known) and the back-channel logout event; never a nonce (§2.4: it
must not be mistaken for an ID token)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.utils import timezone
from jwcrypto import jwt
from oauthlib.common import add_params_to_uri

import audit
from idp.keys import signing as keys
from idp.models import Application
from idp.sessions.outbound import Outcome, form_post

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYP = "logout+jwt"
# Short: the token is POSTed straight away; a retry signs a new one (fresh iat, exp and jti).
LOGOUT_TOKEN_SECONDS = 120


def logout_token_make(*, application: Application, issuer: str, subject: str, sid: str, now: datetime) -> str:
    """A signed logout token for `application` (Back-Channel Logout 1.0 §2.4)."""
    issued_at = int(now.timestamp())
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": application.client_id,
        "iat": issued_at,
        "exp": issued_at + LOGOUT_TOKEN_SECONDS,
        "jti": secrets.token_urlsafe(24),
        "sub": subject,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    if sid:
        claims["sid"] = sid
    key = keys.signing_key_active(application.algorithm)
    header = {"typ": LOGOUT_TOKEN_TYP, "alg": key.algorithm, "kid": key.kid}
    signed = jwt.JWT(header=json.dumps(header), claims=json.dumps(claims))
    signed.make_signed_token(key.jwk)
    return str(signed.serialize())


def backchannel_logout_deliver(
    *, client_id: str, user_id: int, sid: str, issuer: str, attempt: int, will_retry: bool
) -> Outcome:
    """One attempt to POST a logout token to a client's back-channel logout URI, audited
    logout.delivered or logout.delivery_failed (with the attempt, the reason and whether another
    attempt follows on a transient failure). A client gone, disabled or without the URI now gets
    nothing; nor does one that requires the sid of a session that had none."""
    application = Application.objects.filter(client_id=client_id).first()
    actor = audit.Actor.system("logout")
    target = audit.Target("user", str(user_id))
    if application is None or not application.is_active or not application.backchannel_logout_uri:
        return Outcome(False, None, "no_uri", transient=False)
    if application.backchannel_logout_session_required and not sid:
        outcome = Outcome(False, None, "no_sid", transient=False)
    else:
        token = logout_token_make(
            application=application, issuer=issuer, subject=str(user_id), sid=sid, now=timezone.now()
        )
        outcome = form_post(application.backchannel_logout_uri, {"logout_token": token})
    data: dict[str, object] = {"attempt": attempt, "sid_sent": bool(sid)}
    if outcome.status is not None:
        data["status"] = outcome.status
    if outcome.delivered:
        audit.record(audit.Action.LOGOUT_DELIVERED, actor=actor, target=target, client_id=client_id, data=data)
    else:
        data |= {"error": outcome.error, "will_retry": will_retry and outcome.transient}
        audit.record(
            audit.Action.LOGOUT_DELIVERY_FAILED,
            actor=actor,
            target=target,
            client_id=client_id,
            outcome="failure",
            data=data,
        )
    return outcome


@dataclass(frozen=True)
class FrontChannelLogout:
    """The iframes of a signed-out page: each URI to load, and the origins CSP must let it frame."""

    uris: list[str]

    @property
    def origins(self) -> list[str]:
        return sorted({f"{urlsplit(uri).scheme}://{urlsplit(uri).netloc}" for uri in self.uris})


def frontchannel_logout_uris(*, client_ids: list[str], issuer: str, sid: str) -> list[str]:
    """Front-Channel Logout 1.0 §2: each client's frontchannel_logout_uri, with iss and sid as
    query parameters when it requires them."""
    uris = []
    clients = Application.objects.filter(client_id__in=client_ids, is_active=True).exclude(frontchannel_logout_uri="")
    for application in clients.order_by("pk"):
        uri = application.frontchannel_logout_uri
        if application.frontchannel_logout_session_required and sid:
            uri = add_params_to_uri(uri, [("iss", issuer), ("sid", sid)])
        uris.append(uri)
    return uris
