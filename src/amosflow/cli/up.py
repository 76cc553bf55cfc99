"""`amos up`: run a whole node (Temporal, NATS, API, worker) until Ctrl-C or SIGTERM.

This process supervises the node for as long as it runs, so it stays small: the set-up that
needs the store, identity, audit and the runner fleet (enrolling the local runner, the node's
token, the audit key check) runs in a forked child (``call_as``), which takes those imports
with it when it exits.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import httpx
import typer

from amosflow.config import (
    ApiSettings,
    AuditSettings,
    BusSettings,
    EngineSettings,
    IdentitySettings,
    NodeSettings,
    RunnerSettings,
    StoreSettings,
)
from amosflow.errors import AmosError
from amosflow.node import (
    Child,
    Demotion,
    NodePlan,
    ServiceUser,
    Supervisor,
    call_as,
    covers,
    ensure_service_user,
    needed_paths,
    private_umask,
    secure_home,
    share_home,
)

if TYPE_CHECKING:
    from collections.abc import Callable


def _client(api_url: str, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=api_url, timeout=30, headers=headers)


def node_credentials(home: Path) -> tuple[str, str | None]:
    """The node's own token, and a one-time setup link token while nobody can sign in yet."""
    from amosflow import identity  # noqa: PLC0415 - lazy: see the module's docstring
    from amosflow.store import open_store  # noqa: PLC0415 - lazy

    settings = IdentitySettings(home=home)
    store = open_store(StoreSettings().url)
    try:
        token = identity.node_token(store, settings)
        with store.session(read_only=True) as session:
            people = [p for p in identity.list_principals(session) if p.kind == "user"]
    finally:
        store.dispose()
    return token, None if people else identity.create_setup_token(settings)


def local_runner(home: Path) -> Path | None:
    """Enroll the node's own runner on first start (zone `local`); None when it is turned off."""
    from amosflow.runner.dispatch import enroll_local  # noqa: PLC0415 - lazy
    from amosflow.store import open_store  # noqa: PLC0415 - lazy

    settings = RunnerSettings(home=home)
    if not settings.port:
        return None
    directory = home / "runner"
    store = open_store(StoreSettings().url)
    try:
        enroll_local(store, settings, directory)
    finally:
        store.dispose()
    return directory


def load_examples(api_url: str, directory: Path, token: str) -> list[str]:
    """Save every flow file of ``directory`` into the catalog through the API."""
    loaded: list[str] = []
    with _client(api_url, token) as client:
        for path in sorted(directory.glob("*.json")):
            doc: Any = json.loads(path.read_text(encoding="utf-8"))
            name = doc.get("name") if isinstance(doc, dict) else None
            if not isinstance(name, str):
                continue
            body = {
                "document": doc,
                "message": f"load {path.name}",
                "author": "amos up <node@amosflow.local>",
            }
            response = client.put(f"/api/v1/flows/{name}", json=body)
            if response.status_code == httpx.codes.OK:
                loaded.append(name)
            else:
                typer.echo(f"warning: {path.name} not loaded: {response.text}", err=True)
    return loaded


def smoke_run(api_url: str, flow: str, token: str, timeout_s: float = 60) -> str:
    """Start one run of ``flow`` through the API and describe how it ended."""
    with _client(api_url, token) as client:
        started = client.post("/api/v1/runs", json={"flow": flow, "inputs": {}})
        if started.status_code != httpx.codes.CREATED:
            return f"{flow} not started: {started.text}"
        run_id = started.json()["run_id"]
        deadline = time.monotonic() + timeout_s
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = client.get(f"/api/v1/runs/{run_id}").json()
            if run.get("status") in {"completed", "failed", "cancelled", "timed_out"}:
                break
            time.sleep(0.1)  # polling the run's recorded status
        output = json.dumps(run.get("output"), ensure_ascii=False)
        return f"{run_id} {run.get('status', 'unknown')}: {output}"


def _service_user() -> ServiceUser | None:
    """The service user to run the API, worker and runner as; None when not root."""
    if os.geteuid() != 0:
        return None
    return ensure_service_user(NodeSettings().service_user)


def _signs_itself(settings: AuditSettings) -> bool:
    """Whether this node runs its own checkpointer: not when the key is another user's.

    A key this user cannot read belongs to a checkpointer run by someone else, the set-up
    decision 0049 recommends for a node that does not start as root.
    """
    key = settings.key_path
    return not key.exists() or os.access(key, os.R_OK)


def _key_warning(settings: AuditSettings, *, signs_itself: bool) -> str | None:
    """What to tell the operator of a node not started as root about the checkpoint key."""
    from amosflow import audit  # noqa: PLC0415 - lazy: see the module's docstring

    me = audit.os_user()
    problems = audit.key_exposure(settings, me)
    if signs_itself:
        problems = [f"the API runs as {me.name}, like the audit checkpointer", *problems]
    if not problems:
        return None
    return (
        "warning: a compromise of the API could sign audit checkpoints for a chain it "
        f"rewrote: {'; '.join(problems)}. Run `amos up` as root (the API, worker and runner "
        "then run as the service user), or give the checkpoint key to another user who runs "
        "`amos audit checkpointer` (docs/decisions/0049); `amos audit doctor` checks it."
    )


