"""Typed settings, one class per area, and the secrets the host's environment binds."""

from amosflow.config._audit import AuditSettings
from amosflow.config._identity import IdentitySettings
from amosflow.config._mcp import McpSettings
from amosflow.config._oidc import SIGNING_ALGORITHMS, OidcSettings, check_idp_url
from amosflow.config._runner import RunnerSettings
from amosflow.config._secret_env import env_secret, env_secret_bound, env_secret_name
from amosflow.config._settings import (
    ApiSettings,
    BusSettings,
    CatalogSettings,
    EngineSettings,
    FileSettings,
    NodeSettings,
    NotifySettings,
    SmtpConnection,
    SmtpSettings,
    SqlSettings,
    StoreSettings,
    TaskSettings,
)
from amosflow.config._vault import VaultSettings

__all__ = [
    "SIGNING_ALGORITHMS",
    "ApiSettings",
    "AuditSettings",
    "BusSettings",
    "CatalogSettings",
    "EngineSettings",
    "FileSettings",
    "IdentitySettings",
    "McpSettings",
    "NodeSettings",
    "NotifySettings",
    "OidcSettings",
    "RunnerSettings",
    "SmtpConnection",
    "SmtpSettings",
    "SqlSettings",
    "StoreSettings",
    "TaskSettings",
    "VaultSettings",
    "check_idp_url",
    "env_secret",
    "env_secret_bound",
    "env_secret_name",
]
