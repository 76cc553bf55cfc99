"""Where a run's policy comes from: its config, the worker's own entries, the platform's ports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from temporalio import activity

from amosflow.config import ApiSettings, BusSettings, EngineSettings, RunnerSettings
from amosflow.egress._policy import EgressPolicy
from amosflow.host import live_state

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


class HasRunConfig(Protocol):
    """What ``run_policy`` needs of an action's context: the run's config."""

    async def run_config(self) -> Mapping[str, Any]:
        """The run's Effective Config."""
        ...


# Well-known ports of the platform's own services, refused even when not configured here.
DEFAULT_INTERNAL_PORTS = frozenset({7233, 4222, 8686})  # Temporal frontend, NATS, API


def _port_of(address: str | None) -> set[int]:
    ports: set[int] = set()
    for item in (address or "").split(","):
        text = item.strip()
        if not text:
            continue
        try:
            port = urlsplit(text if "://" in text else f"//{text}").port
        except ValueError:
            continue
        if port:
            ports.add(port)
    return ports


def internal_ports(*addresses: str) -> frozenset[int]:
    """The platform's own ports, as far as this worker can see them.

    The Temporal frontend (``AMOS_TEMPORAL_ADDRESS`` or the embedded server of the home),
    NATS (``AMOS_NATS_URL`` or the embedded server), the API (``AMOS_API_PORT``), the runner
    endpoint (``AMOS_RUNNER_PORT``), their
    well-known defaults, and the ports of any ``addresses`` the caller knows (such as the
    Temporal address its client is connected to).
    """
    engine, bus, api = EngineSettings(), BusSettings(), ApiSettings()
    temporal = engine.temporal_address or _state_value(engine.home / "temporal.json", "address")
    nats = bus.nats_url or _state_value(bus.home / "nats.json", "url")
    runner_port = RunnerSettings().port
    ports = set(DEFAULT_INTERNAL_PORTS) | {api.port} | ({runner_port} if runner_port else set())
    for address in (temporal, nats, *addresses):
        ports |= _port_of(address)
    return frozenset(ports)


def _state_value(path: Path, key: str) -> str | None:
    state = live_state(path)
    value = state.get(key) if state else None
    return str(value) if value else None


def worker_allow() -> tuple[str, ...]:
    """The worker's own allow entries (``AMOS_EGRESS_ALLOW``, comma-separated)."""
    return tuple(v.strip() for v in EngineSettings().egress_allow.split(",") if v.strip())


async def run_policy(ctx: HasRunConfig) -> EgressPolicy:
    """The egress policy of the run an action belongs to, merged with the worker's entries."""
    config = await ctx.run_config()
    return EgressPolicy.from_config(
        config, extra_allow=worker_allow(), internal_ports=internal_ports(*_temporal_target())
    )


def _temporal_target() -> tuple[str, ...]:
    """The Temporal address this activity's worker is connected to, when in an activity."""
    try:
        return (activity.client().service_client.config.target_host,)
    except RuntimeError:
        return ()