def _as_service_user(user: ServiceUser | None, home: Path, work: Callable[[], object]) -> object:
    """Run ``work`` in a forked child: the service user when there is one, else this user.

    A root node never opens the store or writes the service user's files as root: the
    service user could have replaced them with links to files of root's (decision 0049).
    Either way the child, not the supervisor, carries what ``work`` imports.
    """
    if user is None:
        return call_as(None, work)
    return call_as(Demotion(user, covers(needed_paths(home), user)), work)


def _plan(api_port: int | None, *, split: bool = False) -> NodePlan:
    """Make AMOS_HOME private (under root, the service user's; decision 0049) and plan the node.

    Raises RuntimeError, OSError or AmosError when the home or the service user cannot be set up.
    """
    engine, api, bus = EngineSettings(), ApiSettings(), BusSettings()
    audit_settings = AuditSettings(home=engine.home)
    user = _service_user()
    secure_home(engine.home)
    if user is not None:
        call_as(None, lambda: share_home(engine.home, user, audit_settings))  # stays root

    def enroll() -> str | None:
        directory = local_runner(engine.home)
        return None if directory is None else str(directory)

    runner_dir = _as_service_user(user, engine.home, enroll)
    return NodePlan(
        home=engine.home,
        api_host=api.host,
        api_port=api_port or api.port,
        temporal_address=engine.temporal_address,
        nats_url=bus.nats_url,
        runner_dir=Path(str(runner_dir)) if runner_dir is not None else None,
        service_user=user,
        trusted_proxies=api.proxies(),
        checkpointer=user is not None or _signs_itself(audit_settings),
        reveal=[audit_settings.directory, audit_settings.sink_path.parent],
        split=split,
    )


def _announce(node: Supervisor, setup_token: str | None, key_warning: str | None) -> None:
    """Print where everything answers, and who runs it."""
    plan = node.plan
    typer.echo(f"console    {node.api_url}/")
    typer.echo(f"API        {node.api_url}/api/v1  (docs {node.api_url}/api/v1/docs)")
    typer.echo(f"ready      {node.api_url}/readyz")
    typer.echo(f"Temporal   {node.temporal_address}")
    typer.echo(f"NATS       {node.nats_url}")
    typer.echo(f"home       {plan.home}")
    if plan.runner_dir is not None:
        runners = RunnerSettings(home=plan.home)
        typer.echo(f"runner     https://{runners.host}:{runners.port}  (mTLS; zone local)")
    if setup_token is not None:
        typer.echo(f"setup      {node.api_url}/setup?token={setup_token}  (one use: first admin)")
    settings = AuditSettings(home=plan.home)
    if plan.service_user is not None:
        name = plan.service_user.name
        typer.echo(f"user       {name} runs every Python child; only root reads the audit key")
    elif not plan.checkpointer:
        typer.echo(f"audit      checkpoints signed elsewhere ({settings.key_path})")
    if key_warning is not None:
        typer.echo(key_warning, err=True)


def up(
    examples: Annotated[
        Path | None,
        typer.Option("--examples", help="Load the flows of this directory into the catalog."),
    ] = None,
    api_port: Annotated[int | None, typer.Option("--api-port", help="Port of the API.")] = None,
    smoke: Annotated[
        str | None,
        typer.Option("--smoke", help="Once up, run this catalog flow and print its result."),
    ] = None,
    split: Annotated[
        bool,
        typer.Option(
            "--split",
            envvar="AMOS_NODE_SPLIT",
            help="Run the flow worker as a process of its own instead of inside the API.",
        ),
    ] = False,
) -> None:
    """Start the single node and keep it running; Ctrl-C stops everything cleanly."""
    private_umask()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        plan = _plan(api_port, split=split)
    except (RuntimeError, OSError, AmosError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from None
    node = Supervisor(plan)
    stopping = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        node.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        node.start()
    except RuntimeError as err:
        node.shutdown()
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from None
    try:
        credentials = _as_service_user(
            plan.service_user, plan.home, lambda: node_credentials(plan.home)
        )
    except RuntimeError as err:
        node.shutdown()
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from None
    token, setup_token = cast("tuple[str, str | None]", credentials)
    key_warning = None
    if plan.service_user is None:
        settings = AuditSettings(home=plan.home)
        key_warning = cast(
            "str | None",
            call_as(None, lambda: _key_warning(settings, signs_itself=plan.checkpointer)),
        )
    if examples is not None:
        names = load_examples(node.api_url, examples, token)
        typer.echo(f"catalog: loaded {len(names)} flows from {examples}")
    _announce(node, setup_token, key_warning)
    if smoke is not None:
        typer.echo(f"smoke run  {smoke_run(node.api_url, smoke, token)}")
    typer.echo("node is up; Ctrl-C stops it", err=True)

    def restarted(child: Child) -> None:
        typer.echo(f"restarted {child.name}", err=True)

    node.watch(restarted)
    node.shutdown()
    if stopping:
        typer.echo("node stopped", err=True)
