"""Fuzzing at scale: schemathesis over every operation of a real `amos up` node.

Run with `python bench/faults/fuzz.py` (100,000 cases, about an hour on two cores) or
`python bench/faults/fuzz.py --cases 5000` for a shorter pass. The node is the one a user runs:
`amos up` in a private home, its first administrator made with `amos admin create`.

Rounds repeat, each with a new seed, until at least ``--cases`` test cases have run. A round is
three passes, because three kinds of operation cannot share one:
- **main**: every operation but the two kinds below, as the administrator;
- **protected**: the operations that could take the administrator's own access away
  (deleting a role binding, deactivating a user, replacing, patching or deleting a SCIM user).
  Their path ids are pinned to a victim account made for the round, and the stateful phase is
  off, so no response can hand the fuzzer its own id: it stays able to fuzz the rest;
- **events**: the run event stream, which lasts as long as its run. Its run id is pinned to a
  run that has ended, so every stream it reads is bounded; ``--request-timeout`` bounds the rest.

Prints a report: cases, operations covered, server errors (any 5xx, a crash or a response off
the published schema), and duration. Exits 1 when any pass found a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))  # bench/peers: AmosNode

from amos_node import PASSWORD, AmosNode

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
OPERATIONS_IN_SPEC = 96
PROTECTED = (
    "DELETE /api/v1/role-bindings/{binding_id}",
    "POST /api/v1/users/{principal_id}/deactivate",
    "POST /api/v1/users/{principal_id}/activate",
    "PUT /scim/v2/Users/{user_id}",
    "PATCH /scim/v2/Users/{user_id}",
    "DELETE /scim/v2/Users/{user_id}",
)
EVENTS = ("GET /api/v1/runs/{run_id}/events",)
READY_WAIT_S = 120
FLOW = {
    "dsl": "amos.flow/v1",
    "name": "fuzz-echo",
    "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "outputs": {"n": "${steps.echo.output}"},
    "steps": [
        {"id": "echo", "type": "action", "action": "core.echo", "with": {"value": "${inputs.n}"}}
    ],
}


@dataclass
class Tally:
    """What every pass so far has run and found."""

    cases: int = 0
    failures: int = 0
    errors: int = 0
    not_ready: int = 0
    operations: dict[str, int] = field(default_factory=dict)
    found: list[str] = field(default_factory=list)


def sign_in(url: str) -> str:
    """A personal API token of the node's first administrator."""
    with httpx.Client(base_url=url, timeout=30) as plain:
        login = plain.post("/api/v1/auth/login", json={"username": "bench", "password": PASSWORD})
        login.raise_for_status()
        access = login.json()["access_token"]
        pat = plain.post(
            "/api/v1/me/tokens",
            json={"name": "fuzz"},
            headers={"Authorization": f"Bearer {access}"},
        )
        pat.raise_for_status()
        return str(pat.json()["token"])


def seed_node(client: httpx.Client) -> str:
    """A flow and one run of it that has ended (the bounded event stream); return its id."""
    client.put(f"/api/v1/flows/{FLOW['name']}", json={"document": FLOW}).raise_for_status()
    started = client.post("/api/v1/runs", json={"flow": FLOW["name"], "inputs": {"n": 1}})
    started.raise_for_status()
    run_id = str(started.json()["run_id"])
    deadline = time.monotonic() + 120
    while client.get(f"/api/v1/runs/{run_id}").json()["status"] != "completed":
        if time.monotonic() > deadline:
            raise RuntimeError(f"seed run {run_id} did not complete")
        time.sleep(0.1)  # polling the node's own run, bounded by the deadline above
    return run_id


def victims(client: httpx.Client, round_no: int) -> dict[str, Any]:
    """Accounts the protected pass may break: a local user, its role binding, a SCIM user."""
    user = client.post(
        "/api/v1/users",
        json={"username": f"victim-{round_no}", "password": f"not-used-{round_no}-x9!Q"},
    )
    user.raise_for_status()
    principal = str(user.json()["id"])
    binding = client.post(
        "/api/v1/role-bindings",
        json={"subject_kind": "principal", "subject": principal, "role": "operator"},
    )
    binding.raise_for_status()
    scim = client.post(
        "/scim/v2/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": f"scim-victim-{round_no}",
        },
    )
    scim.raise_for_status()
    return {
        "principal_id": principal,
        "binding_id": int(binding.json()["id"]),
        "user_id": str(scim.json()["id"]),
    }


def config_file(path: Path, pinned: dict[str, Any]) -> Path:
    """A schemathesis.toml that pins path parameters of every operation to ``pinned``."""
    lines = ["[parameters]"]
    lines += [f'"path.{name}" = {json.dumps(value)}' for name, value in pinned.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def name_regex(names: tuple[str, ...]) -> str:
    """A regex matching exactly these operation names ("METHOD /path")."""
    escaped = [name.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.") for name in names]
    return "^(" + "|".join(escaped) + ")$"


def run_pass(
    url: str,
    token: str,
    *,
    label: str,
    examples: int,
    seed: int,
    report: Path,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    pinned: dict[str, Any] | None = None,
    workers: int = 1,
    coverage: bool = True,
) -> dict[str, Any]:
    """One schemathesis run; return its JSON report. Its output goes to a file beside it."""
    cmd = [SCHEMATHESIS]
    phases = ["examples", "coverage", "fuzzing", "stateful"]
    if pinned is not None:
        cmd += ["--config-file", str(config_file(report.with_suffix(".toml"), pinned))]
        phases.remove("stateful")
    if not coverage:
        phases.remove("coverage")
    cmd += ["run", f"{url}/api/v1/openapi.json", "--checks", CHECKS]
    cmd += ["--max-examples", str(examples), "--seed", str(seed), "--phases", ",".join(phases)]
    cmd += ["--request-timeout", "20", "--workers", str(workers), "--no-color"]
    cmd += ["--report", "json", "--report-json-path", str(report)]
    cmd += ["--header", f"Authorization: Bearer {token}"]
    if include:
        cmd += ["--include-name-regex", name_regex(include)]
    if exclude:
        cmd += ["--exclude-name-regex", name_regex(exclude)]
    started = time.monotonic()
    output = report.with_suffix(".out")
    with output.open("w") as sink:
        done = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, check=False)
    found = (
        dict(json.loads(report.read_text())) if report.exists() and report.stat().st_size else {}
    )
    if not found:
        raise RuntimeError(f"schemathesis wrote no report:\n{output.read_text()[-3000:]}")
    took = time.monotonic() - started
    cases = found["test_cases"]["generated"]
    print(f"  {label}: {cases} cases in {took:.0f}s, exit {done.returncode}", flush=True)
    return found


def parse_args() -> argparse.Namespace:
    """Sizes from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", type=int, default=100_000, help="test cases to run in all")
    parser.add_argument("--examples", type=int, default=100, help="examples per operation a round")
    parser.add_argument("--seed", type=int, default=20261207, help="seed of the first round")
    parser.add_argument("--keep", type=Path, help="keep the reports in this folder")
    parser.add_argument(
        "--without-coverage",
        action="store_true",
        help="leave out the coverage phase (about 10,000 cases), for a short pass",
    )
    return parser.parse_args()


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the node started here is stopped with the fuzzer."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def fuzz_rounds(node: AmosNode, args: argparse.Namespace, reports: Path, tally: Tally) -> None:
    """Round after round of the three passes, until the tally holds ``args.cases`` cases."""
    node.create_admin()
    token = sign_in(node.url)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=node.url, timeout=60, headers=headers) as client:
        ended_run = seed_node(client)
        round_no = 0
        while tally.cases < args.cases:
            seed = args.seed + round_no
            print(f"round {round_no} (seed {seed}), {tally.cases} cases so far", flush=True)
            passes = [
                ("main", {"exclude": PROTECTED + EVENTS, "workers": 2}),
                ("protected", {"include": PROTECTED, "pinned": victims(client, round_no)}),
                ("events", {"include": EVENTS, "pinned": {"run_id": ended_run}}),
            ]
            for label, options in passes:
                found = run_pass(
                    node.url,
                    token,
                    label=label,
                    examples=args.examples,
                    seed=seed,
                    report=reports / f"{round_no:03d}-{label}.json",
                    # the coverage phase's cases are the same every round: once is enough
                    coverage=round_no == 0 and not args.without_coverage,
                    **options,
                )
                add(tally, found, f"{round_no}/{label}")
                node_alive(node, tally, f"{round_no}/{label}")
            round_no += 1


def main(args: argparse.Namespace) -> int:
    """Start a node, fuzz it round after round, print the report (also when interrupted)."""
    stop_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="amos-fuzz-") as tmp:
        reports = args.keep or Path(tmp) / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        node = AmosNode(Path(tmp) / "home")
        started = time.monotonic()
        tally = Tally()
        interrupted = False
        try:
            node.start()
            fuzz_rounds(node, args, reports, tally)
        except KeyboardInterrupt:
            interrupted = True
        except RuntimeError as exc:  # the node died or stayed unready: a finding, reported
            tally.not_ready += 1
            tally.found.append(str(exc))
        finally:
            node.stop()
        print_report(tally, time.monotonic() - started, node.process, interrupted=interrupted)
        return 1 if tally.failures or tally.not_ready else 130 if interrupted else 0


def add(tally: Tally, report: dict[str, Any], where: str) -> None:
    """Count one pass's cases, operations and failures (errors included) into the tally."""
    cases = report["test_cases"]
    tally.cases += int(cases["generated"])
    tally.operations[where.split("/", 1)[1]] = max(
        tally.operations.get(where.split("/", 1)[1], 0), int(report["operations"]["tested"])
    )
    tally.failures += int(cases["with_failures"])
    tally.found += [f"{where}: {json.dumps(item)[:600]}" for item in report.get("failures") or []]
    # The fuzzer's own errors (a schema it cannot generate for, a bug of its own) are no
    # server error, but they are shown: a connection the node dropped would be one of them.
    tally.errors += int(cases["errored"]) + len(report.get("errors") or [])
    tally.found += [
        f"{where}: fuzzer {json.dumps(item)[:300]}" for item in report.get("errors") or []
    ]


def node_alive(node: AmosNode, tally: Tally, where: str) -> None:
    """A crash is a finding too: the node must still run and be ready after every pass.

    A node that is not ready is polled for up to READY_WAIT_S: a dependency that comes back
    (the supervisor restarts a child) is recorded as a finding with what /readyz said, and the
    run goes on; one that stays away ends the run with the node's last output.
    """
    if node.process is None or node.process.poll() is not None:
        raise RuntimeError("the node died under fuzzing:\n" + "".join(node.printed[-40:]))
    deadline = time.monotonic() + READY_WAIT_S
    first: str | None = None
    while True:
        try:
            answer = httpx.get(f"{node.url}/readyz", timeout=30)
            said = f"{answer.status_code} {answer.text}"
            ready = answer.status_code == httpx.codes.OK
        except httpx.HTTPError as exc:
            said, ready = f"no answer: {exc!r}", False
        if ready:
            break
        first = first or said
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"node not ready after {where}: {said}\n" + "".join(node.printed[-60:])
            )
        time.sleep(1)  # polling the node's own readiness, bounded by the deadline above
    if first is not None:
        tally.not_ready += 1
        tally.found.append(f"{where}: node not ready for a while after the pass: {first}")
        tally.found.append("  node output: " + "  ".join(node.printed[-30:]))


def print_report(
    tally: Tally, elapsed: float, process: subprocess.Popen[str] | None, *, interrupted: bool
) -> None:
    """The numbers the reliability report quotes."""
    node_exit = process.returncode if process is not None else None
    print()
    if interrupted:
        print("interrupted: the numbers are those of the passes that finished")
    print(f"cases run          {tally.cases}")
    print(f"operations covered {sum(tally.operations.values())} of {OPERATIONS_IN_SPEC}")
    print(f"server errors      {tally.failures}")
    print(f"fuzzer errors      {tally.errors}")
    print(f"not ready after    {tally.not_ready} passes")
    print(f"duration           {elapsed / 60:.1f} min")
    print(f"node exit          {node_exit}")
    for line in tally.found:
        print(f"  {line}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(parse_args()))
