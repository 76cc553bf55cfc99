"""`amos up`: start every part of a node, keep them running, stop them cleanly.

Each child is a separate process so that one crash takes nothing else down: the supervisor
restarts it (with a growing pause, forgotten once it has run healthy for ``HEALTHY_RESET_S``)
and the others carry on. Each child has a keeper thread of its own, so one child's slow
health check never holds up another's restart (decision 0065). Temporal and NATS keep their state
in the home directory, so runs, flows and schedules survive any restart. Under a root node
the API, the worker and the runner run as the service user; the audit checkpointer and the
SIEM shipper keep root, and with it the only access to the checkpoint key (decision 0049).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import AuditSettings
from amosflow.engine.embedded import EmbeddedTemporal
from amosflow.errors import AmosError
from amosflow.host import die_with_parent, terminate_group
from amosflow.node._home import PRIVATE_UMASK, SHARED_FILE_MODE, claim, claim_dir
from amosflow.node._service_user import Demotion, covers, needed_paths
from amosflow.telemetry import redaction

if TYPE_CHECKING:
    from collections.abc import Callable

    from amosflow.node._service_user import ServiceUser

log = logging.getLogger(__name__)
HEALTH_TIMEOUT_S = 60.0
MAX_BACKOFF_S = 30.0
#: A child that ran this long since its last start was healthy: its backoff starts over
#: (a crash loop dies within seconds; a child killed now and then is not in one).
HEALTHY_RESET_S = 10.0


def _browsers(env: dict[str, str]) -> Path:
    """Where Playwright's browsers are for this environment (its own default otherwise)."""
    configured = env.get("PLAYWRIGHT_BROWSERS_PATH")
    return Path(configured) if configured else Path.home() / ".cache" / "ms-playwright"


@dataclass
class Child:
    """One supervised part: how to start it, how to tell it is healthy, how to stop it."""

    name: str
    start: Callable[[], subprocess.Popen[bytes] | None]
    healthy: Callable[[], bool]
    stop: Callable[[], None]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    backoff_until: float = 0.0
    #: When it was last started and healthy (monotonic); 0 before.
    started_at: float = 0.0
    #: The pid of its last start that became healthy: what node.json says (a restart still
    #: waiting for its health is not announced by another child's restart meanwhile).
    healthy_pid: int | None = None
    #: When the supervisor saw it dead since that start (monotonic); 0 while it lives.
    died_at: float = 0.0

    def alive(self) -> bool:
        """Tell whether the child's process still runs."""
        return self.process is not None and self.process.poll() is None


def _popen_stopper(child: Child) -> Callable[[], None]:
    def stop() -> None:
        if child.process is not None:
            terminate_group(child.process, grace_s=15)

    return stop


@dataclass
class NodePlan:
    """What `amos up` runs and where."""

    home: Path
    api_host: str = "127.0.0.1"
    api_port: int = 8686
    temporal_address: str | None = None
    nats_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: The enrolled local runner's directory; None runs the node without one.
    runner_dir: Path | None = None
    #: Whom the API, worker and runner run as; None: as this process (not root).
    service_user: ServiceUser | None = None
    #: Reverse proxies whose X-Forwarded-* headers the API believes; empty: none.
    trusted_proxies: list[str] = field(default_factory=list)
    #: Whether this node signs audit checkpoints itself (False: another user's process does).
    checkpointer: bool = True
    #: Paths besides the home and the interpreter that the service user must reach.
    reveal: list[Path] = field(default_factory=list)
    #: Run the flow worker as a process of its own (False: inside the API process).
    split: bool = False


def proxy_options(trusted: list[str]) -> list[str]:
    """The uvicorn options for X-Forwarded-*: believed from ``trusted`` proxies only, else never.

    uvicorn's own default believes them from loopback, which lets anyone who reaches the API
    through a local port choose the client address that sign-in rate limits key on.
    """
    if not trusted:
        return ["--no-proxy-headers"]
    return ["--proxy-headers", "--forwarded-allow-ips", ",".join(trusted)]


