"""Transport and cookies under IDP_ENV=production, through HTTP requests to the application.

Settings are read once per process, so a fresh `manage.py shell` with the production environment
(tests/idp/test_settings.py) sends the requests, with Django's test client, to this test's
database. The settings themselves and `check --deploy` are tested in tests/idp/test_settings.py.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection

from tests.factories import USER_PASSWORD, make_user
from tests.idp.test_settings import manage, production_env

HOST = "id.example.com"
# Marked so that pytest-django sets up the test database the fixture below writes to.
pytestmark = pytest.mark.django_db

# Runs inside the production process; prints one JSON line of what it saw.
SCRIPT = """
import json, re
from django.test import Client, override_settings

# Static files are collected at image build (Dockerfile); here the pages link them unhashed.
with override_settings(STORAGES={
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}):
    seen = {}
    plain = Client(HTTP_HOST=HOST)
    reply = plain.get("/accounts/login/?next=/")
    seen["http"] = [reply.status_code, reply.get("Location")]
    reply = plain.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="http")
    seen["forwarded_http"] = [reply.status_code, reply.get("Location")]
    reply = plain.get("/accounts/login/", HTTP_X_FORWARDED_PROTOCOL="https", HTTP_X_FORWARDED_SSL="on")
    seen["other_header"] = reply.status_code
    seen["healthz"] = plain.get("/healthz").status_code

    browser = Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https")
    page = browser.get("/accounts/login/")
    seen["https"] = page.status_code
    seen["hsts"] = page.get("Strict-Transport-Security")
    seen["csp"] = page.get("Content-Security-Policy")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    reply = browser.post(
        "/accounts/login/",
        {"csrfmiddlewaretoken": token, "username": USERNAME, "password": PASSWORD},
        HTTP_ORIGIN="https://" + HOST,
    )
    seen["sign_in"] = [reply.status_code, reply.get("Location")]
    seen["cookies"] = {
        name: {
            "secure": bool(morsel["secure"]),
            "httponly": bool(morsel["httponly"]),
            "samesite": morsel["samesite"],
            "path": morsel["path"],
            "domain": morsel["domain"],
        }
        for name, morsel in {**page.cookies, **reply.cookies}.items()
    }
    print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def production_replies(django_db_blocker, django_db_setup):
    with django_db_blocker.unblock():
        user = make_user()
        database = dict(connection.settings_dict)
    url = (
        f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
    )
    env = production_env(DATABASE_URL=url, IDP_ALLOWED_HOSTS=HOST, IDP_ISSUER=f"https://{HOST}")
    if database.get("PASSWORD"):
        env["PGPASSWORD"] = database["PASSWORD"]
    script = f"HOST={HOST!r}; USERNAME={user.username!r}; PASSWORD={USER_PASSWORD!r}\n{SCRIPT}"
    try:
        result = manage("shell", "--no-imports", "-c", script, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        with django_db_blocker.unblock():
            user.delete()


def test_plain_http_is_redirected_to_https(production_replies):
    assert production_replies["http"] == [301, f"https://{HOST}/accounts/login/?next=/"]


def test_the_proxys_header_is_what_decides_https(production_replies):
    # The proxy (deploy/Caddyfile) overwrites X-Forwarded-Proto; "http" there means plain http.
    assert production_replies["forwarded_http"] == [301, f"https://{HOST}/accounts/login/"]
    # Other headers a client might send are not trusted.
    assert production_replies["other_header"] == 301
    assert production_replies["https"] == 200


def test_the_health_check_answers_over_plain_http(production_replies):
    """The container's health check talks to gunicorn directly, without the proxy."""
    assert production_replies["healthz"] == 200


def test_hsts_is_a_year_with_subdomains_and_preload(production_replies):
    assert production_replies["hsts"] == "max-age=31536000; includeSubDomains; preload"


def test_the_production_pages_carry_the_csp(production_replies):
    assert "frame-ancestors 'none'" in production_replies["csp"]
    assert "script-src 'self';" in production_replies["csp"] + ";"


def test_sign_in_cookies_are_secure_httponly_and_samesite(production_replies):
    assert production_replies["sign_in"] == [302, "/"]
    cookies = production_replies["cookies"]
    assert set(cookies) == {"__Host-idp_session", "__Host-idp_csrf"}
    for name, flags in cookies.items():
        # __Host- cookies: Secure, Path=/, no Domain (browsers refuse the name otherwise).
        assert flags == {"secure": True, "httponly": True, "samesite": "Lax", "path": "/", "domain": ""}, name
