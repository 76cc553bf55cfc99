"""The public surface of amosflow.catalog, which other packages code against."""

from __future__ import annotations

import amosflow.catalog

EXPECTED = {
    "Catalog",
    "ConfigBundle",
    "EffectiveConfig",
    "Entry",
    "Validator",
    "Version",
    "deep_merge",
    "effective_config",
    "missing_requirements",
    "register_kind",
    "registered_kinds",
}


def test_the_exports_are_pinned() -> None:
    """__all__ lists exactly the agreed names, and each of them exists."""
    assert set(amosflow.catalog.__all__) == EXPECTED
    assert all(hasattr(amosflow.catalog, name) for name in EXPECTED)


def test_flows_configs_and_triggers_share_one_registry() -> None:
    """The three built-in kinds are registered through register_kind."""
    assert {"flows", "configs", "triggers"} <= set(amosflow.catalog.registered_kinds())
