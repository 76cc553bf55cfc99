"""The governed MCP gateway: every tool call of a step passes its guards, is audited and receipted.

Before any server starts or is connected to, each one the step names must be approved as
it is defined now. Guards, in the order a call meets them: scope (the step's allowlist and
the server's own policy), approval (the server's definition and the tool's pin, re-hashed
on every listing: the rug-pull guard), outbound DLP (secrets in use, configured patterns)
and cross-server chains (a server whose results the step has seen may forbid its data
flowing to another).
A call that passes is audited with the hashes of its arguments and result and answered with
a receipt the gateway signs; a call that fails a guard never reaches the server and is
audited as denied, without the values.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from amosflow.ai._receipts import Receipt, sha256_of
from amosflow.ai.mcp._client import list_all_tools, open_session
from amosflow.ai.mcp._dlp import OutboundDlp
from amosflow.ai.mcp._pins import read_only, tool_pin
from amosflow.errors import McpError, ToolBlockedError

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from types import TracebackType

    from mcp import ClientSession, types

    from amosflow.ai._receipts import ReceiptSigner
    from amosflow.ai.mcp._definition import McpServer
    from amosflow.egress import EgressPolicy

Outcome = Literal["ok", "denied", "error"]


class AuditSink(Protocol):
    """Where the gateway writes its audit records (the hash-chained trail in production)."""

    def __call__(
        self,
        *,
        action: str,
        resource: str,
        folder: str,
        details: dict[str, Any],
        outcome: Outcome = "ok",
    ) -> None:
        """Append one record; raising fails the call that was being audited."""


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """A server definition and the folder it is filed in."""

    server: McpServer
    folder: str


@dataclass(frozen=True, slots=True)
class GatewayTool:
    """A tool a step may call, by its qualified name ``server.tool``."""

    qualified: str
    server: str
    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool


@dataclass(frozen=True, slots=True)
class ToolCallResult:
    """What a call returned, as JSON, and the receipt that vouches for it."""

    tool: str
    result: dict[str, Any]
    receipt: Receipt
    read_only: bool


def qualify(server: str, tool: str) -> str:
    """The qualified name of a tool: no tool of one server can shadow another's."""
    return f"{server}.{tool}"


def split_qualified(qualified: str) -> tuple[str, str]:
    """``server.tool`` → (server, tool); the server name has no dot, the tool name may."""
    server, dot, tool = qualified.partition(".")
    if not dot or not server or not tool:
        raise ToolBlockedError(
            f"tool {qualified!r} is not qualified as server.tool", tool=qualified, reason="scope"
        )
    return server, tool


def _result_json(result: types.CallToolResult) -> dict[str, Any]:
    content = [
        block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content
    ]
    shaped: dict[str, Any] = {"content": content, "is_error": bool(result.is_error)}
    if result.structured_content is not None:
        shaped["structured"] = result.structured_content
    return shaped


@dataclass
class _Open:
    entry: ServerEntry
    session: ClientSession
    tools: dict[str, types.Tool] = field(default_factory=dict)


