"""Fixtures every fault test shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.scenarios.test_runners import SideEffects


@pytest.fixture
def target() -> Iterator[SideEffects]:
    """The counting target server: it records every idempotency key a side effect carried."""
    service = SideEffects()
    try:
        yield service
    finally:
        service.stop()
