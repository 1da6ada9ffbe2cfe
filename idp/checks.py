"""Django system checks of the settings. idp/settings.py only reads and parses the environment
(a value that does not parse stops it there, naming the variable); how the values must relate and
what a deployment needs are judged here:

- deploy checks (`manage.py check --deploy`, in any environment): what production needs (PostgreSQL,
  a shared Redis, a real broker, an https issuer, named hosts, no debug pages), secrets too short or
  too uniform to be secret, a wildcard host, our SecurityMiddleware;
- invariants (every `manage.py check`, runserver and migrate): the signing-key schedule.

With IDP_ENV=production the process refuses to start on any of them (idp.apps, `startup_refusals`),
so a web server, a worker and a migration alike stop with the variable named; in development the
invariants refuse start-up too, as they break the key schedule anywhere.

A check never prints the value it judges, only the variable's name and what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

# A secret's entropy as its own letters estimate it (Shannon): a generated secret of the length
# .env.example shows has well over this; "x", "a" * 80 or a word repeated has far less.
MIN_SECRET_BITS = 128
MIN_LENGTHS = {"IDP_SECRET_KEY": 50, "IDP_CLIENT_SECRET_PEPPER": 32, "IDP_API_KEY_PEPPER": 32, "IDP_METRICS_TOKEN": 32}
# A Fernet key is 32 random bytes: fewer distinct byte values than this is no random key.
MIN_DISTINCT_KEY_BYTES = 16


def estimated_bits(secret: str) -> float:
    """Shannon's estimate of the entropy of a string from its own letter frequencies, in bits."""
    if not secret:
        return 0.0
    counts = Counter(secret)
    per_letter = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return per_letter * len(secret)


def _weak(name: str, value: str, *, code: str) -> Error | None:
    needed = MIN_LENGTHS[name]
    if len(value) < needed or estimated_bits(value) < MIN_SECRET_BITS:
        return Error(
            f"{name} is too weak to be a secret: it needs at least {needed} characters and about "
            f"{MIN_SECRET_BITS} bits of randomness.",
            hint="Generate one: python -c 'import secrets; print(secrets.token_urlsafe(64))'",
            id=code,
        )
    return None


def _weak_fernet_keys(keys: Iterable[str]) -> Error | None:
    for key in keys:
        try:
            raw = base64.urlsafe_b64decode(key)
        except (ValueError, binascii.Error):
            continue  # settings refuse a key that is no Fernet key at all
        if len(set(raw[16:])) < MIN_DISTINCT_KEY_BYTES // 2 or len(set(raw)) < MIN_DISTINCT_KEY_BYTES:
            return Error(
                "IDP_KEY_ENCRYPTION_KEYS holds a key that is not random (too few distinct bytes).",
                hint="Generate one: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'",
                id="idp.E005",
            )
    return None


