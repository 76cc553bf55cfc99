"""Helpers for users' own tests: run a flow document on a worker in this process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amosflow.dsl import parse_flow, validate_inputs
from amosflow.engine.client import RunRequest, connect, result_of, start_run
from amosflow.engine.codec import payload_codec
from amosflow.engine.worker import build_worker

if TYPE_CHECKING:
    from temporalio.client import Client

    from amosflow.config import EngineSettings


async def run_flow(
    settings: EngineSettings,
    document: dict[str, Any],
    inputs: dict[str, Any] | None = None,
    *,
    library: dict[str, dict[str, Any]] | None = None,
    run_id: str = "",
    client: Client | None = None,
) -> dict[str, Any]:
    """Validate ``document`` and its inputs, run it to the end, and return the result object."""
    flow = parse_flow(document)
    checked = validate_inputs(flow, inputs or {})
    if client is None:
        if settings.temporal_address is None:
            raise ValueError("settings.temporal_address is required")
        client = await connect(
            settings.temporal_address,
            settings.temporal_namespace,
            codec=payload_codec(settings.home, create=True),
        )
    request = RunRequest(flow=document, inputs=checked, library=library or {}, run_id=run_id)
    async with build_worker(client, settings):
        handle = await start_run(client, request, task_queue=settings.task_queue, eager=True)
        return await result_of(handle)
