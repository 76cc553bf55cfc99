"""n8n beside AMOS FLOW: installed from the npm registry into a cache, run as `n8n start`.

The version is the newest n8n whose `engines` accept this machine's Node (asked of the
registry with `npm view`), else the pinned one. n8n pins its `xlsx` dependency to a tarball
outside the registry; an npm `overrides` entry takes the registry's 0.18.5 instead, since no
node benchmarked here reads spreadsheets.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx

from amosflow.engine.embedded import free_port

PINNED = "2.8.4"
XLSX = "0.18.5"
# Picks the newest non-prerelease version whose engines.node accepts this Node, using the
# semver library npm itself ships, so the answer is the one npm would give.
_PICK = """
const semver = require(process.argv[1]);
const rows = [].concat(JSON.parse(require('fs').readFileSync(0, 'utf8')));
const ok = rows.filter(r => r && r.version && !semver.prerelease(r.version) &&
  (!r.engines || !r.engines.node || semver.satisfies(process.version, r.engines.node)));
ok.sort((a, b) => semver.rcompare(a.version, b.version));
process.stdout.write(ok.length ? ok[0].version : '');
"""


def _npm(*args: str, cwd: Path | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["npm", *args], cwd=cwd, input=stdin, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm {' '.join(args)}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def newest_version(spec: str = "n8n@>=2") -> str:
    """The newest n8n the registry offers for this Node; the pinned version if that fails."""
    try:
        listing = _npm("view", spec, "version", "engines", "--json")
        semver = Path(_npm("root", "-g").strip()) / "npm" / "node_modules" / "semver"
        picked = subprocess.run(
            ["node", "-e", _PICK, str(semver)],
            input=listing,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (RuntimeError, subprocess.CalledProcessError, OSError) as err:
        print(f"n8n: cannot ask the registry ({err}); using the pinned {PINNED}")
        return PINNED
    return picked or PINNED


def install(cache: Path, version: str) -> Path:
    """``n8n@version`` installed under ``cache`` (once); returns its `n8n` command."""
    target = cache / f"n8n-{version}"
    command = target / "node_modules" / ".bin" / "n8n"
    marker = target / ".installed"
    if marker.exists() and command.exists():
        return command
    target.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": "amosflow-bench-n8n",
        "private": True,
        "dependencies": {"n8n": version},
        "overrides": {"xlsx": XLSX},
    }
    (target / "package.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    print(f"n8n: installing {version} into {target} (once; several minutes)", flush=True)
    _npm("install", "--no-audit", "--no-fund", "--loglevel=error", cwd=target)
    marker.write_text(version, encoding="utf-8")
    return command


def _webhook(case: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "name": "Webhook",
        "type": "n8n-nodes-base.webhook",
        "typeVersion": 2,
        "position": [0, 0],
        "webhookId": str(uuid.uuid4()),
        "parameters": {
            "httpMethod": "POST",
            "path": f"bench-{case}",
            "responseMode": "lastNode",
            "options": {},
        },
    }


def _set(index: int, expression: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "name": f"Set {index}",
        "type": "n8n-nodes-base.set",
        "typeVersion": 3.4,
        "position": [200 * (index + 1), 0],
        "parameters": {
            "assignments": {
                "assignments": [
                    {"id": str(uuid.uuid4()), "name": "x", "value": expression, "type": "number"}
                ]
            },
            "options": {},
        },
    }


def workflow(case: str, steps: int) -> dict[str, Any]:
    """Webhook → ``steps`` Set nodes, answering with the last node's output."""
    nodes = [_webhook(case)]
    nodes += [
        _set(i, "={{ $json.body.n + 1 }}" if i == 0 else "={{ $json.x + 1 }}") for i in range(steps)
    ]
    connections = {
        a["name"]: {"main": [[{"node": b["name"], "type": "main", "index": 0}]]}
        for a, b in itertools.pairwise(nodes)
    }
    return {
        "id": f"bench{case.replace('-', '')}".ljust(16, "0")[:16],
        "name": f"bench {case}",
        "nodes": nodes,
        "connections": connections,
        "active": False,
        "settings": {"executionOrder": "v1"},
        "versionId": str(uuid.uuid4()),
    }


CASES = {"pure-0": 0, "pure-1": 1, "pure-20": 20}


def expected(case: str, n: int, answer: Any) -> bool:
    """Whether n8n's answer is the last node's output for ``n``."""
    if case == "pure-0":
        return isinstance(answer, dict) and answer.get("body") == {"n": n}
    return answer == {"x": n + CASES[case]}


class N8nNode:
    """`n8n start` in a private user folder, with the benchmark's workflows published."""

    def __init__(self, command: Path, home: Path) -> None:
        self.command = command
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None
        self.printed: list[str] = []
        self.client: httpx.AsyncClient | None = None
        self._env = self.env()
        self._active = threading.Event()

    def env(self) -> dict[str, str]:
        """A private user folder and port, with every call home turned off."""
        return {
            **os.environ,
            "N8N_USER_FOLDER": str(self.home),
            "N8N_PORT": str(self.port),
            "N8N_LISTEN_ADDRESS": "127.0.0.1",
            "N8N_ENCRYPTION_KEY": secrets.token_hex(16),
            "N8N_DIAGNOSTICS_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
            "N8N_TEMPLATES_ENABLED": "false",
            "N8N_PERSONALIZATION_ENABLED": "false",
            "N8N_SECURE_COOKIE": "false",
            "N8N_LOG_LEVEL": "info",  # its "Editor is now accessible" line says it is ready
            "N8N_RUNNERS_BROKER_PORT": str(free_port()),
        }

    def _cli(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.command), *args], env=self._env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"n8n {' '.join(args)}: {(done.stdout + done.stderr)[-2000:]}")

    def import_workflows(self) -> None:
        """Import the workflows with n8n's CLI and publish each one."""
        self.home.mkdir(parents=True, exist_ok=True)
        flows = [workflow(case, steps) for case, steps in CASES.items()]
        path = self.home / "workflows.json"
        path.write_text(json.dumps(flows), encoding="utf-8")
        self._cli("import:workflow", f"--input={path}")
        for flow in flows:
            self._cli("publish:workflow", f"--id={flow['id']}")

    def _drain(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.printed.append(line)
            if "Editor is now accessible" in line:
                self._active.set()
        self._active.set()

    def start(self, timeout_s: float = 300) -> int:
        """`n8n start`; returns its pid once it has activated every workflow."""
        self.process = subprocess.Popen(
            [str(self.command), "start"],
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        # n8n answers /healthz before its workflows are active; it logs this line after them.
        if not self._active.wait(timeout_s) or self.process.poll() is not None:
            raise RuntimeError("n8n did not start:\n" + "".join(self.printed[-40:]))
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.client = httpx.AsyncClient(base_url=self.url, timeout=120, limits=limits)
        return self.process.pid

    async def execute(self, case: str, n: int) -> None:
        """One webhook call; its answer must be the last node's output."""
        assert self.client is not None
        response = await self.client.post(f"/webhook/bench-{case}", json={"n": n})
        if response.status_code != httpx.codes.OK or not expected(case, n, response.json()):
            raise RuntimeError(f"n8n {case}: {response.status_code} {response.text[:500]}")

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self.client is not None:
            await self.client.aclose()