class McpGateway:
    """The tools of one step attempt: open with ``async with``, list, then call.

    ``allowlist`` is the step's ``tools`` (qualified names); only servers it names are
    started. ``scope`` names the step attempt in every receipt, so a receipt cannot be
    replayed into another step.
    """

    def __init__(
        self,
        servers: Sequence[ServerEntry],
        *,
        allowlist: Collection[str],
        signer: ReceiptSigner,
        audit: AuditSink,
        scope: str,
        secrets_in_use: Sequence[str] = (),
        egress_policy: EgressPolicy | None = None,
    ) -> None:
        self._entries = {entry.server.name: entry for entry in servers}
        self._egress = egress_policy
        self._allowlist = frozenset(allowlist)
        self._signer = signer
        self._audit = audit
        self.scope = scope
        self._dlp = OutboundDlp(secrets_in_use)
        self._open: dict[str, _Open] = {}
        self._seen: list[str] = []
        self._stack = contextlib.AsyncExitStack()
        self.calls: list[ToolCallResult] = []

    async def __aenter__(self) -> Self:
        named = sorted({split_qualified(q)[0] for q in self._allowlist})
        # A server's command runs, or its URL is connected to, only once its definition is
        # approved as it stands: an edit cannot get a new program started on the worker.
        entries = [self._entries[name] for name in named if name in self._entries]
        for entry in entries:
            problem = self._definition_problem(entry.server)
            if problem is not None:
                raise self._deny(entry, entry.server.name, "unapproved", problem)
        await self._stack.__aenter__()
        try:
            for entry in entries:
                # A name without a definition stays unknown: its tools are out of scope.
                name = entry.server.name
                opening = open_session(entry.server, self._egress)
                session = await self._stack.enter_async_context(opening)
                self._open[name] = _Open(entry, session)
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        except McpError:
            if isinstance(exc, asyncio.CancelledError):
                raise  # a session broke and the SDK cancelled the step: say which, and why
        except Exception:  # noqa: S110 - teardown noise; the step's own error stands
            pass

    async def list_tools(self) -> list[GatewayTool]:
        """The approved, unchanged tools of the allowlist; each changed or new one is audited."""
        usable: list[GatewayTool] = []
        for name in sorted(self._open):
            opened = self._open[name]
            await self._refresh(opened)
            for tool_name in sorted(opened.tools):
                qualified = qualify(name, tool_name)
                if qualified not in self._allowlist or not self._permitted(opened, tool_name):
                    continue
                tool = opened.tools[tool_name]
                problem = self._approval_problem(opened.entry.server, tool)
                if problem is not None:
                    self._deny(opened.entry, qualified, "unapproved", problem)
                    continue
                usable.append(
                    GatewayTool(
                        qualified=qualified,
                        server=name,
                        name=tool_name,
                        description=tool.description or "",
                        input_schema=tool.input_schema,
                        read_only=read_only(tool),
                    )
                )
        return usable

    async def call(self, qualified: str, arguments: dict[str, Any]) -> ToolCallResult:
        """Call one tool through every guard; ToolBlockedError when one refuses it."""
        server, tool_name = split_qualified(qualified)
        opened = self._open.get(server)
        if qualified not in self._allowlist or opened is None:
            entry = opened.entry if opened else None
            raise self._deny(entry, qualified, "scope", "it is not in the step's tools")
        if not self._permitted(opened, tool_name):
            raise self._deny(opened.entry, qualified, "scope", "the server's policy excludes it")
        await self._refresh(opened)  # re-hash on every call: a rug pull is caught at once
        tool = opened.tools.get(tool_name)
        if tool is None:
            raise self._deny(opened.entry, qualified, "scope", "the server does not list it")
        problem = self._approval_problem(opened.entry.server, tool)
        if problem is not None:
            raise self._deny(opened.entry, qualified, "unapproved", problem)
        findings = self._dlp.scan(arguments, opened.entry.server.policy.dlp_patterns)
        if findings:
            where = ", ".join(str(f) for f in findings)
            raise self._deny(opened.entry, qualified, "dlp", f"its arguments carry {where}")
        for source in self._seen:
            source_policy = self._entries[source].server.policy
            if server in source_policy.forbid_flow_to:
                reason = f"data read from {source!r} may not flow to {server!r}"
                raise self._deny(opened.entry, qualified, "chain", reason)
        return await self._invoke(opened, qualified, tool, arguments)

    async def _invoke(
        self, opened: _Open, qualified: str, tool: types.Tool, arguments: dict[str, Any]
    ) -> ToolCallResult:
        entry = opened.entry
        details: dict[str, Any] = {"scope": self.scope, "arguments_sha256": sha256_of(arguments)}
        try:
            raw = await opened.session.call_tool(tool.name, arguments)
        except Exception as err:
            self._audit(
                action="mcp.call",
                resource=f"mcp-servers/{qualified}",
                folder=entry.folder,
                details={**details, "error": type(err).__name__},
                outcome="error",
            )
            raise McpError(f"calling {qualified} failed: {err}") from None
        result = _result_json(raw)
        if entry.server.name not in self._seen:
            self._seen.append(entry.server.name)
        receipt = self._signer.issue(qualified, self.scope, arguments, result)
        self._audit(
            action="mcp.call",
            resource=f"mcp-servers/{qualified}",
            folder=entry.folder,
            details={
                **details,
                "call_id": receipt.call_id,
                "result_sha256": receipt.result_sha256,
                "is_error": result["is_error"],
            },
            outcome="error" if result["is_error"] else "ok",
        )
        outcome = ToolCallResult(qualified, result, receipt, read_only(tool))
        self.calls.append(outcome)
        return outcome

    def tool_is_read_only(self, qualified: str) -> bool:
        """Whether a listed tool declares itself free of side effects (pinned at approval)."""
        server, tool_name = split_qualified(qualified)
        opened = self._open.get(server)
        tool = opened.tools.get(tool_name) if opened else None
        return tool is not None and read_only(tool)

    async def _refresh(self, opened: _Open) -> None:
        listed = await list_all_tools(opened.session, opened.entry.server.name)
        opened.tools = {tool.name: tool for tool in listed}

    @staticmethod
    def _permitted(opened: _Open, tool_name: str) -> bool:
        allowed = opened.entry.server.policy.tools
        return allowed is None or tool_name in allowed

    @staticmethod
    def _definition_problem(server: McpServer) -> str | None:
        """Why the server may not be started or reached as defined, or None when it may."""
        approval = server.approval
        if approval is None:
            return (
                f"MCP server {server.name!r} is not approved; an administrator must approve it"
                " before flows can start or reach it"
            )
        if approval.definition != server.definition_hash():
            return (
                f"MCP server {server.name!r} changed since its approval; an administrator must"
                " approve it again before flows can start or reach it"
            )
        return None

    @classmethod
    def _approval_problem(cls, server: McpServer, tool: types.Tool) -> str | None:
        problem = cls._definition_problem(server)
        if problem is not None:
            return problem
        assert server.approval is not None  # _definition_problem made sure
        pinned = server.approval.tools.get(tool.name)
        if pinned is None:
            return "the tool was not listed when the server was approved"
        if pinned != tool_pin(tool):
            return "the tool changed since the server was approved"
        return None

    def refuse(self, qualified: str, reason: str, why: str) -> ToolBlockedError:
        """Audit a call the harness refuses itself (e.g. no checkpoint) and return the error."""
        opened = self._open.get(split_qualified(qualified)[0])
        return self._deny(opened.entry if opened else None, qualified, reason, why)

    def _deny(
        self, entry: ServerEntry | None, qualified: str, reason: str, why: str
    ) -> ToolBlockedError:
        """Audit a refused call (no argument values) and return the error to raise."""
        self._audit(
            action="mcp.blocked",
            resource=f"mcp-servers/{qualified}",
            folder=entry.folder if entry else "default",
            details={"scope": self.scope, "reason": reason, "why": why},
            outcome="denied",
        )
        what = "tool" if "." in qualified else "server"
        return ToolBlockedError(
            f"{what} {qualified} blocked ({reason}): {why}", tool=qualified, reason=reason
        )
