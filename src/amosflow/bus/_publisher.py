"""A JetStream connection that stores CloudEvents exactly once on the `amos.>` stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Final

from nats.aio.client import Client
from nats.errors import BadSubjectError, MaxPayloadError
from nats.errors import Error as NatsError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from amosflow.bus._events import ALL_SUBJECTS, CONTENT_TYPE
from amosflow.errors import BusError

DEFAULT_STREAM: Final = "AMOS_EVENTS"
DUPLICATE_WINDOW_S: Final = 120.0
CONNECT_TIMEOUT_S: Final = 5.0
PUBLISH_TIMEOUT_S: Final = 2.0
_STREAM_NAME_IN_USE = 10058
# The server or client refused this very message; every other failure may pass on its own.
_REJECTED = (BadRequestError, MaxPayloadError, BadSubjectError)

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ack:
    """JetStream's answer to a publish: the stream sequence, and whether it was a duplicate."""

    seq: int
    duplicate: bool


async def _log_error(err: Exception) -> None:
    _log.debug("nats connection: %s", err)


@dataclass
class Bus:
    """A connected NATS client with its JetStream context."""

    nc: Client

    @property
    def connected(self) -> bool:
        """Whether the client currently has a live connection to a server."""
        return bool(self.nc.is_connected)

    async def ensure_stream(self, name: str = DEFAULT_STREAM) -> None:
        """Create the durable, file-backed stream of every `amos.>` event, or update it in place."""
        config = StreamConfig(
            name=name,
            description="AMOS FLOW events (CloudEvents 1.0, structured JSON)",
            subjects=[ALL_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_S,
        )
        jsm = self.nc.jetstream()
        try:
            try:
                await jsm.add_stream(config)
            except BadRequestError as err:
                if err.err_code != _STREAM_NAME_IN_USE:
                    raise
                await jsm.update_stream(config)
        except (NatsError, OSError, TimeoutError) as err:
            raise BusError(f"cannot create the JetStream stream {name!r}: {err}") from err

    async def publish(self, subject: str, event: dict[str, Any]) -> Ack:
        """Store ``event`` on ``subject``; its CloudEvent id de-duplicates re-publishes."""
        if not self.connected:
            # Fail fast instead of letting the client buffer while it reconnects.
            raise BusError("not connected to NATS")
        event_id = event.get("id")
        if not event_id:
            raise BusError("the event has no CloudEvent id to de-duplicate by", retryable=False)
        headers = {"Nats-Msg-Id": str(event_id), "Content-Type": CONTENT_TYPE}
        payload = json.dumps(event, separators=(",", ":")).encode()
        try:
            ack = await self.nc.jetstream().publish(
                subject, payload, timeout=PUBLISH_TIMEOUT_S, headers=headers
            )
        except (NatsError, OSError, TimeoutError) as err:
            raise BusError(
                f"cannot publish to {subject!r}: {err or type(err).__name__}",
                retryable=not isinstance(err, _REJECTED),
            ) from err
        return Ack(seq=ack.seq, duplicate=bool(ack.duplicate))

    async def close(self) -> None:
        """Flush and close the connection."""
        if self.nc.is_connected:
            await self.nc.drain()
        elif not self.nc.is_closed:
            await self.nc.close()


async def connect_bus(url: str) -> Bus:
    """Connect to NATS, failing fast; once connected, the client reconnects by itself."""
    nc = Client()
    first_error: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    async def on_error(err: Exception) -> None:
        if not first_error.done():
            first_error.set_result(err)
        await _log_error(err)

    connecting = asyncio.ensure_future(
        nc.connect(
            servers=[url],
            name="amosflow",
            allow_reconnect=True,
            max_reconnect_attempts=-1,  # would retry the first connect forever: raced below
            reconnect_time_wait=1,
            connect_timeout=2,
            error_cb=on_error,
        )
    )
    racers: set[asyncio.Future[Any]] = {connecting, first_error}
    await asyncio.wait(racers, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
    if connecting.done() and connecting.exception() is None:
        return Bus(nc)
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError, NatsError, OSError, TimeoutError):
        await connecting
    await nc.close()
    reason = first_error.result() if first_error.done() else "timed out"
    raise BusError(f"cannot connect to NATS at {url}: {reason or type(reason).__name__}")
