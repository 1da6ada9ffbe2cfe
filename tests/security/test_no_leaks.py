"""No error response gives away internals: a stack trace, a SQL fragment, a settings value, a
library's name or a version. One test drives both sweeps (the hostile-input table of every OAuth
and /api/v1 endpoint, and the schemathesis run of every /api/v1 operation) and greps every error
response they produce; the others show the grep finds what it looks for."""

# Fixtures imported from tests/api/conftest.py are parameters of the tests below.
# ruff: noqa: F811

from __future__ import annotations

import pytest
import schemathesis
from django.conf import settings as django_settings

from tests.api.conftest import (  # noqa: F401 - fixtures
    _fast_password_hashing,
    admin,
    management,
    service_subject,
)
from tests.security import responses
from tests.security.test_hostile_everywhere import CASES, ENDPOINTS, client_for, send, world  # noqa: F401 - fixture
from tests.security.test_schemathesis import run_operation


def test_no_error_response_of_the_sweeps_leaks_internals(live_server, settings, world):
    settings.IDP_RATE_LIMITS = dict.fromkeys(settings.IDP_RATE_LIMITS, "100000/minute")
    responses.COLLECTED.clear()
    for endpoint in ENDPOINTS:
        client = client_for(endpoint, world)
        for case in CASES:
            reply = send(endpoint, case, world, client)
            responses.check(
                f"{endpoint}/{case.name}", status=reply.status_code, headers=reply.headers, body=reply.content
            )
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema/?format=json", timeout=10)
    headers = {"Authorization": f"Bearer {world['admin_token']}"}
    for result in schema.get_all_operations():
        try:
            run_operation(result.ok(), base_url=live_server.url, headers=headers, seen=[])
        except Exception:  # noqa: BLE001, S110
            pass  # test_schemathesis reports these; every answer was collected before its checks ran

    found = []
    for seen in responses.COLLECTED:
        # The live server's own Server header is the test server's (WSGIServer), not ours.
        headers = [(name, value) for name, value in seen.headers if name.lower() != "server" or "WSGI" not in value]
        found += [
            f"{seen.label} ({seen.status}): {problem}"
            for problem in responses.leaks(status=seen.status, headers=headers, body=seen.body)
        ]
    statuses = {seen.status for seen in responses.COLLECTED}
    hostile = [seen for seen in responses.COLLECTED if not seen.label.startswith("schemathesis")]
    generated = [seen for seen in responses.COLLECTED if seen.label.startswith("schemathesis")]
    assert len(hostile) > 500 and len(generated) > 50, (len(hostile), len(generated))
    assert {400, 401, 404, 413} <= statuses, statuses
    assert not found, "\n".join(found[:50])


BODIES = {
    "a stack trace": 'Traceback (most recent call last):\n  File "/app/idp/api.py", line 1',
    "SQL": 'syntax error at or near "SELECT "',
    "an ORM error": "duplicate key: IntegrityError",
    "a lookup error": "User matching query DoesNotExist",
    "a library": "oauthlib.oauth2.rfc6749.errors.InvalidClientError",
    "a crypto library": "jwcrypto.common.JWException",
    "a driver": "psycopg.errors.UniqueViolation",
}


@pytest.mark.parametrize("what", BODIES)
def test_the_grep_finds_internals_in_a_body(what):
    assert responses.leaks(status=500, headers={}, body=BODIES[what])


@pytest.mark.parametrize("name", ["SECRET_KEY", "CLIENT_SECRET_PEPPER", "API_KEY_PEPPER"])
def test_the_grep_finds_a_settings_secret(name):
    body = f'{{"error": "server_error", "error_description": "{getattr(django_settings, name)}"}}'
    assert responses.leaks(status=500, headers={}, body=body) == ["contains a secret settings value"]


@pytest.mark.parametrize("server", ["gunicorn/23.0.0", "WSGIServer/0.2 CPython/3.11.7", "Django/5.2"])
def test_the_grep_finds_a_version_in_the_server_header(server):
    assert any("version" in problem for problem in responses.leaks(status=404, headers={"Server": server}, body=""))


def test_an_rfc_error_body_passes_the_grep():
    body = '{"error": "invalid_request", "error_description": "username: this field is required"}'
    assert (
        responses.leaks(status=400, headers={"Server": "gunicorn", "Content-Type": "application/json"}, body=body) == []
    )
