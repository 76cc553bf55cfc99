"""Identity fixtures: the store tests' SQLite and PostgreSQL stores, and a per-test home."""

from __future__ import annotations

from pathlib import Path

import pytest

from amosflow.identity import IdentitySettings
from tests.store.conftest import pg_store, store, store_url  # noqa: F401


@pytest.fixture
def settings(tmp_path: Path) -> IdentitySettings:
    """Identity settings of a fresh install home, with a lockout after three failures."""
    return IdentitySettings(
        home=tmp_path / "home",
        session_ttl_seconds=900,
        lockout_threshold=3,
        lockout_seconds=900,
        login_rate_per_minute=10,
        api_token_max_days=365,
        min_password_length=12,
    )
