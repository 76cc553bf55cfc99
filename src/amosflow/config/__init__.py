"""Typed settings, one class per area."""

from amosflow.config.settings import (
    ApiSettings,
    BusSettings,
    CatalogSettings,
    EngineSettings,
    StoreSettings,
)

__all__ = ["ApiSettings", "BusSettings", "CatalogSettings", "EngineSettings", "StoreSettings"]
