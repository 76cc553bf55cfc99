"""Composition root of the API process: builds the control plane and mounts the routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from amosflow import __version__, audit, console
from amosflow.api import _problems as problems
from amosflow.api._outage import OutageMiddleware
from amosflow.api._security import AuthMiddleware
from amosflow.api.routes import (
    audit as audit_routes,
)
from amosflow.api.routes import (
    auth,
    configs,
    flows,
    health,
    hooks,
    identity,
    mcp,
    models,
    runs,
    scim,
    secrets,
    tasks,
    triggers,
)
from amosflow.api.routes import (
    runners as runner_routes,
)
from amosflow.bus import OutboxRelay, connect_bus
from amosflow.catalog import Catalog
from amosflow.config import (
    ApiSettings,
    BusSettings,
    CatalogSettings,
    EngineSettings,
    NotifySettings,
    RunnerSettings,
    SmtpSettings,
    StoreSettings,
    TaskSettings,
)
from amosflow.engine.client import connect
from amosflow.engine.codec import payload_codec
from amosflow.engine.embedded import running_address
from amosflow.engine.worker import build_worker
from amosflow.errors import EngineError
from amosflow.humantasks import task_activities
from amosflow.identity import (
    Authenticator,
    IdentitySettings,
    JwksCache,
    OidcSettings,
    OidcVerifier,
    SessionSigner,
)
from amosflow.runner.dispatch import dispatch_activity, fleet_server
from amosflow.services import ControlPlane, RunWatcher, upgrade
from amosflow.services import triggers as trigger_service
from amosflow.store import Store, open_store
from amosflow.triggers import schedules
from amosflow.vault import open_vault

log = logging.getLogger(__name__)
OPENAPI_URL = "/api/v1/openapi.json"
#: How long the API's start waits for Temporal before it serves without it.
ENGINE_START_WAIT_S = 10.0
#: The pause between connection attempts while Temporal is away (each attempt itself waits).
ENGINE_RETRY_S = 1.0


@dataclass
class NodeConfig:
    """Where the control plane finds Temporal, its store, its catalog and the bus."""

    engine: EngineSettings = field(default_factory=EngineSettings)
    store_url: str = field(default_factory=lambda: StoreSettings().url)
    catalog_path: Path = field(default_factory=lambda: CatalogSettings().path)
    nats_url: str | None = field(default_factory=lambda: BusSettings().nats_url)
    oidc: OidcSettings = field(default_factory=OidcSettings)
    runners: RunnerSettings = field(default_factory=RunnerSettings)
    tasks: TaskSettings = field(default_factory=TaskSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    #: Whether this process also runs the flow worker (the single node's lean topology).
    run_worker: bool = field(default_factory=lambda: ApiSettings().run_worker)

    def temporal_address(self) -> str:
        """The configured Temporal, or the embedded one a node runs in this home."""
        address = self.engine.temporal_address or running_address(self.engine.home)
        if address is None:
            raise EngineError("no Temporal: set AMOS_TEMPORAL_ADDRESS or start `amos up`")
        return address


async def _relay_forever(app: FastAPI, nats_url: str, stop: asyncio.Event) -> None:
    """Publish the outbox to the bus; reconnect whenever NATS goes away."""
    cp: ControlPlane = app.state.control_plane
    while not stop.is_set():
        try:
            bus = await connect_bus(nats_url)
        except Exception as err:
            log.warning("event bus unavailable: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=2)
            continue
        try:
            await bus.ensure_stream()
        except Exception as err:
            log.warning("event stream unavailable: %s", err)
            await bus.close()
            continue
        app.state.bus = bus
        try:
            await OutboxRelay(cp.store, bus).run_forever(stop)
        finally:
            app.state.bus = None
            await bus.close()


def _authenticator(node: NodeConfig, store: Store) -> tuple[Authenticator, JwksCache | None]:
    """The node's authenticator: session key, IdP verifier and audit fingerprint key."""
    settings = IdentitySettings(home=node.engine.home)
    audit_settings = audit.AuditSettings(home=node.engine.home)
    cache: JwksCache | None = None
    verifier: OidcVerifier | None = None
    if node.oidc.issuer:
        cache = JwksCache(node.oidc)
        verifier = OidcVerifier(node.oidc, cache)
    authenticator = Authenticator(
        store=store,
        settings=settings,
        signer=SessionSigner.from_settings(settings),
        oidc=verifier,
        fingerprint_key=audit.load_fingerprint_key(audit_settings.fingerprint_key_path),
    )
    return authenticator, cache


async def _control_plane(node: NodeConfig, store: Store, client: Client) -> ControlPlane:
    """The node's control plane, its catalog brought up to this release's layout."""
    cp = ControlPlane(
        settings=node.engine, store=store, catalog=Catalog(node.catalog_path), client=client
    )
    await upgrade.adopt_legacy_catalog(cp)
    return cp


