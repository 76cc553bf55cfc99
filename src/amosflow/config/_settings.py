"""Settings read from the environment (``AMOS_*``), one class per area, every field described."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FILE_ROOT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def _default_home() -> Path:
    return Path.home() / ".amos"


class EngineSettings(BaseSettings):
    """Where state lives and which Temporal the engine talks to."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Data directory: embedded Temporal database, artifacts, logs.",
    )
    temporal_address: str | None = Field(
        default=None,
        description="host:port of an existing Temporal frontend; unset starts the embedded one.",
    )
    temporal_namespace: str = Field(default="default", description="Temporal namespace.")
    task_queue: str = Field(default="amos-flows", description="Task queue of the interpreter.")
    inline_limit: int = Field(
        default=64 * 1024,
        description="Values larger than this many bytes travel as artifact references.",
    )
    egress_allow: str = Field(
        default="",
        description=(
            "Comma-separated egress allow entries (host, *.suffix, IP, CIDR, optional :port)"
            " this worker adds to every run's egress policy (decision 0024)."
        ),
    )

    @property
    def artifacts_dir(self) -> Path:
        """Directory of the content-addressed artifact store."""
        return self.home / "artifacts"


class StoreSettings(BaseSettings):
    """The relational store of the control plane."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+psycopg://…); unset uses SQLite in the home.",
    )

    @property
    def url(self) -> str:
        """The URL actually used."""
        return self.database_url or f"sqlite:///{self.home / 'amos.db'}"


class CatalogSettings(BaseSettings):
    """The Git repository that holds flows, config bundles and triggers."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data directory.")
    catalog_path: Path | None = Field(
        default=None, description="Working copy of the catalog; unset uses <home>/catalog."
    )

    @property
    def path(self) -> Path:
        """The catalog directory actually used."""
        return self.catalog_path or self.home / "catalog"


class BusSettings(BaseSettings):
    """The NATS JetStream event bus."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data directory.")
    nats_url: str | None = Field(
        default=None, description="nats://host:port of an existing server; unset embeds one."
    )
    stream: str = Field(default="AMOS_EVENTS", description="JetStream stream of all events.")


class ApiSettings(BaseSettings):
    """The HTTP API of the control plane."""

    model_config = SettingsConfigDict(env_prefix="AMOS_API_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8686, description="Port the API listens on.")
    trusted_proxies: str = Field(
        default="",
        validation_alias=AliasChoices("AMOS_TRUSTED_PROXIES"),
        description=(
            "Comma-separated addresses or CIDR ranges of the reverse proxies whose"
            " X-Forwarded-For and X-Forwarded-Proto the API believes. Empty (the default):"
            " none, not even loopback; the client address is the TCP peer's, so sign-in"
            " rate limits cannot be dodged with a made-up header."
        ),
    )

    run_worker: bool = Field(
        default=False,
        description=(
            "Whether the API process also runs the flow worker, on the same event loop. The"
            " single node (`amos up`) turns it on, saving an interpreter; `amos up --split` and"
            " a scaled-out install run `amos worker` processes of their own instead."
        ),
    )

    def proxies(self) -> list[str]:
        """The trusted proxy entries, blanks dropped."""
        return [entry.strip() for entry in self.trusted_proxies.split(",") if entry.strip()]


class NodeSettings(BaseSettings):
    """Who the processes of `amos up` run as (decision 0049)."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    service_user: str = Field(
        default="amos",
        min_length=1,
        description=(
            "OS user the API, the flow worker and the local runner run as when `amos up` runs"
            " as root (a system user, created when missing). Root keeps only the supervisor,"
            " the audit checkpointer and the SIEM shipper, so the processes that write audit"
            " records cannot read the checkpoint key."
        ),
    )


