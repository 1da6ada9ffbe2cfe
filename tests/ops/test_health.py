"""/healthz (the process answers) and /readyz (database, Redis, migrations, the RS256 signing key):
each failing check is named, and nothing else is said; both answer plain http in production,
are never rate limited, and do not depend on what they do not check."""

from __future__ import annotations

import json

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from idp.models import SigningKey
from tests.idp.test_settings import manage, production_env

CLOSED_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def readyz(client):
    reply = client.get("/readyz")
    assert reply["Content-Type"] == "application/json"
    assert reply["Cache-Control"] == "no-store"
    return reply.status_code, reply.json()


def test_ready_when_every_check_passes(client, signing_key):
    assert readyz(client) == (200, {"status": "ready"})


def test_no_active_signing_key_is_not_ready(client, db):
    assert not SigningKey.objects.exists()
    assert readyz(client) == (503, {"status": "unavailable", "failed": ["signing_key"]})


def test_an_unreachable_redis_is_not_ready(client, signing_key, settings):
    settings.REDIS_URL = CLOSED_REDIS
    assert readyz(client) == (503, {"status": "unavailable", "failed": ["redis"]})


def test_an_unapplied_migration_is_not_ready(client, signing_key):
    # As after `migrate idp <previous>` or a restore from an older backup, under a running process:
    # the test's transaction rolls the row back afterwards.
    recorder = MigrationRecorder(connection)
    last = max(name for app, name in recorder.applied_migrations() if app == "idp")
    recorder.record_unapplied("idp", last)
    assert readyz(client) == (503, {"status": "unavailable", "failed": ["migrations"]})
    recorder.record_applied("idp", last)
    assert readyz(client) == (200, {"status": "ready"})


def test_migrations_the_code_does_not_know_yet_keep_it_ready(client, signing_key):
    # A newer release migrated the database first (a rolling deploy): this release still runs.
    MigrationRecorder(connection).record_applied("idp", "9999_from_a_newer_release")
    assert readyz(client) == (200, {"status": "ready"})


def test_every_check_failing_names_each_once(client, db, settings):
    settings.REDIS_URL = CLOSED_REDIS
    assert readyz(client) == (503, {"status": "unavailable", "failed": ["redis", "signing_key"]})


@pytest.fixture
def database_down(transactional_db):
    """The default connection pointed at a port nothing listens on, then restored."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT="1")
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def test_an_unreachable_database_is_named_alone(client, database_down):
    # The migrations and the signing key are read from the database: its outage is the one cause.
    status, body = readyz(client)
    assert (status, body) == (503, {"status": "unavailable", "failed": ["database"]})


def test_liveness_depends_on_neither_the_database_nor_redis(client, database_down, settings):
    settings.REDIS_URL = CLOSED_REDIS
    reply = client.get("/healthz")
    assert (reply.status_code, reply.json()) == (200, {"status": "ok"})


def test_a_failed_check_reveals_no_internals(client, db, settings, caplog):
    settings.REDIS_URL = CLOSED_REDIS
    reply = client.get("/readyz")
    assert set(reply.json()) == {"status", "failed"}
    for leak in ("127.0.0.1", "Connection", "Error", "ensure_signing_key", "Traceback"):
        assert leak not in reply.content.decode()
    assert "readyz: redis check failed" in caplog.text, "the reason goes to the log"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_are_never_rate_limited(client, settings, path):
    settings.IDP_RATE_LIMITS = {name: "1/minute" for name in django_settings.IDP_RATE_LIMITS}
    for _ in range(5):
        assert client.get(path).status_code != 429


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "delete", "options", "head"])
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_never_fail_on_odd_requests(client, method, path):
    reply = getattr(client, method)(path, {"x": "\x00" * 10}, HTTP_X_FORWARDED_FOR="garbage")
    assert reply.status_code < 500 or (path == "/readyz" and reply.status_code == 503)


# Runs inside a production process (settings are read once per process); prints what it saw.
PRODUCTION_SCRIPT = """
import json
from django.test import Client, override_settings

# Static files are collected at image build (Dockerfile); here the 404 page links them unhashed.
with override_settings(STORAGES={
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}):
    plain = Client(HTTP_HOST=HOST)
    seen = {path: plain.get(path).status_code for path in ("/healthz", "/readyz", "/metrics", "/no-such-page")}
    seen["metrics_with_token"] = plain.get("/metrics", HTTP_AUTHORIZATION="Bearer " + TOKEN).status_code
print(json.dumps(seen))
"""


@pytest.mark.django_db
def test_probes_and_metrics_answer_plain_http_in_production():
    host, token = "id.example.com", "production-metrics-token-" + "z" * 32
    database = connection.settings_dict
    env = production_env(
        DATABASE_URL=f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/"
        f"{database['NAME']}",
        IDP_ALLOWED_HOSTS=host,
        IDP_METRICS_TOKEN=token,
    )
    if database.get("PASSWORD"):
        env["PGPASSWORD"] = database["PASSWORD"]
    script = f"HOST={host!r}; TOKEN={token!r}\n{PRODUCTION_SCRIPT}"
    result = manage("shell", "--no-imports", "-c", script, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # The probes reach gunicorn directly, over plain http: no redirect to https.
    assert seen["/healthz"] == 200
    assert seen["/readyz"] == 503, "an answer, not a redirect (not ready: this database has no signing key)"
    assert seen["metrics_with_token"] == 200
    # Without the token: no network is allowed by default in production, and the answer is a 404.
    assert seen["/metrics"] == 404
    assert seen["/no-such-page"] == 301, "any other path is redirected to https"
