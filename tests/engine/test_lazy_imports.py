"""A process that serves the API and runs flows loads no heavy library until a step needs it."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("playwright", "pydantic_ai", "mcp", "onnxruntime", "llama_cpp", "prompt_toolkit")

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
    first step that uses them. The CEL library's own shell (prompt_toolkit) never loads.
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


_EVALUATE = """
import json, sys
from amosflow.dsl.expr import render
print(json.dumps([render("${1 + 2}", {}), "prompt_toolkit" in sys.modules]))
"""


def test_expressions_evaluate_without_the_cel_librarys_shell() -> None:
    """CEL evaluates with the real library while its REPL (prompt_toolkit) stays unloaded."""
    probe = subprocess.run(
        [sys.executable, "-c", _EVALUATE], capture_output=True, text=True, check=False, timeout=60
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == [3, False]
