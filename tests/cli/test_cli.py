"""The `amos` command line as DSL.md's "Command line" section specifies it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from typer.testing import CliRunner

from amosflow.cli.main import app
from amosflow.engine.client import connect
from amosflow.engine.embedded import EmbeddedTemporal
from tests.scenarios.examples import EXAMPLES_DIR, example_paths

AMOS = str(Path(sys.executable).with_name("amos"))
POINTER_LINE = re.compile(r"^/\S*: \S.*$")
RESULT_KEYS = {"run_id", "status", "output", "error"}

temporal = pytest.mark.temporal


@pytest.fixture
def amos_env(temporal_server: EmbeddedTemporal, tmp_path: Path) -> dict[str, str]:
    """Environment for `amos run`: the session's Temporal, a fresh task queue and home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    env.update(
        AMOS_TEMPORAL_ADDRESS=temporal_server.address,
        AMOS_TASK_QUEUE=f"cli-{uuid.uuid4().hex[:12]}",
        AMOS_HOME=str(tmp_path / "amos-home"),
    )
    return env


def amos(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `amos` executable to its end."""
    return subprocess.run(
        [AMOS, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def run_status(address: str, run_id: str) -> WorkflowExecutionStatus | None:
    """The Temporal status of the run with this id, or None when no such run was started."""

    async def main() -> WorkflowExecutionStatus | None:
        client = await connect(address)
        try:
            return (await client.get_workflow_handle(run_id).describe()).status
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    return asyncio.run(main())


def write(path: Path, value: Any) -> Path:
    """Write ``value`` as JSON to ``path``."""
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


# -- amos validate / amos flow schema (in process) ------------------------------------------


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.stem)
def test_validate_prints_ok_for_each_example(path: Path) -> None:
    """`amos validate` prints `ok` and exits 0 for every example."""
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok\n"
    assert result.stderr == ""


def test_validate_prints_pointer_lines_for_an_invalid_flow(tmp_path: Path) -> None:
    """An invalid flow gives one `POINTER: message` line per error on stderr and exit 1."""
    bad = write(
        tmp_path / "bad.json",
        {
            "dsl": "amos.flow/v1",
            "name": "bad",
            "steps": [
                {"id": "a", "type": "set", "valuez": {}},
                {"id": "b", "type": "wait"},
            ],
        },
    )
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) >= 2
    assert all(POINTER_LINE.match(line) for line in lines), lines
    assert any(line.startswith("/steps/0/valuez: ") for line in lines)
    assert any(line.startswith("/steps/1: ") for line in lines)


def test_validate_reports_a_file_that_is_not_json(tmp_path: Path) -> None:
    """A file that is not JSON is an invalid flow too: exit 1 with a pointer line."""
    bad = tmp_path / "broken.json"
    bad.write_text('{"dsl": "amos.flow/v1", ', encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert all(POINTER_LINE.match(line) for line in result.stderr.splitlines()), result.stderr


def test_flow_schema_prints_a_2020_12_json_schema() -> None:
    """`amos flow schema` prints a 2020-12 JSON Schema that accepts every example."""
    result = CliRunner().invoke(app, ["flow", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for path in example_paths():
        errors = list(validator.iter_errors(json.loads(path.read_text(encoding="utf-8"))))
        assert errors == [], (path.name, errors[0].message if errors else "")
    assert list(validator.iter_errors({"dsl": "amos.flow/v1", "name": "x", "steps": []}))


# -- amos run (the installed executable, on the session's Temporal) --------------------------


@temporal
def test_run_json_prints_only_the_result_of_a_completed_run(
    amos_env: dict[str, str], temporal_server: EmbeddedTemporal
) -> None:
    """`amos run --json` prints just the result object and exits 0 when the run completes."""
    run_id = f"cli-hello-{uuid.uuid4().hex[:8]}"
    proc = amos(
        amos_env,
        "run",
        str(EXAMPLES_DIR / "hello.json"),
        "--input",
        '{"who": "Grace"}',
        "--json",
        "--run-id",
        run_id,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert set(result) == RESULT_KEYS
    assert result == {
        "run_id": run_id,
        "status": "completed",
        "output": {"greeting": "Hello, Grace!", "long_name": False},
        "error": None,
    }
    assert run_status(temporal_server.address, run_id) == WorkflowExecutionStatus.COMPLETED


@temporal
def test_run_json_exits_1_when_the_run_fails(amos_env: dict[str, str]) -> None:
    """A run that ends at a `fail` step prints the failed result and exits 1."""
    inputs = json.dumps({"api": "http://127.0.0.1:9", "email": "not-an-email"})
    proc = amos(
        amos_env, "run", str(EXAMPLES_DIR / "customer-onboarding.json"), "--input", inputs, "--json"
    )
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == RESULT_KEYS
    assert result["status"] == "failed"
    assert result["output"] is None
    assert result["error"] == {
        "message": "not an email address: not-an-email",
        "type": "Fail",
        "step": "bad_email",
    }


@temporal
def test_run_an_invalid_flow_exits_2_and_starts_nothing(
    amos_env: dict[str, str], temporal_server: EmbeddedTemporal, tmp_path: Path
) -> None:
    """An invalid flow exits 2 with pointer lines on stderr, and no run is started."""
    bad = write(
        tmp_path / "bad.json",
        {"dsl": "amos.flow/v1", "name": "cli-bad", "steps": [{"id": "x", "type": "teleport"}]},
    )
    run_id = f"cli-bad-{uuid.uuid4().hex[:8]}"
    proc = amos(amos_env, "run", str(bad), "--json", "--run-id", run_id)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines
    assert all(POINTER_LINE.match(line) for line in lines), lines
    assert any(line.startswith("/steps/0") for line in lines)
    assert run_status(temporal_server.address, run_id) is None


@temporal
def test_run_with_invalid_inputs_exits_2_and_starts_nothing(
    amos_env: dict[str, str], temporal_server: EmbeddedTemporal
) -> None:
    """Inputs that break the flow's input schema exit 2 naming the input, and start no run."""
    inputs = json.dumps({"api": "http://127.0.0.1:9", "order": {"id": "o-1", "channel": "fax"}})
    run_id = f"cli-inputs-{uuid.uuid4().hex[:8]}"
    proc = amos(
        amos_env,
        "run",
        str(EXAMPLES_DIR / "order-fulfilment.json"),
        "--input",
        inputs,
        "--json",
        "--run-id",
        run_id,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("/inputs/order/channel: "), proc.stderr
    assert run_status(temporal_server.address, run_id) is None


@temporal
def test_run_with_input_that_is_not_json_exits_2(
    amos_env: dict[str, str], temporal_server: EmbeddedTemporal
) -> None:
    """`--input` that is not JSON exits 2 with an `/inputs` pointer, and starts no run."""
    run_id = f"cli-notjson-{uuid.uuid4().hex[:8]}"
    proc = amos(
        amos_env,
        "run",
        str(EXAMPLES_DIR / "hello.json"),
        "--input",
        "{who: Grace}",
        "--json",
        "--run-id",
        run_id,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("/inputs: not JSON"), proc.stderr
    assert run_status(temporal_server.address, run_id) is None


@temporal
def test_run_reads_inputs_from_a_file(amos_env: dict[str, str], tmp_path: Path) -> None:
    """`--input-file` supplies the run inputs."""
    inputs = write(tmp_path / "inputs.json", {"who": "Bartholomew the Great"})
    proc = amos(
        amos_env, "run", str(EXAMPLES_DIR / "hello.json"), "--input-file", str(inputs), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["output"] == {
        "greeting": "Hello, Bartholomew the Great!",
        "long_name": True,
    }


@temporal
def test_run_without_json_shows_progress_and_the_output(amos_env: dict[str, str]) -> None:
    """Without `--json` the run's step table and status go to stderr, its output to stdout."""
    run_id = f"cli-progress-{uuid.uuid4().hex[:8]}"
    proc = amos(
        amos_env,
        "run",
        str(EXAMPLES_DIR / "hello.json"),
        "--input",
        '{"who": "Ada"}',
        "--run-id",
        run_id,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"greeting": "Hello, Ada!", "long_name": False}
    assert f"run {run_id}" in proc.stderr
    assert f"run {run_id} completed" in proc.stderr
    table_rows = [line for line in proc.stderr.splitlines() if "completed" in line]
    for step in ("prepare", "measure", "greet"):
        assert any(step in row for row in table_rows), proc.stderr


def test_a_command_loads_only_its_own_module() -> None:
    """`amos up --help` imports the `up` command, not the other command modules.

    `amos up`'s supervisor lives as long as the node: what it imports, it keeps.
    """
    probe = (
        "import sys\n"
        "sys.argv = ['amos', 'up', '--help']\n"
        "from amosflow.cli.main import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('amosflow.cli.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = done.stdout.strip().splitlines()[-1]
    assert "'amosflow.cli.up'" in loaded
    for other in ("admin", "audit", "model", "runner", "secret", "flow", "events", "run"):
        assert f"'amosflow.cli.{other}'" not in loaded
