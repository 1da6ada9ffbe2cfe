"""Hostile input: where its tests live, and what they share.

Every endpoint has a parametrized hostile-input test (STYLE §8). Each lives beside the area it
attacks, and ``WHERE`` below names them all; tests/test_hostile_index.py fails when a test whose
name says "hostile" sits in a module missing from it. Start with the four tables:

- tests/e2e/test_hostile_inputs.py: each parameter of each OAuth and OpenID endpoint crossed with
  ``VALUES``, over the live server; malformed requests; wrong methods.
- tests/security/test_hostile_everywhere.py: every OAuth and /api/v1 endpoint crossed with every way
  a whole request can be hostile (bytes, unicode, content types, duplicates, huge headers); the
  database checksum must not move.
- tests/api/test_hostile_inputs.py: each field of each management-API write crossed with wrong
  types, sizes, control characters and injection strings; bodies that are not a JSON object.
- tests/apikeys/test_hostile_inputs.py: API-key values in X-API-Key, Authorization and at
  introspection; raw header bytes over a real socket.

What they share: ``VALUES`` (one hostile value of each kind), and ``refusal_problems``, the check
that a refusal is a 4xx in the RFC 6749 §5.2 shape showing no internals. What no error answer may
carry at all is tests/security/responses.py's.
"""

from __future__ import annotations

import re
from typing import Any

# One value of each kind that has broken a parser somewhere.
VALUES = {
    "nul": "abc\x00def",
    "10kb": "A" * 10_240,
    "sql": "' OR '1'='1'; DROP TABLE idp_accesstoken; --",
    "html": '"><script>alert(1)</script>',
    "crlf": "value\r\nSet-Cookie: injected=1",
    "traversal": "../../../../etc/passwd",
    "template": "{{7*7}}${7*7}{% debug %}",
    "unicode": "\u202e\ufeff\U0001f4a9\udc80".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "json": '{"$gt": ""}',
    "empty": "",
}

RFC_ERROR = re.compile(r"^[a-z_]+$")
RFC_DESCRIPTION = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]*$")  # RFC 6749 §5.2: no " or \
INTERNALS = ("Traceback", "django.", "psycopg")

# Every module holding hostile-input tests, and what each attacks.
WHERE = {
    "tests/mfa/test_signin_second_factor.py": "second-step codes (TOTP, recovery codes) and acr requests",
    "tests/mfa/test_security_page.py": "the security page's forms: names, codes, device ids, sizes",
    "tests/mfa/test_mfa_admin_and_api.py": "the second-factor reset in the management API",
    "tests/mfa/test_passkeys_hostile.py": "passkeys: replayed, foreign-user, foreign-origin assertions; bad JSON",
    "tests/security/test_issue20_attacks.py": "account and upstream pages: hostile path segments",
    "tests/federation/test_federation_hostile.py": "brokered sign-in: forged, replayed callbacks; bad ID tokens",
    "tests/federation/test_upstream_admin.py": "upstream providers in Django admin: fields and role mappings",
    "tests/e2e/test_hostile_inputs.py": "OAuth and OpenID endpoints, parameter by parameter, over the live server",
    "tests/security/test_hostile_everywhere.py": "every OAuth and /api/v1 endpoint, the whole request",
    "tests/security/test_no_leaks.py": "no error answer of those sweeps or of schemathesis shows internals",
    "tests/security/test_schemathesis.py": "the /api/v1 schema, fuzzed",
    "tests/security/test_header_limits.py": "oversized request lines and headers at gunicorn",
    "tests/security/test_rate_limits.py": "malformed client credentials at the rate limits",
    "tests/api/test_hostile_inputs.py": "management-API writes, field by field; raw bodies; malformed paths",
    "tests/api/test_users_and_lists.py": "list query parameters of the management API",
    "tests/apikeys/test_hostile_inputs.py": "API-key values in headers and at introspection",
    "tests/apikeys/test_dashboard.py": "the API-key dashboard's forms, key ids and page numbers",
    "tests/sessions/test_sessions.py": "user agents with NUL bytes, 5 kB, markup: kept truncated, shown escaped",
    "tests/sessions/test_backchannel.py": "logout URIs (private, fragments, sizes), redirects, hangs, rebinding",
    "tests/sessions/test_staff.py": "session ids and bodies at the management API's session endpoints",
    "tests/sessions/test_pages_and_discovery.py": "the sessions page: foreign, odd and NUL session ids, CSRF, methods",
    "tests/accounts/test_self_service_hostile.py": "self-service forms and links: reset, change, e-mail, registration",
    "tests/idp/test_signing_key_dashboard.py": "the signing-key page's algorithm segments",
    "tests/idp/test_activity.py": "the activity page's query strings",
    "tests/audit/test_api.py": "the audit API's query strings",
    "tests/audit/test_admin.py": "the audit admin's searches and filters",
    "tests/ops/test_logs.py": "one well-formed log line for each hostile request",
}


def refusal_problems(label: str, reply: Any, *, presented: str | None = None) -> list[str]:
    """What is wrong with a refusal (a requests or a Django test-client response): not a 4xx, no
    JSON body, not the RFC 6749 §5.2 shape (``error``, optionally ``error_description``, nothing
    else), a description outside the RFC's characters, internals shown, or (given ``presented``)
    the presented value echoed back."""
    text = reply.content.decode("utf-8", "replace")
    if not 400 <= reply.status_code < 500:
        return [f"{label}: {reply.status_code} {text[:200]}"]
    try:
        body = reply.json()
    except ValueError:
        return [f"{label}: {reply.status_code} without a JSON body: {text[:200]}"]
    found = []
    if (
        not isinstance(body, dict)
        or set(body) - {"error", "error_description"}
        or not isinstance(body.get("error"), str)
    ):
        found.append(f"{label}: not the RFC 6749 error shape: {body}")
    elif not RFC_DESCRIPTION.match(body.get("error_description", "")):
        found.append(f"{label}: error_description outside the RFC character set: {body}")
    if any(internal in text for internal in INTERNALS):
        found.append(f"{label}: leaks internals: {text[:200]}")
    if presented is not None and len(presented.strip()) > 5 and presented.strip() in text:
        found.append(f"{label}: echoes the presented value")
    return found
