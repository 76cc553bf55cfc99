"""Record the histories the replay test checks: run every example on a fresh embedded server.

Usage, from the repository root: ``.venv/bin/python -m tests.histories.record`` (see README.md).
Each example runs its main path (inputs in tests/scenarios/examples.py) against a fresh
loopback server, and its workflow history is written to ``tests/histories/<example>.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from temporalio.client import Client

from amosflow.config import EngineSettings
from amosflow.engine.embedded import EmbeddedTemporal
from tests.scenarios.examples import INPUTS, SECRET_ENV, run_example
from tests.support.history import history_text
from tests.support.httpserver import LoopbackServer

HERE = Path(__file__).resolve().parent
IDENTITY = "amos-recorder"  # instead of pid@hostname in every event
CANARY = "recorder-canary-secret"


async def record(address: str, home: Path, out: Path) -> list[Path]:
    """Run every example once and write its history to ``out``; return the files written."""
    client = await Client.connect(address, identity=IDENTITY)
    settings = EngineSettings(home=home, temporal_address=address, task_queue="amos-record")
    forbidden = [CANARY, str(home), str(Path.home()), str(HERE.parents[1]), os.uname().nodename]
    written: list[Path] = []
    for name in sorted(INPUTS):
        server = LoopbackServer().start()
        try:
            inputs = INPUTS[name](server.url)
            result, history = await run_example(
                client, settings, name, inputs, run_id=f"{name}-recorded"
            )
        finally:
            server.stop()
        if result["status"] != "completed":
            raise SystemExit(f"{name}: the run did not complete: {result}")
        text = history_text(history)
        leaks = [value for value in forbidden if value and value in text]
        if leaks:
            raise SystemExit(f"{name}: the history holds machine-specific values: {leaks}")
        target = out / f"{name}.json"
        target.write_text(_portable(history.to_json()) + "\n", encoding="utf-8")
        written.append(target)
    return written


def _portable(history_json: str) -> str:
    """Drop the worker build id (a hash of this process's loaded code): replay ignores it."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "workerVersion"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return json.dumps(strip(json.loads(history_json)), indent=2)


def main() -> None:
    """Start a throwaway Temporal server, record every example, stop the server."""
    os.environ[SECRET_ENV] = CANARY
    os.environ["AMOS_EGRESS_ALLOW"] = "127.0.0.1"  # the examples call loopback servers
    with (
        tempfile.TemporaryDirectory(prefix="amos-record-") as tmp,
        EmbeddedTemporal(Path(tmp) / "temporal") as server,
    ):
        written = asyncio.run(record(server.address, Path(tmp) / "home", HERE))
    for path in written:
        sys.stdout.write(f"wrote {path.relative_to(Path.cwd())} ({path.stat().st_size} bytes)\n")


if __name__ == "__main__":
    main()
