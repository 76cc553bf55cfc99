"""`core.*` actions: echo and sleep, for tests, examples and timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

from amosflow.dsl import parse_duration
from amosflow.engine.activities._base import ActionContext, implementation


@implementation("core.echo")
async def echo(_ctx: ActionContext, params: Any) -> Any:
    """Return ``with.value`` unchanged."""
    return params.value


@implementation("core.sleep")
async def sleep(_ctx: ActionContext, params: Any) -> dict[str, Any]:
    """Sleep for ``with.duration``; the wrapper heartbeats meanwhile."""
    seconds = parse_duration(params.duration).total_seconds()
    await asyncio.sleep(seconds)
    return {"slept_ms": int(seconds * 1000)}
