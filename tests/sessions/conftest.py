from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sessions.receiver import Receiver, receiver_running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiver_running() as running:
        yield running
