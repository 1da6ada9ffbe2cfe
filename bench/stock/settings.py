"""Settings of the stock provider `make bench` compares the idp with (bench/run.py, StockBench).

Django's `startproject` settings and DOT's defaults; each departure is listed with its reason:
- `SCOPES`: DOT's two defaults, plus `profile` (the idp row's client_credentials request asks for
  it, and the stock row sends the same body) and `introspection` (DOT's resource-server docs add
  it). The stock resource server introspects with its client id and secret (HTTP Basic, DOT's
  `RESOURCE_SERVER_INTROSPECTION_CREDENTIALS` route), as the idp row's resource server does.
- Plain client secrets: not a setting but `hash_client_secret=False` on each seeded client
  (bench/stock/seed.py). DOT's default hashes them with Django's password hasher (PBKDF2, a
  million iterations in Django 5.2: slow by design, on every client authentication); the idp
  stores an HMAC-SHA256 (idp/keys/hashers.py). With hashed secrets the stock rows would measure
  PBKDF2, not the provider.
- `CONN_MAX_AGE` 60 and health checks, as the idp runs in the benchmark (`IDP_DB_CONN_MAX_AGE=60`):
  Django's default (0) opens a PostgreSQL connection per request, which would measure that instead.
- No `admin` or `staticfiles` app (and no admin urls): nothing measured uses them, and neither adds
  middleware or work to a request.
- `django.request` errors to stderr (the server's log): Django's default sends them nowhere unless
  DEBUG is on, and a failed check request should come with its traceback. Nothing on success.

Environment (bench/run.py sets it; a missing variable stops startup with its name):
    BENCH_STOCK_SECRET_KEY     a throwaway key, generated for each run
    BENCH_STOCK_ALLOWED_HOSTS  comma-separated
    DATABASE_URL               postgres://user[:password]@host[:port]/name
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"the stock provider needs the environment variable {name}")
    return value


SECRET_KEY = _required("BENCH_STOCK_SECRET_KEY")
DEBUG = False
ALLOWED_HOSTS = [host.strip() for host in _required("BENCH_STOCK_ALLOWED_HOSTS").split(",") if host.strip()]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "oauth2_provider",
]

# Django's default (`startproject`) middleware.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bench.stock.urls"
WSGI_APPLICATION = "bench.stock.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database = urlsplit(_required("DATABASE_URL"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _database.path.lstrip("/"),
        "USER": unquote(_database.username or ""),
        "PASSWORD": unquote(_database.password or ""),
        "HOST": _database.hostname or "",
        "PORT": str(_database.port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

OAUTH2_PROVIDER = {
    "SCOPES": {
        "read": "Reading scope",
        "write": "Writing scope",
        "profile": "Profile scope",
        "introspection": "Introspect token scope",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
