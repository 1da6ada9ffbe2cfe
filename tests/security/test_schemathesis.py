"""schemathesis against the /api/v1 OpenAPI schema, over HTTP to the live server with an idp-admin
token: for each operation a bounded, reproducible set of generated requests, and no answer may be
a 5xx, carry a status the schema does not list, or have a body that does not match the schema.
Every error answer also goes through the leak check (tests/security/responses.py).

schemathesis' pytest plugin (`from_fixture`) does not run under pytest 9, so the operations are
driven through its Python API: each operation's Hypothesis strategy, run by one test.
"""

# Fixtures imported from tests/api/conftest.py are parameters of the tests below.
# ruff: noqa: F811

from __future__ import annotations

import time

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.api.conftest import (  # noqa: F401 - fixtures
    _fast_password_hashing,
    admin,
    management,
    service_subject,
)
from tests.security import responses

EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def run_operation(operation, *, base_url: str, headers: dict[str, str], seen: list[int]) -> None:
    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, unshrunk
        suppress_health_check=list(HealthCheck),
    )
    def examples(case) -> None:
        seen.append(1)
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        label = f"schemathesis {case.method} {case.formatted_path}"
        # The live server's Server header is Django's test server's, not the application's or
        # production's (gunicorn's own is tests/security/test_no_leaks.py).
        sent = {name: value for name, value in response.headers.items() if name.lower() != "server"}
        leaks = responses.check(label, status=response.status_code, headers=sent, body=response.content)
        assert not leaks, leaks
        case.validate_response(response, checks=CHECKS, headers=headers)

    examples()


def test_api_answers_as_documented_and_never_fails(live_server, admin, settings):
    # A few hundred requests in a minute from one address: the limits are not under test here.
    settings.IDP_RATE_LIMITS = dict.fromkeys(settings.IDP_RATE_LIMITS, "100000/minute")
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema/?format=json", timeout=10)
    headers = {"Authorization": f"Bearer {admin.api().token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    failures, seen, started = [], [], time.monotonic()
    for operation in operations:
        try:
            run_operation(operation, base_url=live_server.url, headers=headers, seen=seen)
        except Exception as failure:  # noqa: BLE001 - every operation's failure, reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(failure)[:1500]}")
    print(f"schemathesis: {len(operations)} operations, {len(seen)} requests, {time.monotonic() - started:.0f}s")
    assert len(operations) >= 17, [f"{op.method} {op.path}" for op in operations]
    assert not failures, "\n\n".join(failures)
