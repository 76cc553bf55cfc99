"""Small flow documents built in code for the engine tests."""

from __future__ import annotations

from typing import Any


def flow(*steps: dict[str, Any], name: str = "t", **extra: Any) -> dict[str, Any]:
    """A v1 document with the given steps."""
    return {"dsl": "amos.flow/v1", "name": name, "steps": list(steps), **extra}


def echo(step_id: str, value: Any, **extra: Any) -> dict[str, Any]:
    """A core.echo action step."""
    return {
        "id": step_id,
        "type": "action",
        "action": "core.echo",
        "with": {"value": value},
        **extra,
    }


def http(step_id: str, url: str, **with_: Any) -> dict[str, Any]:
    """An http.request action step with a fast retry policy."""
    return {
        "id": step_id,
        "type": "action",
        "action": "http.request",
        "with": {"url": url, **with_},
        "retry": {"max_attempts": 3, "backoff": "50ms"},
    }
