"""Clients the end-to-end tests share."""

from __future__ import annotations

import pytest

from tests.factories import make_machine_client, make_resource_server


@pytest.fixture
def machine(db):
    """A confidential client_credentials client."""
    return make_machine_client()


@pytest.fixture
def resource_server(db):
    """A confidential client that only calls introspection, as an API gateway would."""
    return make_resource_server()


@pytest.fixture(autouse=True)
def _fast_password_hashing(fast_password_hashing):
    """MD5 for users' passwords here (tests/conftest.py says why and when not)."""
