"""MCP server definitions: catalog objects of kind `mcp-servers`, versioned in Git.

A definition says how to reach a server (a stdio command or a streamable HTTP URL), what
its policy is (which tools flows may use, where its data may not flow, which patterns the
outbound DLP blocks) and, once an administrator approved it, the pins of that approval.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from amosflow.catalog import register_kind
from amosflow.dsl import content_hash
from amosflow.egress import AllowEntry, EgressPolicyError
from amosflow.errors import Diagnostic, ValidationFailedError

KIND = "mcp-servers"
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
TOOL_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
MAX_PATTERN_CHARS = 500


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerPolicy(_Frozen):
    """What flows may do with a server's tools, beyond what each step's allowlist says."""

    tools: list[str] | None = Field(
        default=None,
        description="Tool names (unqualified) flows may call; absent allows every approved tool.",
    )
    forbid_flow_to: list[str] = Field(
        default_factory=list,
        description="Servers that may not be called in a step after it saw a result of this one.",
    )
    dlp_patterns: list[str] = Field(
        default_factory=list,
        description="Regular expressions; a tool argument that matches one blocks the call.",
    )

    @field_validator("dlp_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if len(pattern) > MAX_PATTERN_CHARS:
                raise ValueError(f"a DLP pattern is longer than {MAX_PATTERN_CHARS} characters")
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"DLP pattern {pattern!r} does not compile: {err}") from None
        return patterns


class Approval(_Frozen):
    """An administrator's approval: the definition it covers and the pin of each tool."""

    definition: str = Field(description="sha256 of the definition (without this block).")
    tools: dict[str, str] = Field(description="Tool name → sha256 of its canonical listing.")
    approved_by: str
    approved_at: str


class McpServer(_Frozen):
    """One MCP server a folder may use, reached over stdio or streamable HTTP."""

    name: str = Field(pattern=NAME_PATTERN, description="Server name; qualifies its tools.")
    description: str | None = None
    transport: Literal["stdio", "http"]
    command: list[str] | None = Field(
        default=None, min_length=1, description="stdio: the program and its arguments."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="stdio: extra environment (no secrets: it is in Git)."
    )
    egress_allow: list[str] | None = Field(
        default=None,
        description=(
            "stdio: where the server may connect (egress allow entries: host, *.suffix, IP,"
            " CIDR, optional :port), through an HTTP proxy that also applies the run's egress"
            " policy; absent, the server has no network at all."
        ),
    )
    url: str | None = Field(default=None, description="http: the streamable HTTP endpoint.")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="Per request.")
    policy: ServerPolicy = Field(default_factory=ServerPolicy)
    approval: Approval | None = None

    @field_validator("egress_allow")
    @classmethod
    def _entries_parse(cls, entries: list[str] | None) -> list[str] | None:
        for entry in entries or []:
            try:
                AllowEntry.parse(entry)
            except EgressPolicyError as err:
                raise ValueError(str(err)) from None
        return entries

    @model_validator(mode="after")
    def _transport_fields(self) -> Self:
        if self.transport == "stdio" and (self.command is None or self.url is not None):
            raise ValueError("a stdio server needs 'command' and no 'url'")
        if self.transport == "http":
            if self.url is None or self.command is not None or self.env or self.egress_allow:
                raise ValueError(
                    "an http server needs 'url' and no 'command', 'env' or 'egress_allow'"
                )
            if not re.match(r"^https?://", self.url):
                raise ValueError("'url' must be an http:// or https:// URL")
        return self

    def definition_hash(self) -> str:
        """The hash an approval covers: every field but the approval itself, defaults filled.

        Any change of how the server is reached or of its policy voids the approval, so an
        edit cannot point an approved name at another program or loosen its policy unseen.
        """
        return content_hash(self.model_dump(mode="json", exclude={"approval"}, exclude_none=True))


def parse_server(document: Any) -> McpServer:
    """Validate a server document, reporting every problem with its JSON Pointer."""
    try:
        return McpServer.model_validate(document)
    except ValidationError as err:
        found = [
            Diagnostic("/" + "/".join(str(p) for p in e["loc"]), e["msg"])
            for e in err.errors(include_url=False)
        ]
        raise ValidationFailedError(found) from None


def _check_saved(name: str, document: dict[str, Any]) -> None:
    server = parse_server(document)
    if server.name != name:
        raise ValidationFailedError(
            [Diagnostic("/name", f"must be {name!r}, the name it is saved as")]
        )


register_kind(KIND, _check_saved)
