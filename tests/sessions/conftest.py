from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sessions.receiver import Receiver, receiver_running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiver_running() as running:
        yield running


@pytest.fixture(autouse=True)
def _fast_password_hashing(fast_password_hashing):
    """MD5 for users' passwords here (tests/conftest.py says why and when not)."""
