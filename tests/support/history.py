"""Reading a workflow history the way a leak hunter would: every payload decoded."""

from __future__ import annotations

import base64
import json
from typing import Any

from temporalio.client import WorkflowHistory


def payloads(history: WorkflowHistory) -> list[Any]:
    """Every payload in the history, decoded (JSON values, or text when not JSON)."""
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, str) and "metadata" in node:
                text = base64.b64decode(data).decode("utf-8", errors="replace")
                try:
                    found.append(json.loads(text))
                except ValueError:
                    found.append(text)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history.to_json()))
    return found


def history_text(history: WorkflowHistory) -> str:
    """The history as JSON plus every payload decoded, so a search sees every value in it."""
    decoded = [json.dumps(p, ensure_ascii=False) for p in payloads(history)]
    return "\n".join([history.to_json(), *decoded])
