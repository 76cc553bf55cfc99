"""A process that serves the API and runs flows loads no heavy library until a step needs it."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("playwright", "pydantic_ai", "mcp", "onnxruntime", "llama_cpp")

_PROBE = """
import json, sys, tempfile, pathlib
import amosflow.api.app
from amosflow.engine.activities import ArtifactStore, build_activities
build_activities(
    ArtifactStore(pathlib.Path(tempfile.mkdtemp())), inline_limit=1000, resolve_secret=None
)
print(json.dumps(sorted(name for name in %r if name in sys.modules)))
"""


def test_the_api_and_the_worker_load_no_browser_agent_or_mcp_library_at_start() -> None:
    """Importing the API and building every activity leaves Playwright, Pydantic AI and MCP out.

    Each costs tens of MB in every process that loads it (decision 0058); they load with the
    first step that uses them.
    """
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE % (HEAVY,)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == []
