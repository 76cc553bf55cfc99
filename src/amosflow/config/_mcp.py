"""Settings of stdio MCP servers: which host paths their sandbox shows them (decision 0045)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from amosflow.config._settings import EngineSettings
from amosflow.errors import McpError


class McpSettings(BaseSettings):
    """Where stdio MCP servers run: every server's sandbox sees these paths, and no others."""

    model_config = SettingsConfigDict(env_prefix="AMOS_MCP_", extra="ignore")

    sandbox_read: str = Field(
        default="",
        description=(
            "Comma-separated absolute host paths every stdio MCP server sees read-only, at the"
            " same path (where server programs live, beyond /usr and the worker's Python)."
            " Never AMOS_HOME or a path inside or above it."
        ),
    )
    sandbox_write: str = Field(
        default="",
        description=(
            "Comma-separated absolute host paths every stdio MCP server may write, at the same"
            " path (data a server keeps). Never AMOS_HOME or a path inside or above it; a root"
            " worker's servers run as uid 65534, which must own them."
        ),
    )

    def read_paths(self) -> list[Path]:
        """The read-only paths, checked."""
        return _paths("AMOS_MCP_SANDBOX_READ", self.sandbox_read)

    def write_paths(self) -> list[Path]:
        """The writable paths, checked."""
        return _paths("AMOS_MCP_SANDBOX_WRITE", self.sandbox_write)


def _paths(setting: str, value: str) -> list[Path]:
    """Absolute, existing paths that neither hold nor lie inside AMOS_HOME."""
    home = EngineSettings().home.resolve()
    found: list[Path] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        path = Path(item)
        if not path.is_absolute() or not path.exists():
            raise McpError(f"{setting}: {item!r} is not an absolute path that exists")
        resolved = path.resolve()
        if resolved == home or resolved.is_relative_to(home) or home.is_relative_to(resolved):
            raise McpError(f"{setting}: {item!r} would show AMOS_HOME to MCP servers")
        found.append(resolved)
    return found
