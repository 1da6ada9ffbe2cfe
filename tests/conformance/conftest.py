"""The provider as the OpenID Foundation's certification plans see it: one confidential client
registered for every scope, and one user with every standard claim filled in."""

from __future__ import annotations

import pytest

from tests.conftest import POST_LOGOUT_REDIRECT_URI, REDIRECT_URI
from tests.factories import make_client, make_user, relying_party, sign_in_at
from tests.relying_party import AuthorizationResult, RelyingParty

ALL_SCOPES = ["openid", "profile", "email", "address", "phone", "offline_access"]


@pytest.fixture
def subject(db):
    user = make_user(username="conformance", email="conformance@example.com", first_name="Ada", last_name="Lovelace")
    user.email_verified = True
    user.phone_number = "+441632960001"
    user.phone_number_verified = True
    user.street_address = "12 Analytical Row"
    user.locality = "London"
    user.postal_code = "NW1 1AA"
    user.country = "GB"
    user.locale = "en-GB"
    user.zoneinfo = "Europe/London"
    user.save()
    return user


@pytest.fixture
def certified_client(db):
    return make_client(
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=[POST_LOGOUT_REDIRECT_URI],
        scopes=ALL_SCOPES,
    )


@pytest.fixture
def op(live_server, signing_key, certified_client, subject):
    """The relying party of the suite, talking to the live provider."""
    return relying_party(live_server.url, certified_client)


def sign_in(op: RelyingParty, subject, **kwargs) -> AuthorizationResult:
    """factories.sign_in_at with the suite's defaults: scope openid, and consent given (and
    remembered, as the suite's tester does once) unless the caller says otherwise."""
    kwargs.setdefault("consent", "allow-remember")
    kwargs.setdefault("scope", "openid")
    return sign_in_at(op, subject, **kwargs)


@pytest.fixture(autouse=True)
def _fast_password_hashing(fast_password_hashing):
    """MD5 for users' passwords here (tests/conftest.py says why and when not)."""
