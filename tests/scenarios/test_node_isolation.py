"""`amos up` as root: the API cannot reach the audit key, AMOS_HOME is private, proxies untrusted.

These are issue 13's findings 11 (the OS-user part), 14 (AMOS_HOME) and 15 (proxy headers),
tried against a real node the way an attacker who took over the API process would.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from amosflow.engine.embedded import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the service user exists only under root"),
]

AMOS = str(Path(sys.executable).with_name("amos"))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PASSWORD = "isolation-scenario-password-7f3e"
SERVICE_USER = "amos"


@dataclass
class Node:
    """An `amos up` process as root, its home and its API."""

    process: subprocess.Popen[str]
    home: Path
    url: str
    printed: list[str]

    def env(self) -> dict[str, str]:
        """The environment of a CLI command run by root on this node's host."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
        return env | {"AMOS_HOME": str(self.home)}

    def pid(self, child: str) -> int:
        """The pid of one of the node's children."""
        state = json.loads((self.home / "node.json").read_text())
        return int(state["children"][child])

    def amos(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run an `amos` command as root on the host."""
        return subprocess.run(
            [AMOS, *args], env=self.env(), capture_output=True, text=True, timeout=120, check=False
        )

    def admin(self) -> httpx.Client:
        """Create an administrator with the CLI, sign in, and return a client."""
        created = subprocess.run(
            [AMOS, "admin", "create", "--username", "ops", "--password-stdin"],
            input=PASSWORD + "\n",
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        login = httpx.post(
            f"{self.url}/api/v1/auth/login", json={"username": "ops", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        return httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )

    def stop(self) -> None:
        """SIGTERM the node and wait for it (the checkpointer signs the tail on the way out)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _start(home: Path, *args: str, env: dict[str, str] | None = None) -> Node:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    env = base | (env or {}) | {"AMOS_HOME": str(home), "AMOS_API_PORT": str(port)}
    env |= {"AMOS_RUNNER_PORT": str(free_port())}
    proc = subprocess.Popen(
        [AMOS, "up", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    printed = []
    for line in proc.stdout:
        printed.append(line)
        if "node is up" in line:
            return Node(proc, home, f"http://127.0.0.1:{port}", printed)
    raise AssertionError(f"amos up exited with {proc.wait()}: {''.join(printed)}")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    running = _start(tmp_path / "home")
    try:
        yield running
    finally:
        running.stop()


def _until(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)  # polling a live process for a state it reaches on its own


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _as_the_api(node: Node, script: str) -> dict[str, object]:
    """Run Python as the API process's user, inside its view of the file system; return its JSON."""
    api = node.pid("api")
    user = pwd.getpwuid(_uid(api))
    done = subprocess.run(
        ["nsenter", "-t", str(api), "-m", "--", "setpriv", f"--reuid={user.pw_uid}",
         f"--regid={user.pw_gid}", "--clear-groups", sys.executable, "-c",
         textwrap.dedent(script)],
        env=node.env() | {"HOME": str(node.home)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


_PROBE = """
    import json, os
    from amosflow import audit
    settings = audit.AuditSettings()
    def attempt(action):
        try:
            action()
        except OSError as err:
            return err.strerror
        return "allowed"
    print(json.dumps({
        "read key": attempt(lambda: settings.key_path.read_bytes()),
        "read public key": attempt(lambda: settings.public_key_path.read_bytes()),
        "append to sink": attempt(lambda: settings.sink_path.open("a").close()),
        "rename audit dir": attempt(
            lambda: settings.directory.rename(settings.directory.with_name("moved"))
        ),
        "chmod key": attempt(lambda: settings.key_path.chmod(0o644)),
        "read the signer's memory": attempt(lambda: open("/proc/%(signer)d/mem", "rb").close()),
    }))
"""


def test_the_api_runs_as_the_service_user_and_cannot_read_the_checkpoint_key(node: Node) -> None:
    """Every Python child runs as `amos`; as the API, neither the key nor the signer's memory is readable."""
    service = pwd.getpwnam(SERVICE_USER)
    signer_log = node.home / "logs" / "audit-checkpointer.log"
    _until(lambda: "audit checkpointer:" in signer_log.read_text())  # printed once it dropped root
    children = ("api", "runner", "audit-checkpointer")  # the API process runs the flows too
    uids = {child: _uid(node.pid(child)) for child in children}
    assert uids == dict.fromkeys(uids, service.pw_uid)
    seen = _as_the_api(node, _PROBE % {"signer": node.pid("audit-checkpointer")})
    assert seen == {
        "read key": "Permission denied",
        "read public key": "allowed",
        "append to sink": "Permission denied",
        "rename audit dir": "Operation not permitted",  # the sticky home
        "chmod key": "Operation not permitted",
        "read the signer's memory": "Permission denied",
    }
    doctor = node.amos("audit", "doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert doctor.stdout.endswith(
        "ok: amos can neither read the checkpoint key nor change the sink\n"
    )


_ATTACK = """
    import json
    from datetime import UTC, datetime
    from sqlalchemy import delete, select
    from amosflow import audit
    from amosflow.config import StoreSettings
    from amosflow.errors import AuditError
    from amosflow.store import open_store
    from amosflow.store import AuditAnchorRow, AuditRow
    store = open_store(StoreSettings().url)
    with store.session() as session:
        through = session.scalar(select(AuditRow.seq).order_by(AuditRow.seq.desc()).limit(1))
        hidden = session.scalar(select(AuditRow.hash).where(AuditRow.seq == through))
        session.execute(delete(AuditRow).where(AuditRow.seq <= through))
        session.add(AuditAnchorRow(id=1, seq=through, hash=hidden, pruned_at=datetime.now(UTC)))
        audit.append(session, actor="service:retention", action="audit.prune",
                     resource="audit:records", folder="*",
                     details={"deleted": through, "anchor_seq": through, "anchor_hash": hidden})
    try:
        audit.CheckpointSigner.from_file(audit.AuditSettings().key_path, create=False)
        signer = "loaded"
    except AuditError as err:
        signer = str(err)
    print(json.dumps({"cut through": through, "signer": signer}))
"""


def test_a_compromised_api_cannot_make_a_cut_head_verify(node: Node) -> None:
    """As the API's user: cut the head, anchor it, forge audit.prune; verify still fails after stop."""
    with node.admin() as client:
        assert client.get("/api/v1/me").status_code == 200
    done = _as_the_api(node, _ATTACK)
    assert str(done["signer"]).endswith("checkpoint.key: Permission denied")
    through = done["cut through"]
    assert isinstance(through, int)
    assert through > 1
    node.stop()  # the checkpointer signs the tail it now finds: that must not launder the cut
    verified = node.amos("audit", "verify")
    assert verified.returncode == 1, verified.stdout
    assert verified.stdout == (
        f"FAIL at seq 1: seq 1..{through} were removed, but no prune signed with the checkpoint "
        f"key covers them: the retention anchor at seq {through} was set outside retention\n"
    )


def _shared(path: Path, home: Path) -> int | None:
    """The mode a path may have beyond the owner's: what the service user's group may do there."""
    audit_dir = home / "audit"
    return {
        home: 0o1770,
        audit_dir: 0o750,
        audit_dir / "checkpoint.pub": 0o640,
        audit_dir / "checkpoints.jsonl": 0o640,
        home / "logs": 0o750,
        home / "logs" / "api-logging.json": 0o640,
    }.get(path)


def test_nothing_in_amos_home_is_open_to_other_users(tmp_path: Path) -> None:
    """An older install's open files are repaired; after flows, a run and a stop, nothing is open."""
    home = tmp_path / "home"
    left_behind = home / "artifacts" / "ab" / ("ab" + "0" * 62)
    left_behind.parent.mkdir(mode=0o755, parents=True)
    left_behind.write_text("a value from before")
    left_behind.chmod(0o644)
    home.chmod(0o755)
    node = _start(home, "--examples", str(EXAMPLES), "--smoke", "hello")
    try:
        assert node.admin().get("/api/v1/me").status_code == 200
    finally:
        node.stop()
    smoke = [line.split() for line in node.printed if line.startswith("smoke run")]
    assert smoke[0][3] == "completed:", node.printed
    group = pwd.getpwnam(SERVICE_USER).pw_gid
    opened = []
    for directory, dirs, files in os.walk(node.home):
        for path in [Path(directory), *(Path(directory) / name for name in dirs + files)]:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                continue
            mode = stat.S_IMODE(info.st_mode)
            allowed = _shared(path, node.home)
            if allowed is not None and (mode, info.st_gid) == (allowed, group):
                continue
            if mode & 0o077:
                opened.append(f"{oct(mode)} {path.relative_to(node.home.parent)}")
    assert sorted(set(opened)) == []
    assert (left_behind.stat().st_uid, stat.S_IMODE(left_behind.stat().st_mode)) == (
        pwd.getpwnam(SERVICE_USER).pw_uid, 0o600,
    )  # fmt: skip
    assert (node.home / "amos.db").exists()


def test_rotating_x_forwarded_for_does_not_reset_the_login_rate_limit(tmp_path: Path) -> None:
    """No proxy is trusted by default: a made-up X-Forwarded-For per attempt still hits 429."""
    node = _start(tmp_path / "home", env={"AMOS_LOGIN_RATE_PER_MINUTE": "3"})
    try:
        body = {"username": "nobody", "password": "wrong-password-1234"}
        answers = [
            httpx.post(
                f"{node.url}/api/v1/auth/login",
                json=body,
                headers={"X-Forwarded-For": f"198.51.100.{attempt}"},
            ).status_code
            for attempt in range(6)
        ]
    finally:
        node.stop()
    # Three attempts, then one more only every 20 s: six quick ones must meet a 429.
    assert answers[:3] == [401, 401, 401]
    assert 429 in answers[3:], answers