class Supervisor:
    """Starts the children in order, restarts any that dies, and stops them in reverse."""

    def __init__(self, plan: NodePlan) -> None:
        self.plan = plan
        self.children: list[Child] = []
        self._stop = threading.Event()
        self.temporal: EmbeddedTemporal | None = None
        self.nats: EmbeddedNats | None = None
        self._state_lock = threading.Lock()
        #: Set once shutdown has stopped the children; the keeper threads wait for it.
        self._released = threading.Event()

    @property
    def api_url(self) -> str:
        """Base URL of the API."""
        return f"http://{self.plan.api_host}:{self.plan.api_port}"

    def child_env(self, *, demoted: bool = False) -> dict[str, str]:
        """Environment every Python child gets: where Temporal, NATS and the home are."""
        env = {**os.environ, **self.plan.env, "AMOS_HOME": str(self.plan.home)}
        env["AMOS_TEMPORAL_ADDRESS"] = self.temporal_address
        if self.nats_url:
            env["AMOS_NATS_URL"] = self.nats_url
        user = self.plan.service_user
        if demoted and user is not None:
            # root's HOME is not the service user's to read; browsers stay where root put them.
            env.setdefault("PLAYWRIGHT_BROWSERS_PATH", str(_browsers(env)))
            env |= {"HOME": str(self.plan.home), "USER": user.name, "LOGNAME": user.name}
        return env

    def demotion(self, *, switch: bool = True) -> Demotion | None:
        """How a child becomes the service user (None: there is none, it stays as we are)."""
        user = self.plan.service_user
        if user is None:
            return None
        env = self.child_env(demoted=True)
        wanted = needed_paths(self.plan.home, [*self.plan.reveal, _browsers(env)])
        return Demotion(user, covers(wanted, user), switch=switch)

    @property
    def temporal_address(self) -> str:
        """The Temporal frontend the node uses."""
        if self.plan.temporal_address:
            return self.plan.temporal_address
        assert self.temporal is not None
        return self.temporal.address

    @property
    def nats_url(self) -> str | None:
        """The NATS server the node uses."""
        if self.plan.nats_url:
            return self.plan.nats_url
        return self.nats.url if self.nats else None

    def _python_child(
        self,
        name: str,
        args: list[str],
        healthy: Callable[[], bool],
        *,
        switch: bool = True,
        env: dict[str, str] | None = None,
    ) -> Child:
        """A child running our interpreter, as the service user if any (unless not ``switch``)."""
        log_path = self.plan.home / "logs" / f"{name}.log"
        demotion = self.demotion(switch=switch)

        def start() -> subprocess.Popen[bytes]:
            with self._log_file(log_path).open("ab") as out:
                try:
                    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
                        # -P: never the working directory on sys.path, where others may write.
                        [sys.executable, "-P", *args],
                        env=self.child_env(demoted=demotion is not None and switch) | (env or {}),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                        umask=PRIVATE_UMASK,
                        # A few plain calls (mounts, setuid, prctl) and no locks, as before.
                        preexec_fn=demotion or die_with_parent,  # noqa: PLW1509
                    )
                except subprocess.SubprocessError as err:
                    msg = f"{name} could not start (see {log_path}): {err}"
                    raise RuntimeError(msg) from err

        child = Child(name=name, start=start, healthy=healthy, stop=lambda: None)
        child.stop = _popen_stopper(child)
        return child

    def _log_file(self, path: Path) -> Path:
        """A file root writes in the home by name: under a root node, made sure to be root's.

        The logs directory is root's (``share_home``), but the embedded servers write at the
        top of the home, where the service user may put a link where root will write.
        """
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.plan.service_user is not None:
            claim(path)
        return path

    def _api_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200  # noqa: PLR2004
        except httpx.HTTPError:
            return False

    def _embedded_children(self) -> list[Child]:
        """Temporal and NATS, unless the node uses servers of its own; both stay as we are.

        Under a root node they write their state and logs by name at the top of the home,
        which the service user may add entries to: those names are made root's first.
        """
        children: list[Child] = []
        if not self.plan.temporal_address:
            self.temporal = EmbeddedTemporal(self.plan.home)
            temporal = self.temporal

            def start_temporal() -> subprocess.Popen[bytes] | None:
                self._log_file(temporal.state_file)
                self._log_file(self.plan.home / "temporal.log")
                temporal.start()
                return temporal.process

            children.append(
                Child(
                    name="temporal", start=start_temporal, healthy=lambda: True, stop=temporal.stop
                )
            )
        if not self.plan.nats_url:
            self.nats = EmbeddedNats(self.plan.home)
            nats = self.nats

            def start_nats() -> subprocess.Popen[bytes] | None:
                self._log_file(nats.state_file)
                self._log_file(self.plan.home / "nats.log")
                if self.plan.service_user is not None:
                    claim_dir(self.plan.home / "nats")
                nats.start()
                return nats.process

            children.append(
                Child(name="nats", start=start_nats, healthy=lambda: True, stop=nats.stop)
            )
        return children

    def plan_children(self) -> list[Child]:
        """The children of this node, in start order."""
        children = self._embedded_children()
        # One interpreter serves the API and runs the flows unless the node is split: each
        # Python process costs ~150 MB, and on one machine the two fail and restart together
        # anyway (decision 0058). `amos worker` processes scale out the same worker.
        if self.plan.split:
            children.append(
                self._python_child("worker", ["-m", "amosflow.cli.main", "worker"], lambda: True)
            )
        api_args = [
            "-m",
            "uvicorn",
            "--factory",
            "amosflow.api.app:create_app",
            "--host",
            self.plan.api_host,
            "--port",
            str(self.plan.api_port),
            "--log-level",
            "warning",
            *proxy_options(self.plan.trusted_proxies),
        ]
        # The API's log handlers mask the secrets in use, like every other child's (0031).
        log_config = self._log_file(self.plan.home / "logs" / "api-logging.json")
        log_config.write_text(json.dumps(redaction.log_config()), encoding="utf-8")
        if self.plan.service_user is not None:
            os.chown(log_config, 0, self.plan.service_user.gid, follow_symlinks=False)
            log_config.chmod(SHARED_FILE_MODE)
        api_args += ["--log-config", str(log_config)]
        api_env = {"AMOS_API_RUN_WORKER": "false" if self.plan.split else "true"}
        children.append(self._python_child("api", api_args, self._api_healthy, env=api_env))
        # The signer of audit checkpoints is its own process: the API, which writes the
        # records, never loads the signing key. Under root it reads the key and opens the
        # sink as root, then becomes the service user (decisions 0019, 0049).
        if self.plan.checkpointer:
            # The audit commands alone: the signer imports neither the API nor the engine.
            signer_args = ["-m", "amosflow.cli.audit", "checkpointer"]
            if self.plan.service_user is not None:
                signer_args += ["--as-user", self.plan.service_user.name]
            children.append(
                self._python_child("audit-checkpointer", signer_args, lambda: True, switch=False)
            )
        if self.plan.runner_dir is not None:
            runner_args = ["-m", "amosflow.runner.agent.main", "start", "--dir"]
            children.append(
                self._python_child(
                    "runner", [*runner_args, str(self.plan.runner_dir)], lambda: True
                )
            )
        if AuditSettings().audit_siem_url:
            children.append(
                self._python_child(
                    "audit-shipper", ["-m", "amosflow.cli.audit", "ship"], lambda: True
                )
            )
        return children

    @property
    def state_file(self) -> Path:
        """Where the node says what runs: the API URL and each child's pid."""
        return self.plan.home / "node.json"

    def _write_state(self) -> None:
        with self._state_lock:
            self._write_state_now()

    def _write_state_now(self) -> None:
        state = {
            "api": self.api_url,
            "pid": os.getpid(),
            "children": {c.name: c.healthy_pid for c in self.children if c.healthy_pid},
        }
        # A fresh name, created exclusively: never a file (or link) someone put there first.
        partial = self.state_file.with_name(f".node.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(state))
        partial.replace(self.state_file)  # readers never see half a file

    def start(self) -> None:
        """Start every child in order and wait until each is healthy."""
        self.plan.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        redaction.install()
        self.children = self.plan_children()
        for child in self.children:
            self._start_child(child)
        self._write_state()

    def _start_child(self, child: Child) -> None:
        child.process = child.start()
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while not child.healthy():
            if self._stop.is_set():
                msg = f"stopped while {child.name} was starting"
                raise RuntimeError(msg)
            if child.process is not None and child.process.poll() is not None:
                msg = f"{child.name} exited with {child.process.returncode} while starting"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                # Stopped, so its keeper starts it again: a process left running unhealthy
                # looks alive to the keeper, which then never restarts it.
                child.stop()
                msg = f"{child.name} did not become healthy in {HEALTH_TIMEOUT_S:.0f}s"
                raise RuntimeError(msg)
            self._stop.wait(0.1)
        child.started_at, child.died_at = time.monotonic(), 0.0
        child.healthy_pid = child.process.pid if child.process is not None else None

    def watch(self, on_restart: Callable[[Child], None] | None = None) -> None:
        """Restart children that die, each from a keeper thread of its own, until stopped.

        One keeper per child, so one child's slow health check never holds up another's
        restart. The keepers live until ``shutdown`` has stopped the children: a child is
        started with PR_SET_PDEATHSIG, which follows the *thread* that started it, so a
        short-lived restart thread would take its child down when it ended.
        """
        for child in self.children:
            threading.Thread(
                target=self._keep, args=(child, on_restart), name=f"keep-{child.name}", daemon=True
            ).start()
        self._stop.wait()

    def _keep(self, child: Child, on_restart: Callable[[Child], None] | None) -> None:
        """Watch one child and restart it when it dies, with its own backoff."""
        while not self._stop.wait(0.5):
            now = time.monotonic()
            if child.alive():
                continue
            if not child.died_at:
                child.died_at = now
                if child.started_at and now - child.started_at >= HEALTHY_RESET_S:
                    # It ran healthy for a good while: a fresh failure, not a crash loop.
                    child.restarts, child.backoff_until = 0, 0.0
            if now < child.backoff_until:
                continue
            child.restarts += 1
            pause = min(MAX_BACKOFF_S, 0.5 * 2 ** min(child.restarts, 6))
            child.backoff_until = now + pause
            log.warning("%s stopped; restarting (restart %d)", child.name, child.restarts)
            try:
                self._start_child(child)
            except (RuntimeError, AmosError, OSError) as err:
                # An embedded server killed while starting raises its own error (BusError,
                # EngineError): the keeper tries again after the backoff instead of ending,
                # which left that child down for the rest of the node's life.
                log.warning("restart of %s failed: %s", child.name, err)
                continue
            self._write_state()
            if on_restart is not None:
                on_restart(child)
        self._released.wait()  # the children this thread started die with it

    def request_stop(self) -> None:
        """Ask `watch` to return; safe to call from a signal handler."""
        self._stop.set()

    def shutdown(self) -> None:
        """Stop every child, last started first."""
        self._stop.set()
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                child.stop()
        self._released.set()
        self.state_file.unlink(missing_ok=True)
