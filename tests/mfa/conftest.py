"""Fixtures shared by the second-factor tests."""

import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(fast_password_hashing):
    """MD5 for users' passwords here (tests/conftest.py says why and when not)."""
