import os

import pytest

# The live server speaks plain http on loopback; authlib refuses that unless told otherwise. This
# switch lives in test configuration only.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

from tests.factories import (  # noqa: E402, F401 - REDIRECT_URI and POST_LOGOUT_REDIRECT_URI: imported from here too
    POST_LOGOUT_REDIRECT_URI,
    REDIRECT_URI,
    make_client,
    make_user,
    relying_party,
    sign_in_at,
)


@pytest.fixture(autouse=True, scope="session")
def _real_services_only(django_db_setup, django_db_blocker):
    """The suite runs on PostgreSQL and Redis, never on SQLite or an in-process cache."""
    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            pytest.exit("The test suite needs PostgreSQL: set DATABASE_URL (make test does).", returncode=2)
    if "RedisCache" not in settings.CACHES["default"]["BACKEND"]:
        pytest.exit("The test suite needs Redis: set REDIS_URL (make test does).", returncode=2)
    cache.set("idp-test-ping", "pong", 5)
    assert cache.get("idp-test-ping") == "pong"


@pytest.fixture(autouse=True)
def _fresh_published_keys():
    """Each test database starts without keys: no process-local copy of another test's JWKS."""
    from idp.keys.signing import signing_keys_published_forget

    signing_keys_published_forget()


@pytest.fixture(autouse=True)
def _fresh_rate_limits_and_lockouts():
    """No rate-limit counter, sign-in lockout or cached
    client or roles (accounts.selectors.MarkedCache) left from another test: Redis outlives test
    databases, whose ids start again at 1 in the next run. Tests of the limits lower them in
    settings."""
    from idp.http.ratelimit import KEY_PREFIX
    from tests.redis_keys import raw_redis

    client = raw_redis()
    patterns = (
        f"{KEY_PREFIX}*",
        "*:axes-*",
        "*:idp:access:*",
        "*:idp:clients:*",
        "*:idp:introspect*",
    )
    for pattern in patterns:
        for key in client.scan_iter(match=pattern):
            client.delete(key)


@pytest.fixture
def fast_password_hashing(settings):
    """Argon2 costs about 0.15 s per password hashed and again per sign-in, by design; tests whose
    subject is not password storage (which keeps its own tests) hash with MD5. Only for code in
    this process (the live server): a gunicorn or Celery subprocess keeps the real hashers, so a
    directory whose tests sign in at one must not use this. Client secrets keep their hasher."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]


@pytest.fixture
def signing_key(db):
    import audit
    from idp.keys.rotation import signing_keys_ensure
    from idp.models import SigningKey

    signing_keys_ensure(actor=audit.Actor.system("tests"))
    return SigningKey.objects.get(status=SigningKey.Status.ACTIVE, algorithm=SigningKey.Algorithm.RS256)


@pytest.fixture
def alice(db):
    return make_user(username="alice", email="alice@example.com", first_name="Alice", last_name="Liddell")


@pytest.fixture
def issued_client(db):
    """A confidential authorization-code client, as `create_client` registers it; marked a resource
    server too (create_client --introspect), since many tests check a token it got by introspecting
    it with the same credentials."""
    return make_client(
        redirect_uris=[REDIRECT_URI], post_logout_redirect_uris=[POST_LOGOUT_REDIRECT_URI], is_resource_server=True
    )


@pytest.fixture
def rp(live_server, signing_key, issued_client):
    """The relying party, talking to the live server over HTTP."""
    return relying_party(live_server.url, issued_client)


@pytest.fixture
def signed_in_code(rp, alice):
    """A fresh authorization code for alice, with PKCE."""
    return sign_in_at(rp, alice)


@pytest.fixture
def admin_client(client, admin_user):
    """pytest-django's, with the session signed in with a second factor, as Django admin needs
    (idp.admin_site)."""
    from tests.factories import signed_in_client

    return signed_in_client(admin_user, client=client)
