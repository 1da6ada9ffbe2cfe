"""The whole sign-in life cycle, end to end, through a real relying party (authlib) against the
live server."""

from __future__ import annotations

import requests
from django.db import connection

from audit.models import AuditEvent
from tests.conftest import POST_LOGOUT_REDIRECT_URI
from tests.factories import sign_in_at, tokens_at


def rows_containing(value: str) -> list[str]:
    """Every table whose rows, rendered as text, contain the value anywhere."""
    hits = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT count(*) FROM {quoted} AS t WHERE strpos(t::text, %s) > 0", [value])  # noqa: S608
            if cursor.fetchone()[0]:
                hits.append(table)
    return hits


def revoke(rp, token: str, *, hint: str) -> requests.Response:
    data = {"token": token, "token_type_hint": hint}
    return requests.post(
        rp.metadata["revocation_endpoint"], data=data, auth=(rp.client_id, rp.client_secret), timeout=10
    )


def introspect(rp, token: str, **extra: str) -> requests.Response:
    return requests.post(
        rp.metadata["introspection_endpoint"],
        data={"token": token, **extra},
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )


def test_sign_in_refresh_introspect_revoke_and_sign_out(rp, alice):
    # Discovery: every endpoint absolute, the issuer is the server root.
    assert rp.metadata["issuer"] == rp.base_url
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "end_session_endpoint"):
        assert rp.metadata[name].startswith(rp.base_url + "/")

    # Front channel: sign in with the real form, consent, code back at the client with its state.
    result = sign_in_at(rp, alice)
    assert result.params["state"] == result.state
    assert result.params["iss"] == rp.metadata["issuer"]  # RFC 9207
    code = result.params["code"]
    assert rows_containing(code) == [], "the authorization code is stored only as a digest"

    # Back channel: code + PKCE verifier for tokens.
    tokens = rp.exchange(result)
    assert tokens["token_type"] == "Bearer"
    assert 0 < tokens["expires_in"] <= 600
    claims = rp.verify_id_token(tokens["id_token"], nonce=result.nonce)
    assert claims["sub"] == str(alice.pk)

    userinfo = requests.get(
        rp.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert userinfo.status_code == 200
    alice.refresh_from_db()
    assert userinfo.json() == {
        "sub": str(alice.pk),
        "email": "alice@example.com",
        "email_verified": False,
        "name": "Alice Liddell",
        "given_name": "Alice",
        "family_name": "Liddell",
        "preferred_username": "alice",
        "updated_at": int(alice.updated_at.timestamp()),
    }

    # Refresh: a new pair, same subject.
    refreshed = dict(rp.session().refresh_token(rp.metadata["token_endpoint"], refresh_token=tokens["refresh_token"]))
    assert refreshed["access_token"] != tokens["access_token"]
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    assert rp.verify_id_token(refreshed["id_token"], nonce=None)["sub"] == str(alice.pk)

    active = introspect(rp, refreshed["access_token"])
    assert active.status_code == 200
    body = active.json()
    assert body["active"] is True
    assert body["sub"] == str(alice.pk)
    assert body["client_id"] == rp.client_id
    assert body["token_type"] == "Bearer"
    assert set(body["scope"].split()) == {"openid", "profile", "email", "offline_access"}
    assert introspect(rp, tokens["access_token"]).json() == {"active": False}, "the refreshed-away token is dead"

    # RFC 7009 revocation, then introspection says inactive and nothing more.
    revoked = revoke(rp, refreshed["access_token"], hint="access_token")
    assert revoked.status_code == 200
    assert introspect(rp, refreshed["access_token"]).json() == {"active": False}

    # The rotated-away refresh token is rejected.
    reused = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"

    # No table holds any issued secret in plaintext.
    for secret in (
        code,
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
    ):
        assert rows_containing(secret) == []

    # RP-initiated logout with this session's own, unexpired ID token: no question, back to the
    # registered URI with the state.
    confirmed = rp.browser.get(
        rp.metadata["end_session_endpoint"],
        params={
            "id_token_hint": refreshed["id_token"],
            "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI,
            "state": "bye",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert confirmed.status_code == 302
    assert confirmed.headers["Location"] == f"{POST_LOGOUT_REDIRECT_URI}?state=bye"
    after = sign_in_at(rp, alice, prompt="none", consent=None)
    assert after.params.get("error") == "login_required", "the session has ended"

    actions = list(AuditEvent.objects.filter(client_id=rp.client_id).values_list("action", flat=True))
    assert actions == [
        "client.created",
        "consent.granted",
        "code.issued",
        "token.issued",
        "token.refreshed",
        "token.revoked",  # at the revocation endpoint: the refreshed pair
        "token.reuse_detected",  # the rotated-away refresh token; its family had nothing left to revoke
    ]


def test_client_secret_post_works_as_well_as_basic(rp, alice):
    result = sign_in_at(rp, alice)
    client = rp.session(state=result.state, token_endpoint_auth_method="client_secret_post")
    tokens = client.fetch_token(
        rp.metadata["token_endpoint"], authorization_response=result.location, code_verifier=result.code_verifier
    )
    assert rp.verify_id_token(tokens["id_token"], nonce=result.nonce)["sub"] == str(alice.pk)


def test_remembered_consent_skips_the_consent_page(rp, alice):
    sign_in_at(rp, alice, consent="allow-remember")
    again = sign_in_at(rp, alice, consent=None)
    assert "code" in again.params
    wider = sign_in_at(rp, alice, consent="allow", prompt="consent")
    assert "code" in wider.params


def test_consent_not_remembered_asks_again(rp, alice):
    sign_in_at(rp, alice, consent="allow")
    again = sign_in_at(rp, alice, consent="allow")
    assert "code" in again.params


def test_denying_consent_returns_access_denied(rp, alice):
    result = sign_in_at(rp, alice, consent="deny")
    assert result.params["error"] == "access_denied"
    assert result.params["state"] == result.state
    assert "code" not in result.params


def test_refresh_token_introspects_until_it_is_rotated(rp, alice):
    tokens = tokens_at(rp, alice)
    body = introspect(rp, tokens["refresh_token"], token_type_hint="refresh_token").json()
    assert body["active"] is True
    assert body["token_type"] == "refresh_token", "a resource server must not take it for a bearer token"
    assert body["sub"] == str(alice.pk)
    assert body["client_id"] == rp.client_id

    rp.session().refresh_token(rp.metadata["token_endpoint"], refresh_token=tokens["refresh_token"])
    assert introspect(rp, tokens["refresh_token"]).json() == {"active": False}


def test_revoking_the_refresh_token_ends_its_access_token_too(rp, alice):
    tokens = tokens_at(rp, alice)
    revoked = revoke(rp, tokens["refresh_token"], hint="refresh_token")
    assert revoked.status_code == 200
    assert introspect(rp, tokens["refresh_token"]).json() == {"active": False}
    assert introspect(rp, tokens["access_token"]).json() == {"active": False}
    again = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert again.json()["error"] == "invalid_grant"


def test_a_deactivated_users_tokens_stop_working_at_once(rp, alice):
    tokens = tokens_at(rp, alice)
    alice.is_active = False
    alice.save(update_fields=["is_active"])

    assert introspect(rp, tokens["access_token"]).json() == {"active": False}
    assert introspect(rp, tokens["refresh_token"]).json() == {"active": False}
    userinfo = requests.get(
        rp.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert userinfo.status_code == 401
    refreshed = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