@register(Tags.security, deploy=True)
def secrets_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Secrets long and random enough to be secrets, and no wildcard among the allowed hosts."""
    found = [
        _weak("IDP_SECRET_KEY", settings.SECRET_KEY, code="idp.E001"),
        _weak("IDP_CLIENT_SECRET_PEPPER", settings.CLIENT_SECRET_PEPPER, code="idp.E002"),
        _weak("IDP_API_KEY_PEPPER", settings.API_KEY_PEPPER, code="idp.E003"),
        _weak("IDP_METRICS_TOKEN", settings.IDP_METRICS_TOKEN, code="idp.E004") if settings.IDP_METRICS_TOKEN else None,
        _weak_fernet_keys(settings.KEY_ENCRYPTION_KEYS),
    ]
    if any("*" in host for host in settings.ALLOWED_HOSTS):
        found.append(
            Error(
                "IDP_ALLOWED_HOSTS has a wildcard: any Host header would be served, and the issuer and every "
                "absolute URL could be made up by a client.",
                hint="Name the host names this provider answers to, e.g. IDP_ALLOWED_HOSTS=id.example.com",
                id="idp.E006",
            )
        )
    return [error for error in found if error is not None]


@register(Tags.security, deploy=True)
def production_needs_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """What a deployment cannot do without: shared state that every process agrees on, an issuer
    relying parties reach over TLS, named hosts and no debug pages."""
    needs = []
    if settings.DEBUG:
        needs.append(("IDP_DEBUG=0 (debug pages leak internals)", "idp.E010"))
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        needs.append(("DATABASE_URL (SQLite is for development only; use PostgreSQL)", "idp.E011"))
    if not settings.REDIS_URL:
        needs.append(("REDIS_URL (the in-process cache cannot be shared between processes)", "idp.E012"))
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        needs.append(("CELERY_BROKER_URL or REDIS_URL (the filesystem broker is for development only)", "idp.E013"))
    if not settings.ISSUER:
        needs.append(("IDP_ISSUER (the https URL clients use to reach this provider)", "idp.E014"))
    elif not settings.ISSUER.startswith("https://"):
        needs.append(("IDP_ISSUER with an https:// URL", "idp.E014"))
    if not settings.ALLOWED_HOSTS:
        needs.append(("IDP_ALLOWED_HOSTS (the host names this provider answers to)", "idp.E015"))
    return [Error(f"IDP_ENV=production needs {need}.", id=code) for need, code in needs]


SIGNING_ALGORITHMS = {"RS256", "ES256", "EdDSA"}


@register(Tags.security)
def signing_schedule_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """RS256 is every OpenID provider's baseline (OIDC Core §15.1) and signs JWT access tokens and
    audit checkpoints; a next key must be in every relying party's cached JWKS before it signs, and
    ready to sign by the next rotation."""
    found = []
    if "RS256" not in settings.SIGNING_ALGORITHMS or set(settings.SIGNING_ALGORITHMS) - SIGNING_ALGORITHMS:
        found.append(
            Error("IDP_SIGNING_ALGORITHMS must include RS256 and name only RS256, ES256 and EdDSA.", id="idp.E016")
        )
    if settings.JWKS_MAX_AGE_SECONDS >= settings.SIGNING_KEY_PREPUBLISH_SECONDS:
        found.append(
            Error(
                "IDP_JWKS_MAX_AGE_SECONDS must be shorter than IDP_SIGNING_KEY_PREPUBLISH_SECONDS: a relying party "
                "caching the JWKS that long could miss a key before it starts signing.",
                id="idp.E017",
            )
        )
    if settings.SIGNING_KEY_PREPUBLISH_SECONDS >= settings.SIGNING_KEY_ROTATION_SECONDS:
        found.append(
            Error(
                "IDP_SIGNING_KEY_PREPUBLISH_SECONDS must be shorter than IDP_SIGNING_KEY_ROTATION_SECONDS: the key "
                "published at one rotation must be ready to sign by the next.",
                id="idp.E018",
            )
        )
    return found


def startup_refusals() -> list[Error]:
    """The checks a process will not start with: every one in production, the invariants anywhere.
    Settings only: no database or network is touched, so it runs before anything else in ready()."""
    refused = signing_schedule_check()
    if settings.PRODUCTION:
        refused = production_needs_check() + secrets_check() + security_middleware_check() + refused
    return refused


@register(Tags.urls)
def endpoints_declared_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every protocol endpoint and management API view declares its policy (idp.http.policy): a new
    one without @endpoint would get a page's defaults (HTML errors, no rate limit, cacheable)."""
    from idp.http.policy import undeclared_views

    return [
        Error(
            f"{route} declares no endpoint policy.",
            hint="Decorate its view with idp.http.policy.endpoint(...): rate limit group, caching, CORS, error shape.",
            id="idp.E007",
        )
        for route in undeclared_views()
    ]


@register(Tags.security, deploy=True)
def security_middleware_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Django's security.W001 is silenced because it knows Django's SecurityMiddleware by path only:
    this is its check for ours (HSTS, nosniff, referrer policy, COOP, the HTTPS redirect)."""
    if "idp.http.middleware.SecurityMiddleware" in settings.MIDDLEWARE:
        return []
    return [
        Error(
            "idp.http.middleware.SecurityMiddleware is not in MIDDLEWARE: no HSTS, no HTTPS redirect.",
            id="idp.E008",
        )
    ]
