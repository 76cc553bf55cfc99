"""Tool calls for models without native tool calling, through constrained JSON output.

Small local models (and servers whose chat template has no tool syntax) ignore `tools` and
`tool_choice`. Every OpenAI-compatible server we target does honour a `json_schema`
`response_format` with constrained decoding, so the gateway rewrites such a request: the tools
become one JSON Schema (`anyOf` a call per tool, plus a final answer unless a tool is required),
earlier tool calls and results become plain messages, and the model's JSON answer is turned back
into a standard `tool_calls` message. Callers (Pydantic AI, `llm.generate`) see the ordinary
OpenAI protocol either way; the audit records the request as it was actually sent.
"""

from __future__ import annotations

import json
from typing import Any

from amosflow.errors import AIConfigurationError

__all__ = ["to_prompted_request", "to_tool_call_response"]

_ANSWER = "answer"


def _tool_schemas(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    options: list[dict[str, Any]] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise AIConfigurationError("a tool must be {'type': 'function', 'function': {name …}}")
        parameters = function.get("parameters") or {"type": "object"}
        options.append(
            {
                "type": "object",
                "properties": {"tool": {"const": function["name"]}, "arguments": parameters},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
        )
    return options


def _instructions(tools: list[dict[str, Any]], *, required: bool) -> str:
    lines = ["You can call these tools. Reply with one JSON object and nothing else."]
    for tool in tools:
        function = tool["function"]
        lines.append(f"- {function['name']}: {function.get('description', '')}".rstrip())
    lines.append('To call a tool: {"tool": "<name>", "arguments": {...}}.')
    if not required:
        lines.append(f'To give the final answer: {{"{_ANSWER}": "<text>"}}.')
    return "\n".join(lines)


def _plain_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """Earlier tool calls and results as text the model's template can render."""
    plain: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            calls = [
                {
                    "tool": call.get("function", {}).get("name"),
                    "arguments": json.loads(call.get("function", {}).get("arguments") or "{}"),
                }
                for call in message["tool_calls"]
            ]
            text = json.dumps(calls[0] if len(calls) == 1 else calls, separators=(",", ":"))
            plain.append({"role": "assistant", "content": text})
        elif role == "tool":
            content = message.get("content")
            plain.append({"role": "user", "content": f"Tool result: {content}"})
        else:
            plain.append(message)
    # Some chat templates refuse two messages of one role in a row: merge them.
    merged: list[dict[str, Any]] = []
    for message in plain:
        if merged and merged[-1].get("role") == message.get("role") != "system":
            merged[-1] = {**merged[-1], "content": f"{merged[-1]['content']}\n{message['content']}"}
        else:
            merged.append(message)
    return merged


def to_prompted_request(body: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a chat request with `tools` into one constrained by a JSON Schema."""
    tools = body.get("tools") or []
    if not tools:
        return body
    required = body.get("tool_choice") == "required"
    options = _tool_schemas(tools)
    if not required:
        options.append(
            {
                "type": "object",
                "properties": {_ANSWER: {"type": "string"}},
                "required": [_ANSWER],
                "additionalProperties": False,
            }
        )
    rewritten = {k: v for k, v in body.items() if k not in {"tools", "tool_choice"}}
    rewritten.pop("parallel_tool_calls", None)
    system = {"role": "system", "content": _instructions(tools, required=required)}
    rewritten["messages"] = [system, *_plain_messages(list(body.get("messages") or []))]
    rewritten["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "tool_call", "schema": {"anyOf": options}},
    }
    return rewritten


def to_tool_call_response(content: bytes, call_number: int) -> bytes:
    """Turn the model's constrained JSON answer back into a standard completion."""
    data = json.loads(content)
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        return content
    for index, choice in enumerate(choices):
        message = choice.get("message") or {}
        try:
            answer = json.loads(message.get("content") or "")
        except ValueError:
            continue  # a cut-off answer stays text; the caller sees finish_reason "length"
        if isinstance(answer, dict) and isinstance(answer.get("tool"), str):
            call = {
                "id": f"call_{call_number}_{index}",
                "type": "function",
                "function": {
                    "name": answer["tool"],
                    "arguments": json.dumps(answer.get("arguments") or {}),
                },
            }
            choice["message"] = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice["finish_reason"] = "tool_calls"
        elif isinstance(answer, dict) and isinstance(answer.get(_ANSWER), str):
            choice["message"] = {"role": "assistant", "content": answer[_ANSWER]}
    return json.dumps(data).encode()
