"""Settings come from the environment only, and production refuses to start unsafe.

Each case starts a fresh `manage.py` process with exactly the environment given (and no .env file),
because settings are read once per process.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def production_env(**overrides: str | None) -> dict[str, str]:
    """A complete, valid production environment; overrides set or (with None) remove variables."""
    env = {
        "PATH": os.environ["PATH"],
        "IDP_ENV_FILE": "",  # the developer's .env plays no part
        "IDP_ENV": "production",
        "IDP_SECRET_KEY": secrets.token_urlsafe(50),
        "IDP_KEY_ENCRYPTION_KEYS": fernet_key(),
        "IDP_CLIENT_SECRET_PEPPER": secrets.token_urlsafe(32),
        "IDP_API_KEY_PEPPER": secrets.token_urlsafe(32),
        "IDP_ISSUER": "https://id.example.com",
        "IDP_ALLOWED_HOSTS": "id.example.com",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/idp"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def printed(script: str, env: dict[str, str]) -> list[str]:
    """What a one-line script printed last inside `manage.py shell`, split on whitespace."""
    result = manage("shell", "--no-imports", "-c", script, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1].split()


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_check_deploy_without_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_settings_are_strict():
    script = (
        "from django.conf import settings as s;"
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS,"
        " s.SECURE_HSTS_PRELOAD, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY,"
        " s.SECURE_PROXY_SSL_HEADER, s.SESSION_COOKIE_NAME)"
    )
    assert printed(script, production_env()) == [
        "False", "True", "31536000", "True", "True", "True", "True", "True",
        "('HTTP_X_FORWARDED_PROTO',", "'https')", "__Host-idp_session",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"IDP_SECRET_KEY": ""}, "IDP_SECRET_KEY"),
        ({"IDP_KEY_ENCRYPTION_KEYS": ""}, "IDP_KEY_ENCRYPTION_KEYS"),
        ({"IDP_KEY_ENCRYPTION_KEYS": "not-a-fernet-key"}, "IDP_KEY_ENCRYPTION_KEYS"),
        ({"IDP_CLIENT_SECRET_PEPPER": ""}, "IDP_CLIENT_SECRET_PEPPER"),
        ({"IDP_API_KEY_PEPPER": ""}, "IDP_API_KEY_PEPPER"),
        ({"DATABASE_URL": None}, "SQLite"),
        ({"DATABASE_URL": "sqlite:///var/idp.sqlite3"}, "SQLite"),
        ({"REDIS_URL": None}, "REDIS_URL"),
        ({"REDIS_URL": None, "CELERY_BROKER_URL": "filesystem://"}, "filesystem broker"),
        ({"IDP_ISSUER": None}, "IDP_ISSUER"),
        ({"IDP_ISSUER": "http://id.example.com"}, "https"),
        ({"IDP_ALLOWED_HOSTS": None}, "IDP_ALLOWED_HOSTS"),
        ({"IDP_DEBUG": "1"}, "IDP_DEBUG"),
        ({"IDP_DEBUG": "maybe"}, "IDP_DEBUG"),
        ({"IDP_ACCESS_TOKEN_SECONDS": "ten"}, "IDP_ACCESS_TOKEN_SECONDS"),
        ({"IDP_ENV": "staging"}, "IDP_ENV"),
        ({"IDP_JWKS_MAX_AGE_SECONDS": "86400"}, "IDP_JWKS_MAX_AGE_SECONDS must be shorter"),
        ({"IDP_SIGNING_KEY_PREPUBLISH_SECONDS": "60"}, "IDP_JWKS_MAX_AGE_SECONDS must be shorter"),
        ({"IDP_SIGNING_KEY_ROTATION_SECONDS": "3600"}, "IDP_SIGNING_KEY_PREPUBLISH_SECONDS must be shorter"),
        ({"IDP_SIGNING_ALGORITHMS": "ES256"}, "IDP_SIGNING_ALGORITHMS"),
        ({"IDP_SIGNING_ALGORITHMS": "RS256,HS256"}, "IDP_SIGNING_ALGORITHMS"),
    ],
)
def test_production_refuses_to_start_with_a_clear_message(overrides, named):
    result = manage("check", env=production_env(**overrides))
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured:"), result.stderr[-500:]
    assert named in last_line
    assert "Traceback" not in result.stdout


WEAK_SECRETS = [
    ({"IDP_SECRET_KEY": "x"}, "IDP_SECRET_KEY"),
    ({"IDP_SECRET_KEY": "a" * 80}, "IDP_SECRET_KEY"),
    ({"IDP_SECRET_KEY": "abcdefghij" * 3}, "IDP_SECRET_KEY"),
    ({"IDP_CLIENT_SECRET_PEPPER": "p"}, "IDP_CLIENT_SECRET_PEPPER"),
    ({"IDP_API_KEY_PEPPER": "k"}, "IDP_API_KEY_PEPPER"),
    ({"IDP_API_KEY_PEPPER": "0123456789" * 2}, "IDP_API_KEY_PEPPER"),
    ({"IDP_KEY_ENCRYPTION_KEYS": base64.urlsafe_b64encode(bytes(32)).decode()}, "IDP_KEY_ENCRYPTION_KEYS"),
    ({"IDP_METRICS_TOKEN": "a" * 40}, "IDP_METRICS_TOKEN"),
    ({"IDP_ALLOWED_HOSTS": "*"}, "IDP_ALLOWED_HOSTS"),
    ({"IDP_ALLOWED_HOSTS": "id.example.com,*"}, "IDP_ALLOWED_HOSTS"),
]


@pytest.mark.parametrize(("overrides", "named"), WEAK_SECRETS)
def test_production_refuses_weak_secrets_and_wildcard_hosts(overrides, named):
    result = manage("check", env=production_env(**overrides))
    assert result.returncode != 0, result.stdout
    assert named in result.stderr, result.stderr[-800:]
    for value in overrides.values():
        if len(value) > 3:
            assert value not in result.stderr + result.stdout, "a refusal never prints the secret"


@pytest.mark.parametrize(("overrides", "named"), WEAK_SECRETS)
def test_check_deploy_reports_them_in_development_too(overrides, named):
    env = production_env(IDP_ENV="development", **overrides)
    result = manage("check", "--deploy", env=env)
    assert result.returncode != 0, result.stdout
    assert named in result.stderr


def test_an_unconfigured_deployment_gets_production_settings():
    """No IDP_ENV at all means production: forgetting a variable never weakens the settings."""
    result = manage("check", env=production_env(IDP_ENV=None, IDP_ISSUER=None))
    assert result.returncode != 0
    assert "IDP_ENV=production needs" in result.stderr


def test_development_runs_on_embedded_defaults():
    env = production_env(
        IDP_ENV="development", IDP_ISSUER=None, IDP_ALLOWED_HOSTS=None, DATABASE_URL=None, REDIS_URL=None
    )
    script = (
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.DEBUG, s.SECURE_SSL_REDIRECT)"
    )
    assert printed(script, env) == ["django.db.backends.sqlite3", "filesystem://", "False", "False"]


def test_env_example_lists_every_variable_the_settings_read():
    source = (BASE_DIR / "idp" / "settings.py").read_text()
    read = set(re.findall(r'env_\w+\("([A-Z_]+)"', source))
    # Two are read outside the env_* helpers: the database URL parser and the .env switch.
    read |= {name for name in ("DATABASE_URL", "IDP_ENV_FILE") if f'"{name}"' in source}
    listed = set(re.findall(r"^([A-Z_]+)=", (BASE_DIR / ".env.example").read_text(), re.MULTILINE))
    assert "IDP_SECRET_KEY" in read and "DATABASE_URL" in read
    assert read - listed == set(), "documented in .env.example"
    assert listed - read == set(), "nothing documented that is not read"


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"DATABASE_URL": None}, "idp.E011"),
        ({"REDIS_URL": None}, "idp.E012"),
        ({"IDP_ISSUER": "http://id.example.com"}, "idp.E014"),
        ({"IDP_DEBUG": "1"}, "idp.E010"),
    ],
)
def test_check_deploy_reports_what_production_needs_in_development(overrides, named):
    """The production refusals are system checks: `check --deploy` says what a deployment still
    needs before IDP_ENV=production is set, while development itself runs on the embedded defaults."""
    env = production_env(IDP_ENV="development", **overrides)
    assert manage("check", env=env).returncode == 0
    result = manage("check", "--deploy", env=env)
    assert result.returncode != 0, result.stdout
    assert named in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"IDP_JWKS_MAX_AGE_SECONDS": "86400"}, "idp.E017"),
        ({"IDP_SIGNING_ALGORITHMS": "RS256,HS256"}, "idp.E016"),
    ],
)
def test_the_signing_schedule_is_an_invariant_in_development_too(overrides, named):
    result = manage("check", env=production_env(IDP_ENV="development", **overrides))
    assert result.returncode != 0
    assert named in result.stderr.strip().splitlines()[-1]
