"""The gateway's prompted tool calls: requests become a JSON Schema, answers become tool calls."""

from __future__ import annotations

import json

from amosflow.ai import to_prompted_request, to_tool_call_response

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "notes_echo",
            "description": "Echo text back",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
        },
    }
]


def test_a_required_tool_becomes_a_schema_with_no_way_to_answer_in_text() -> None:
    """With `tool_choice: required` the only schema options are tool calls."""
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": TOOLS,
        "tool_choice": "required",
    }
    sent = to_prompted_request(body)
    assert "tools" not in sent
    assert "tool_choice" not in sent
    options = sent["response_format"]["json_schema"]["schema"]["anyOf"]
    assert [o["properties"]["tool"]["const"] for o in options] == ["notes_echo"]
    assert sent["messages"][0]["role"] == "system"
    assert "notes_echo" in sent["messages"][0]["content"]


def test_earlier_calls_and_results_become_plain_alternating_messages() -> None:
    """A tool call and its result reach a template that knows no tool roles as text."""
    call = {"id": "c1", "type": "function", "function": {"name": "notes_echo", "arguments": "{}"}}
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "hi"},
            {"role": "user", "content": "again"},
        ],
        "tools": TOOLS,
    }
    roles = [m["role"] for m in to_prompted_request(body)["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


def test_a_json_call_comes_back_as_a_standard_tool_call() -> None:
    """The model's constrained JSON answer is a `tool_calls` message; an answer is text."""
    reply = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": json.dumps({"tool": "notes_echo", "arguments": {"text": "hi"}}),
                },
                "finish_reason": "stop",
            }
        ]
    }
    out = json.loads(to_tool_call_response(json.dumps(reply).encode(), 1))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    function = choice["message"]["tool_calls"][0]["function"]
    assert (function["name"], json.loads(function["arguments"])) == ("notes_echo", {"text": "hi"})
    answer = {"choices": [{"message": {"role": "assistant", "content": '{"answer": "done"}'}}]}
    out = json.loads(to_tool_call_response(json.dumps(answer).encode(), 2))
    assert out["choices"][0]["message"]["content"] == "done"
