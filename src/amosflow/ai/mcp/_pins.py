"""Tool pins: the hash of what a server says a tool is, fixed at approval, checked on use.

A tool is what the model reads (its name, title, description, input and output schemas)
and what the gateway trusts (its annotations, e.g. read-only). A server that changes any of
them after approval — the rug pull — gets a different hash, so the tool is blocked until an
administrator approves it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amosflow.dsl import content_hash

if TYPE_CHECKING:
    from mcp import types


def tool_listing(tool: types.Tool) -> dict[str, Any]:
    """The canonical description of a tool that its pin covers."""
    annotations = (
        tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
        if tool.annotations
        else {}
    )
    return {
        "name": tool.name,
        "title": tool.title or "",
        "description": tool.description or "",
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema or {},
        "annotations": annotations,
    }


def tool_pin(tool: types.Tool) -> str:
    """``sha256:`` of the RFC 8785 canonical JSON of the tool's listing."""
    return content_hash(tool_listing(tool))


def read_only(tool: types.Tool) -> bool:
    """Whether the server declares the tool free of side effects (absent means it has some)."""
    return bool(tool.annotations and tool.annotations.read_only_hint is True)