class FileSettings(BaseSettings):
    """The directories the file actions may touch, each under a name (decision 0027)."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    file_roots: str = Field(
        default="",
        description=(
            "Named roots of the file actions: comma-separated name=/absolute/path entries"
            " (names match ^[a-z][a-z0-9_-]{0,62}$; a path may not contain a comma). Unset:"
            " every file action is refused."
        ),
    )

    def roots(self) -> dict[str, Path]:
        """Parse ``file_roots``; ValueError (naming the entry, never its path) if malformed."""
        roots: dict[str, Path] = {}
        for position, raw in enumerate(self.file_roots.split(","), start=1):
            entry = raw.strip()
            if not entry:
                continue
            name, sep, path = (part.strip() for part in entry.partition("="))
            if not sep or not FILE_ROOT_NAME.match(name):
                raise ValueError(
                    f"AMOS_FILE_ROOTS entry {position} is not name=/absolute/path with a name"
                    " matching ^[a-z][a-z0-9_-]{0,62}$"
                )
            if not path.startswith("/") or "\x00" in path:
                raise ValueError(f"AMOS_FILE_ROOTS root {name!r} is not an absolute path")
            if name in roots:
                raise ValueError(f"AMOS_FILE_ROOTS names root {name!r} twice")
            roots[name] = Path(path)
        return roots


class SqlSettings(BaseSettings):
    """The database connections ``sql.query`` may use, each under a name (decision 0027)."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    sql_connections: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "JSON object: connection name -> SQLAlchemy URL (postgresql+psycopg://…,"
            " sqlite:///…). Set by the operator of the worker or runner, never by a flow."
        ),
    )


class SmtpConnection(BaseModel):
    """One SMTP server ``email.send`` may use, and the sender address it sends as."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    host: str = Field(min_length=1, description="Host name or address of the SMTP server.")
    port: int = Field(default=25, ge=1, le=65535, description="TCP port.")
    starttls: bool = Field(default=False, description="Upgrade to TLS with STARTTLS first.")
    ssl: bool = Field(default=False, description="Implicit TLS from the start (SMTPS, 465).")
    username: str | None = Field(
        default=None,
        description="Log in as this user; the password comes from the step's with.password.",
    )
    from_: str = Field(alias="from", min_length=3, description="The sender address.")
    timeout: float = Field(default=30.0, gt=0, le=600, description="Socket timeout, seconds.")
    ca_file: Path | None = Field(
        default=None, description="PEM file of the CAs to trust instead of the system's."
    )

    @model_validator(mode="after")
    def _one_tls_mode(self) -> SmtpConnection:
        if self.starttls and self.ssl:
            raise ValueError("starttls and ssl are mutually exclusive")
        return self


class SmtpSettings(BaseSettings):
    """The SMTP connections ``email.send`` may use, each under a name (decision 0027)."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    smtp_connections: dict[str, SmtpConnection] = Field(
        default_factory=dict,
        description=(
            'JSON object: connection name -> {"host", "port", "starttls", "ssl", "username",'
            ' "from", "timeout", "ca_file"}. Set by the operator, never by a flow.'
        ),
    )


class TaskSettings(BaseSettings):
    """How human tasks are decided (decision 0032)."""

    model_config = SettingsConfigDict(env_prefix="AMOS_TASKS_", extra="ignore")

    four_eyes: bool = Field(
        default=True,
        description="The user who started a run may not decide its tasks (four-eyes).",
    )


class NotifySettings(BaseSettings):
    """Notifications of new and escalated human tasks; every channel is off by default."""

    model_config = SettingsConfigDict(
        env_prefix="AMOS_NOTIFY_", extra="ignore", populate_by_name=True
    )

    public_url: str = Field(
        default="http://127.0.0.1:8686",
        validation_alias="AMOS_PUBLIC_URL",
        description="The console's public base URL; notifications link to <url>/#/tasks/<id>.",
    )
    smtp_connection: str | None = Field(
        default=None,
        description="The AMOS_SMTP_CONNECTIONS entry to mail assignees through; unset: no mail.",
    )
    email_to: str = Field(
        default="",
        description="Comma-separated addresses told of every task, besides assignees' own.",
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming-webhook URL (a secret); unset: no Slack post."
    )
    teams_webhook_url: SecretStr | None = Field(
        default=None, description="Teams incoming-webhook URL (a secret); unset: no Teams post."
    )
