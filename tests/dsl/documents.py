"""Flow documents shared by the DSL tests; each call returns a fresh copy."""

from __future__ import annotations

from typing import Any

CHECK_EXAMPLE = "${output.status == 200 && size(output.json.items) > 0}"


def dsl_example() -> dict[str, Any]:
    """The document example at the top of DSL.md, with steps that make it complete."""
    return {
        "dsl": "amos.flow/v1",
        "name": "invoice-approval",
        "description": "Approve invoices above a limit, then post them to the ERP.",
        "inputs": {
            "type": "object",
            "properties": {"amount": {"type": "number"}},
            "required": ["amount"],
        },
        "outputs": {"posted": "${steps.post.output.status == 200}"},
        "requires": {"config": ["erp.url"], "secrets": ["erp.token"], "capabilities": ["http"]},
        "defaults": {
            "timeout": "30s",
            "retry": {"max_attempts": 3, "backoff": "2s", "max_backoff": "1m"},
        },
        "steps": [
            {
                "id": "approval",
                "type": "if",
                "condition": "${inputs.amount > 1000}",
                "then": [
                    {
                        "id": "approve",
                        "type": "human",
                        "task": "approval",
                        "title": "Approve an invoice of ${inputs.amount}",
                        "assignees": ["finance"],
                        "sla": "1d",
                        "on_timeout": "escalate",
                        "escalate_to": ["cfo"],
                    }
                ],
            },
            {
                "id": "post",
                "type": "action",
                "action": "http.request",
                "with": {
                    "method": "POST",
                    "url": "${config.erp.url}/invoices",
                    "headers": {"Authorization": "Bearer ${secrets.erp.token}"},
                    "json": {"amount": "${inputs.amount}"},
                    "expect": [200, 201],
                },
                "check": CHECK_EXAMPLE,
            },
        ],
    }


def every_step_type() -> dict[str, Any]:
    """A valid document that uses every step type, nested."""
    echo = {"type": "action", "action": "core.echo"}
    return {
        "dsl": "amos.flow/v1",
        "name": "every-step",
        "steps": [
            {"id": "start", **echo, "with": {"value": "${inputs}"}},
            {"id": "remember", "type": "set", "values": {"count": 0}},
            {
                "id": "branch",
                "type": "if",
                "condition": True,
                "then": [{"id": "then_one", **echo, "with": {"value": 1}}],
                "else": [{"id": "else_one", **echo, "with": {"value": 2}}],
            },
            {
                "id": "choose",
                "type": "switch",
                "value": "${vars.count}",
                "cases": [{"equals": 0, "steps": [{"id": "zero", **echo, "with": {"value": 0}}]}],
                "default": [{"id": "other", **echo, "with": {"value": "other"}}],
            },
            {
                "id": "each",
                "type": "foreach",
                "items": [1, 2, 3],
                "as": "number",
                "concurrency": 2,
                "steps": [{"id": "show", **echo, "with": {"value": "${number + index}"}}],
            },
            {
                "id": "poll",
                "type": "while",
                "condition": "${vars.count < 3}",
                "max_iterations": 10,
                "steps": [{"id": "bump", "type": "set", "values": {"count": "${vars.count + 1}"}}],
            },
            {
                "id": "fan",
                "type": "parallel",
                "fail_fast": False,
                "branches": [
                    [{"id": "left", **echo, "with": {"value": "l"}}],
                    [{"id": "right", "type": "wait", "duration": "10ms"}],
                ],
            },
            {
                "id": "guard",
                "type": "try",
                "steps": [{"id": "boom", "type": "fail", "message": "boom"}],
                "catch": [{"id": "caught", **echo, "with": {"value": "${error.message}"}}],
                "finally": [{"id": "cleanup", "type": "wait", "until": "2030-01-01T00:00:00Z"}],
            },
            {"id": "ask", "type": "human", "task": "form", "title": "Details", "form": {}},
            {"id": "child", "type": "call", "flow": "hello@3", "inputs": {"who": "x"}},
            {"id": "done", "type": "succeed", "when": "${steps.left.status == 'completed'}"},
        ],
    }


def single_step(step: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A minimal document around one step."""
    return {"dsl": "amos.flow/v1", "name": "one-step", **top, "steps": [step]}
