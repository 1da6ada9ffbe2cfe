"""Django system checks of the settings that a deployment gets wrong and nothing else notices:
secrets too short or too uniform to be secret, and a wildcard host. `manage.py check --deploy`
reports them in any environment; with IDP_ENV=production the process refuses to start on them
(idp.apps), so a web server, a worker and a migration alike stop with the variable named.

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
