"""The whole node under the harness's hand: `amos up` and its children as real processes.

`amos up` starts Temporal, NATS, the API (which runs the flows and the runner endpoint), the
audit checkpointer and the local runner, and restarts any of them that dies. The harness
finds those children where the kernel keeps them (``/proc/<pid>/task/*/children``, named by
their command line), not where the supervisor last wrote them, so it can hurt the child that
runs *now*, even one restarted a moment ago. Links it can cut go through a ``TcpProxy``: the
store's connection on PostgreSQL (``AMOS_DATABASE_URL`` points at the proxy) and a remote
runner's connection to the runner endpoint (its ``runner.json`` endpoint points at the proxy).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from amosflow.engine.embedded import free_port
from amosflow.runner.dispatch import create_enrollment_token
from amosflow.store import open_store
from tests.faults.harness import Faults, Process, TcpProxy, wait_until

AMOS = str(Path(sys.executable).with_name("amos"))
ADMIN = "battery"
PASSWORD = "battery-admin-password-5e1d"  # a throwaway node's first admin
#: The children of `amos up`, told apart by a piece of their command line.
CHILD_MARKS = {
    "api": "uvicorn",
    "runner": "amosflow.runner.agent.main",
    "audit-checkpointer": "amosflow.cli.audit",
    "nats": "nats-server",
    "temporal": "temporal",
}
#: Short leases and heartbeats, so a killed runner's job goes to the next one within seconds.
FAST_FLEET = {
    "AMOS_RUNNER_LEASE_SECONDS": "3",
    "AMOS_RUNNER_HEARTBEAT_TTL_SECONDS": "10",
    "AMOS_RUNNER_DISPATCH_WAIT_SECONDS": "120",
}


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}


def _state(pid: int) -> str:
    """The kernel's one-letter state of ``pid`` (R, S, T, Z...), or '' when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid``, from every thread of it (keepers start them)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children_of(current)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class Node:
    """A running `amos up`: its API, its home, its store, and the links the harness can cut."""

    home: Path
    url: str
    store_url: str
    process: subprocess.Popen[bytes]
    faults: Faults
    log: Path
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    token: str = ""
    #: An approver's token: four eyes, so not the one who started the runs.
    approver_token: str = ""
    remote: Process | None = None
    #: Children the harness paused (SIGSTOP) and has not resumed yet.
    paused: dict[str, int] = field(default_factory=dict)

    # -- its processes ------------------------------------------------------------------
    def children(self) -> dict[str, int]:
        """The live children of the supervisor now, by name (zombies not yet reaped are dead)."""
        named: dict[str, int] = {}
        for pid in children_of(self.process.pid):
            if _state(pid) in {"", "Z", "X"}:
                continue
            line = _cmdline(pid)
            for name, mark in CHILD_MARKS.items():
                if mark in line:
                    named.setdefault(name, pid)
                    break
        return named

    def pids(self) -> list[int]:
        """Every process of the node (the supervisor and all under it, and a remote runner)."""
        pids = descendants(self.process.pid)
        if self.remote is not None and self.remote.popen is not None and self.remote.alive:
            pids.append(self.remote.popen.pid)
        return pids

    def kill(self, name: str) -> bool:
        """SIGKILL the child ``name`` that runs now; False when none runs (being restarted)."""
        if name == "remote-runner":
            if self.remote is None or not self.remote.alive:
                return False
            self.remote.kill()
            self.remote.start()
            return True
        pid = self.children().get(name)
        if pid is None:
            return False
        self.faults.note(f"SIGKILL {name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return True

    def pause(self, name: str) -> bool:
        """SIGSTOP the child ``name``: it holds its sockets and leases but does nothing."""
        pid: int | None
        if name == "remote-runner":
            remote = self.remote.popen if self.remote is not None and self.remote.alive else None
            pid = remote.pid if remote is not None else None
        else:
            pid = self.children().get(name)
        if pid is None:
            return False
        self.faults.note(f"SIGSTOP {name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        self.paused[name] = pid
        return True

    def resume(self, name: str) -> None:
        """SIGCONT what ``pause`` stopped."""
        pid = self.paused.pop(name, None)
        if pid is None:
            return
        self.faults.note(f"SIGCONT {name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    def resume_all(self) -> None:
        """Resume every paused child and heal every link: the end of a fault schedule."""
        for name in list(self.paused):
            self.resume(name)
        for proxy in self.proxies.values():
            proxy.restore()
            proxy.slow(0.0)

    # -- its API ------------------------------------------------------------------------
    def client(self, timeout: float = 10.0, *, approver: bool = False) -> httpx.Client:
        """An API client with a user's token, as a script would hold (or the approver's)."""
        token = self.approver_token if approver else self.token
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def ready(self) -> bool:
        """Whether the API answers `/readyz` 200 (it and Temporal are up)."""
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == httpx.codes.OK
        except httpx.HTTPError:
            return False

    def healthy(self) -> bool:
        """Whether every child of the node runs, unpaused, and the API is ready."""
        names = set(CHILD_MARKS)
        return names <= set(self.children()) and not self.paused and self.ready()

    def env(self) -> dict[str, str]:
        """The environment of a CLI command on this node's host."""
        return _clean_env() | {
            "AMOS_HOME": str(self.home),
            "AMOS_API_URL": self.url,
            "AMOS_DATABASE_URL": self.store_url,
            "AMOS_EGRESS_ALLOW": "127.0.0.1",
        }

    def stop(self) -> None:
        """Heal everything, stop a remote runner, SIGTERM `amos up`; SIGKILL if it hangs."""
        self.resume_all()
        if self.remote is not None:
            self.remote.stop()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for proxy in self.proxies.values():
            proxy.close()

    def announced(self, what: str) -> str:
        """What `amos up` printed for ``what`` once up (``Temporal``, ``NATS``...)."""
        for line in self.output().splitlines():
            if line.startswith(what + " "):
                return line.split()[1]
        msg = f"amos up did not announce {what}"
        raise AssertionError(msg)

    def output(self) -> str:
        """What `amos up` printed, for a failure message."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_node(
    directory: Path, faults: Faults, *, database_url: str | None = None, remote: bool = True
) -> Node:
    """Start `amos up` in ``directory`` (SQLite, or PostgreSQL at ``database_url`` through a proxy).

    Creates the first administrator and an API token for the workload, and with ``remote``
    enrolls and starts a runner of zone ``remote`` whose link to the endpoint is a proxy.
    """
    home = directory / "home"
    port, runner_port = free_port(), free_port()
    env = _clean_env() | FAST_FLEET
    env |= {
        "AMOS_HOME": str(home),
        "AMOS_API_PORT": str(port),
        "AMOS_RUNNER_PORT": str(runner_port),
        "AMOS_EGRESS_ALLOW": "127.0.0.1",
    }
    proxies: dict[str, TcpProxy] = {}
    store_url = f"sqlite:///{home / 'amos.db'}"
    if database_url is not None:
        store_url = database_url
        rest, _, database = database_url.rpartition("/")
        credentials, _, address = rest.rpartition("@")
        proxies["store"] = TcpProxy(address, faults)
        env["AMOS_DATABASE_URL"] = f"{credentials}@{proxies['store'].address}/{database}"
    log = directory / "amos-up.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [AMOS, "up"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    node = Node(home, f"http://127.0.0.1:{port}", store_url, process, faults, log, proxies)
    try:
        wait_until(
            lambda: "node is up" in node.output() or process.poll() is not None,
            timeout=120,
            what="amos up started",
        )
        assert process.poll() is None, node.output()
        node.token = _admin_token(node)
        node.approver_token = _approver_token(node)
        if remote:
            node.remote = _remote_runner(node, directory / "remote-runner", runner_port)
    except BaseException:
        node.stop()
        raise
    return node


def _admin_token(node: Node) -> str:
    """Create the first administrator with `amos admin create` and mint an API token."""
    created = subprocess.run(
        [AMOS, "admin", "create", "--username", ADMIN, "--password-stdin"],
        input=(PASSWORD + "\n").encode(),
        env=node.env(),
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr.decode(errors="replace")
    login = httpx.post(
        f"{node.url}/api/v1/auth/login",
        json={"username": ADMIN, "password": PASSWORD},
        timeout=30,
    )
    assert login.status_code == httpx.codes.OK, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    minted = httpx.post(
        f"{node.url}/api/v1/me/tokens", json={"name": "workload"}, headers=headers, timeout=30
    )
    assert minted.status_code in {200, 201}, minted.text
    return str(minted.json()["token"])


def _approver_token(node: Node) -> str:
    """Create a second user with the approver role and mint a token for the inbox bot."""
    with node.client(timeout=30) as client:
        created = client.post(
            "/api/v1/users", json={"username": "approver", "password": PASSWORD + "-approver"}
        )
        assert created.status_code == httpx.codes.CREATED, created.text
        binding = {"subject_kind": "principal", "subject": created.json()["id"], "role": "approver"}
        bound = client.post("/api/v1/role-bindings", json=binding)
        assert bound.status_code == httpx.codes.CREATED, bound.text
    login = httpx.post(
        f"{node.url}/api/v1/auth/login",
        json={"username": "approver", "password": PASSWORD + "-approver"},
        timeout=30,
    )
    assert login.status_code == httpx.codes.OK, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    minted = httpx.post(
        f"{node.url}/api/v1/me/tokens", json={"name": "inbox-bot"}, headers=headers, timeout=30
    )
    assert minted.status_code in {200, 201}, minted.text
    return str(minted.json()["token"])


def _remote_runner(node: Node, directory: Path, runner_port: int) -> Process:
    """Enroll a runner of zone ``remote`` and point it at the endpoint through a proxy."""
    store = open_store(node.store_url)
    try:
        with store.session() as session:
            token = create_enrollment_token(
                session,
                zone="remote",
                capabilities=["core", "http"],
                created_by="user:battery",
                ttl=timedelta(hours=1),
                now=datetime.now(UTC),
            )
    finally:
        store.dispose()
    argv = [AMOS, "runner", "enroll", "--url", node.url, "--token", token]
    argv += ["--name", "remote", "--dir", str(directory)]
    enrolled = subprocess.run(argv, env=node.env(), capture_output=True, check=False, timeout=60)
    assert enrolled.returncode == 0, enrolled.stderr.decode(errors="replace")
    proxy = TcpProxy(f"127.0.0.1:{runner_port}", node.faults)
    node.proxies["runner-link"] = proxy
    meta_path = directory / "runner.json"
    meta = json.loads(meta_path.read_text())
    meta["endpoint"] = f"https://{proxy.address}"
    meta_path.write_text(json.dumps(meta))
    argv = [AMOS, "runner", "start", "--dir", str(directory)]
    return Process(
        "remote-runner", argv, node.env(), directory.parent / "remote.log", node.faults
    ).start()


#: What a fault schedule draws from, with weights: crashes of every child (a Temporal
#: restart among them), pauses, and partitions or slowness of every link the node lets a
#: proxy stand in.
KILLABLE = ("api", "temporal", "nats", "runner", "audit-checkpointer", "remote-runner")
PAUSABLE = ("api", "temporal", "nats", "runner", "remote-runner")


def inject(node: Node, dice: random.Random, hold: threading.Event) -> str:
    """Inject one fault drawn with ``dice`` and heal it if it is temporary; return its kind.

    ``hold`` is never set: it is the clock a temporary fault lasts on (a pause or a cut is
    the fault itself, not a wait for a race). A fault on a child that is down right now
    (being restarted) is drawn again on another.
    """
    links = sorted(node.proxies)
    kinds = ["kill"] * 5 + ["pause"] * 3 + (["cut"] * 3 + ["slow"]) * bool(links)
    for _ in range(20):
        kind = dice.choice(kinds)
        if kind == "kill":
            victim = dice.choice(KILLABLE)
            if node.kill(victim):
                return f"kill {victim}"
        elif kind == "pause":
            victim = dice.choice(PAUSABLE)
            if node.pause(victim):
                hold.wait(dice.uniform(0.5, 3.0))
                node.resume(victim)
                return f"pause {victim}"
        elif kind == "cut":
            link = dice.choice(links)
            node.proxies[link].cut()
            hold.wait(dice.uniform(0.5, 4.0))
            node.proxies[link].restore()
            return f"cut {link}"
        else:
            link = dice.choice(links)
            node.proxies[link].slow(dice.uniform(0.05, 0.3))
            hold.wait(dice.uniform(1.0, 4.0))
            node.proxies[link].slow(0.0)
            return f"slow {link}"
        hold.wait(0.2)  # every child drawn was down: let the supervisor bring one back
    return "none (every child drawn was down)"
