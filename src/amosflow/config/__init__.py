"""Typed settings, one class per area."""

from amosflow.config.settings import (
    ApiSettings,
    BusSettings,
    CatalogSettings,
    EngineSettings,
    FileSettings,
    NotifySettings,
    SmtpConnection,
    SmtpSettings,
    SqlSettings,
    StoreSettings,
    TaskSettings,
)

__all__ = [
    "ApiSettings",
    "BusSettings",
    "CatalogSettings",
    "EngineSettings",
    "FileSettings",
    "NotifySettings",
    "SmtpConnection",
    "SmtpSettings",
    "SqlSettings",
    "StoreSettings",
    "TaskSettings",
]
