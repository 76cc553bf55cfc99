"""The catalog: flows, config bundles and triggers versioned in Git, and Effective Config."""

from amosflow.catalog._catalog import Catalog, Entry, Version
from amosflow.catalog._config import (
    ConfigBundle,
    EffectiveConfig,
    deep_merge,
    effective_config,
    missing_requirements,
)
from amosflow.catalog._kinds import Validator, register_kind, registered_kinds

__all__ = [
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
]