async def _connect_until(node: NodeConfig, stop: asyncio.Event) -> Client | None:
    """Connect to Temporal, trying again until it answers; None when stopped first."""
    while not stop.is_set():
        try:
            # Every payload to and from Temporal is encrypted with the node's codec (0029).
            return await connect(
                node.temporal_address(),
                node.engine.temporal_namespace,
                codec=payload_codec(node.engine.home, create=True),
            )
        except EngineError as err:
            log.warning("Temporal unavailable, the API serves without it for now: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=ENGINE_RETRY_S)
    return None


async def _engine_side(
    app: FastAPI, node: NodeConfig, store: Store, stop: asyncio.Event, ready: asyncio.Event
) -> None:
    """Bring up what needs Temporal once it answers, and run it until ``stop``.

    Until then ``app.state.control_plane`` is unset, and the routes that need it answer 503
    (engine-unavailable), /readyz among them.
    """
    client = await _connect_until(node, stop)
    if client is None:
        return
    runner_settings = app.state.runner_settings
    cp = await _control_plane(node, store, client)
    watcher = RunWatcher(cp)
    cp.watcher = watcher  # every run the control plane starts is followed
    app.state.watcher = watcher
    await watcher.resume()

    async def fire(fire: schedules.Fire) -> str:
        record = await trigger_service.fire_schedule(cp, fire)
        return record.run_id

    control_worker = Worker(
        client,
        task_queue=schedules.control_queue(node.engine.task_queue),
        workflows=[schedules.TriggerWorkflow],
        activities=[
            schedules.fire_activity(fire),
            dispatch_activity(store, runner_settings),
            *task_activities(store, tasks=node.tasks, notify=node.notify, smtp=node.smtp),
        ],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    endpoint = (
        fleet_server(store, client, runner_settings, app.state.vault)
        if runner_settings.port
        else None
    )
    serving = asyncio.create_task(endpoint.serve()) if endpoint else None
    flow_worker = build_worker(client, node.engine) if node.run_worker else None
    async with control_worker, flow_worker or contextlib.nullcontext():
        app.state.control_plane = cp
        relay = (
            asyncio.create_task(_relay_forever(app, node.nats_url, stop)) if node.nats_url else None
        )
        ready.set()
        try:
            await stop.wait()
        finally:
            if endpoint is not None and serving is not None:
                endpoint.should_exit = True
                await serving
            if relay is not None:
                await relay
            await watcher.close()


def create_app(config: NodeConfig | None = None) -> FastAPI:
    """The FastAPI application of one control-plane node."""
    node = config or NodeConfig()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # What needs no Temporal comes up at once; the engine side (the control plane, its
        # workers, the runner endpoint, the relay) comes up when Temporal answers, so the API
        # serves /healthz and answers /readyz 503 while Temporal is away (decision 0065).
        store = open_store(node.store_url)
        app.state.vault = open_vault(store, node.engine.home)
        app.state.authenticator, jwks = _authenticator(node, store)
        runner_settings = node.runners.model_copy(update={"home": node.engine.home})
        app.state.runner_settings = runner_settings
        app.state.task_settings = node.tasks
        app.state.bus = None
        stop = asyncio.Event()
        ready = asyncio.Event()
        refresher = asyncio.create_task(jwks.run_refresh_loop(stop)) if jwks else None
        engine = asyncio.create_task(_engine_side(app, node, store, stop, ready))
        # A Temporal that answers is waited for briefly, so a node starting normally is
        # ready when it starts serving; one that does not is not waited for.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout=ENGINE_START_WAIT_S)
        try:
            yield
        finally:
            stop.set()
            await engine
            if refresher is not None:
                await refresher
            store.dispose()

    app = FastAPI(
        title="AMOS FLOW API",
        version=__version__,
        openapi_url=OPENAPI_URL,
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(AuthMiddleware)
    app.add_middleware(OutageMiddleware)  # outermost: the store is read from authentication on
    default_openapi = app.openapi

    def openapi_with_problems() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                problems.component_schemas()
            )
        return app.openapi_schema or {}

    app.openapi = openapi_with_problems  # type: ignore[method-assign]
    for module in (
        health,
        flows,
        configs,
        models,
        mcp,
        runs,
        triggers,
        hooks,
        secrets,
        auth,
        identity,
        audit_routes,
        scim,
        runner_routes,
        tasks,
    ):
        app.include_router(module.router)
    console.mount(app)
    return app


def openapi_document() -> dict[str, object]:
    """The OpenAPI 3.1 document, without starting anything."""
    return create_app(NodeConfig(store_url="sqlite://", catalog_path=Path())).openapi()
