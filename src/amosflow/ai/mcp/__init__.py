"""The governed MCP gateway: server definitions, approval pins, guarded and receipted tool calls.

Contract: a step reaches MCP tools only through ``McpGateway``, by qualified names
(``server.tool``) from its allowlist. A server is started or connected to only when its
current definition is approved; a stdio server runs in a fresh sandbox, an HTTP one is
reached through the egress policy (decisions 0045, 0046). Every call is checked (scope,
approval pins, outbound DLP, cross-server chains), audited, and answered with a receipt
signed by the gateway.
"""

from amosflow.ai.mcp._definition import KIND, Approval, McpServer, ServerPolicy, parse_server
from amosflow.ai.mcp._dlp import Finding, OutboundDlp
from amosflow.ai.mcp._gateway import (
    AuditSink,
    GatewayTool,
    McpGateway,
    ServerEntry,
    ToolCallResult,
    qualify,
    split_qualified,
)
from amosflow.ai.mcp._pins import read_only, tool_listing, tool_pin
from amosflow.ai.mcp._registry import (
    approve,
    delete,
    load_servers,
    pins_of,
    save,
    store_audit,
)

__all__ = [
    "KIND",
    "Approval",
    "AuditSink",
    "Finding",
    "GatewayTool",
    "McpGateway",
    "McpServer",
    "OutboundDlp",
    "ServerEntry",
    "ServerPolicy",
    "ToolCallResult",
    "approve",
    "delete",
    "load_servers",
    "parse_server",
    "pins_of",
    "qualify",
    "read_only",
    "save",
    "split_qualified",
    "store_audit",
    "tool_listing",
    "tool_pin",
]
