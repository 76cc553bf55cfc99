"""A JetStream connection that stores CloudEvents exactly once on the `amos.>` stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from nats.aio.client import Client
from nats.errors import BadSubjectError, MaxPayloadError
from nats.errors import Error as NatsError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from amosflow.bus._events import ALL_SUBJECTS, CONTENT_TYPE
from amosflow.errors import BusError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.js.api import PubAck, StreamState
    from nats.js.client import JetStreamContext

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


def _message(
    event: dict[str, Any], subject: str, limit: int | None = None
) -> tuple[dict[str, str], bytes]:
    """The headers and payload of ``event``: its CloudEvent id is JetStream's de-duplication key.

    With ``limit``, a payload over the server's message limit is refused here, as the client
    would refuse it while sending.
    """
    event_id = event.get("id")
    if not event_id:
        raise BusError("the event has no CloudEvent id to de-duplicate by", retryable=False)
    headers = {"Nats-Msg-Id": str(event_id), "Content-Type": CONTENT_TYPE}
    payload = json.dumps(event, separators=(",", ":")).encode()
    if limit is not None and len(payload) > limit:
        raise BusError(
            f"cannot publish to {subject!r}: {len(payload)} bytes is over the server's"
            f" {limit}-byte message limit",
            retryable=False,
        )
    return headers, payload


def _failure(subject: str, err: BaseException) -> BusError:
    """A publish that failed: retryable unless the server or client refused this very message."""
    return BusError(
        f"cannot publish to {subject!r}: {err or type(err).__name__}",
        retryable=not isinstance(err, _REJECTED),
    )


def _answer(subject: str, item: asyncio.Future[PubAck] | BusError) -> Ack | BusError:
    """What became of one pipelined publish."""
    if isinstance(item, BusError):
        return item
    if item.cancelled():
        return BusError(f"cannot publish to {subject!r}: no acknowledgement in time")
    if (err := item.exception()) is not None:
        return _failure(subject, err)
    ack = item.result()
    return Ack(seq=ack.seq, duplicate=bool(ack.duplicate))


async def _log_error(err: Exception) -> None:
    _log.debug("nats connection: %s", err)


@dataclass
class Bus:
    """A connected NATS client with its JetStream context."""

    nc: Client
    _js: JetStreamContext | None = field(default=None, init=False, repr=False)

    @property
    def connected(self) -> bool:
        """Whether the client currently has a live connection to a server."""
        return bool(self.nc.is_connected)

    @property
    def reconnects(self) -> int:
        """How often the client reconnected: each time, the server may have restarted."""
        return int(self.nc.stats["reconnects"])

    async def ensure_stream(self, name: str = DEFAULT_STREAM) -> bool:
        """Create the durable, file-backed stream of every `amos.>` event, or update it in place.

        Returns whether it had to be created (it was not there).
        """
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
                await jsm.stream_info(name)  # adding a stream that exists is not an error
            except NotFoundError:
                existed = False
            else:
                existed = True
            try:
                await jsm.add_stream(config)
            except BadRequestError as err:
                if err.err_code != _STREAM_NAME_IN_USE:
                    raise
                await jsm.update_stream(config)
        except (NatsError, OSError, TimeoutError) as err:
            raise BusError(f"cannot create the JetStream stream {name!r}: {err}") from err
        return not existed

    async def stream_state(self, name: str = DEFAULT_STREAM) -> StreamState:
        """The stream's message count and first and last sequence, as the server has them."""
        try:
            return (await self.nc.jetstream().stream_info(name)).state
        except (NatsError, OSError, TimeoutError) as err:
            raise BusError(f"cannot read the JetStream stream {name!r}: {err}") from err

    async def skip_to(self, name: str, seq: int) -> None:
        """Drop every message before ``seq``; past the last one, the next is stored at ``seq``."""
        try:
            await self.nc.jetstream().purge_stream(name, seq=seq)
        except (NatsError, OSError, TimeoutError) as err:
            raise BusError(f"cannot move the JetStream stream {name!r} on: {err}") from err

    def _jetstream(self) -> JetStreamContext:
        # One context for the connection: pipelined publishes share its reply subscription.
        if self._js is None:
            self._js = self.nc.jetstream()
        return self._js

    async def publish(self, subject: str, event: dict[str, Any]) -> Ack:
        """Store ``event`` on ``subject``; its CloudEvent id de-duplicates re-publishes."""
        if not self.connected:
            # Fail fast instead of letting the client buffer while it reconnects.
            raise BusError("not connected to NATS")
        headers, payload = _message(event, subject)
        try:
            ack = await self._jetstream().publish(
                subject, payload, timeout=PUBLISH_TIMEOUT_S, headers=headers
            )
        except (NatsError, OSError, TimeoutError) as err:
            raise _failure(subject, err) from err
        return Ack(seq=ack.seq, duplicate=bool(ack.duplicate))

    async def publish_many(
        self, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[Ack | BusError]:
        """Store each ``(subject, event)`` in the order given, pipelined; answer each in order.

        Every message is written before any acknowledgement is awaited, in order on the one
        connection, so JetStream stores them in that order at one round trip for the batch
        instead of one per event. Each answer is the event's ``Ack`` or its ``BusError``. A
        message the server or client refuses (too large, no id) fails alone; once one cannot be
        sent at all (the connection went), it and every later one answer that error unsent.
        """
        if not self.connected:
            raise BusError("not connected to NATS")
        js = self._jetstream()
        limit = self.nc.max_payload
        sent: list[asyncio.Future[PubAck] | BusError] = []
        for subject, event in events:
            try:
                headers, payload = _message(event, subject, limit)
            except BusError as err:
                sent.append(err)
                continue
            try:
                sent.append(await js.publish_async(subject, payload, headers=headers))
            except (NatsError, OSError, TimeoutError) as err:
                failure = _failure(subject, err)
                sent += [failure] * (len(events) - len(sent))
                break
        waiting = [item for item in sent if isinstance(item, asyncio.Future)]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=PUBLISH_TIMEOUT_S)
            for future in late:
                future.cancel()  # frees its slot in the client's pending window
        return [_answer(subject, item) for (subject, _), item in zip(events, sent, strict=True)]

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
