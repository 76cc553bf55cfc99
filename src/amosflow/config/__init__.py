"""Typed settings, one class per area."""

from amosflow.config.settings import (
    ApiSettings,
    BusSettings,
    CatalogSettings,
    EngineSettings,
    FileSettings,
    SmtpConnection,
    SmtpSettings,
    SqlSettings,
    StoreSettings,
)

__all__ = [
    "ApiSettings",
    "BusSettings",
    "CatalogSettings",
    "EngineSettings",
    "FileSettings",
    "SmtpConnection",
    "SmtpSettings",
    "SqlSettings",
    "StoreSettings",
]
