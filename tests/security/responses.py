"""What no error response may carry: a stack trace, a SQL fragment, a settings value or a library
name or version. The hostile-input table and the schemathesis run pass every error response they
get through `leaks`, and record it in COLLECTED for tests/security/test_no_leaks.py."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.conf import settings

# Case-sensitive: " FROM " and "SELECT " as SQL writes them, not the English words.
FORBIDDEN = (
    "Traceback",
    'File "',
    "psycopg",
    "django.db",
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    " FROM ",
    "Django/",
    "Python/",
    "gunicorn/",
    "WSGIServer",
    "IntegrityError",
    "DataError",
    "OperationalError",
    "DoesNotExist",
    "MultipleObjectsReturned",
    "oauthlib",
    "jwcrypto",
    "rest_framework",
    "Exception Value",
)
# A version number after a product name in the Server header: "gunicorn/23.0", "Python/3.11".
VERSIONED = re.compile(r"[A-Za-z]+/\d")


def secret_values() -> list[str]:
    """Settings values that must never reach a client."""
    values = [settings.SECRET_KEY, settings.CLIENT_SECRET_PEPPER, settings.API_KEY_PEPPER]
    values += [str(key) for key in settings.KEY_ENCRYPTION_KEYS]
    database = settings.DATABASES["default"]
    values += [str(database.get(name) or "") for name in ("PASSWORD",)]
    return [value for value in values if len(value) >= 8]


@dataclass(frozen=True)
class Seen:
    label: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str


COLLECTED: list[Seen] = []


def leaks(*, status: int, headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes | str) -> list[str]:
    """What in one response gives away internals (empty when nothing does)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    everything = text + "\n" + "\n".join(f"{name}: {value}" for name, value in pairs)
    found = [f"contains {needle!r}" for needle in FORBIDDEN if needle in everything]
    found += ["contains a secret settings value" for value in secret_values() if value in everything]
    for name, value in pairs:
        if name.lower() in ("server", "x-powered-by") and VERSIONED.search(value):
            found.append(f"{name} header carries a version: {value}")
    return found


def check(label: str, *, status: int, headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes) -> list[str]:
    """Record an error response for the leak test and return its leaks, labelled."""
    if status < 400:
        return []
    pairs = tuple(headers.items()) if isinstance(headers, Mapping) else tuple(headers)
    # schemathesis' responses hold each header's values as a list.
    pairs = tuple((name, ", ".join(value) if isinstance(value, list) else value) for name, value in pairs)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    COLLECTED.append(Seen(label, status, pairs, text))
    return [f"{label}: {problem}" for problem in leaks(status=status, headers=pairs, body=text)]
