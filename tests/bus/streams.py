"""Read back what the session's stream holds, to assert on it."""

from __future__ import annotations

from amosflow.bus import DEFAULT_STREAM, connect_bus


async def stored_count(url: str, subject: str) -> int:
    """How many messages the stream holds on exactly ``subject``."""
    bus = await connect_bus(url)
    try:
        info = await bus.nc.jetstream().stream_info(DEFAULT_STREAM, subjects_filter=subject)
        return (info.state.subjects or {}).get(subject, 0)
    finally:
        await bus.close()


async def stored_events(url: str, subject: str) -> list[bytes]:
    """Every payload stored on ``subject`` (a filter), oldest first."""
    bus = await connect_bus(url)
    try:
        js = bus.nc.jetstream()
        info = await js.stream_info(DEFAULT_STREAM, subjects_filter=subject)
        total = sum((info.state.subjects or {}).values())
        sub = await js.subscribe(subject, stream=DEFAULT_STREAM, ordered_consumer=True)
        return [(await sub.next_msg(timeout=5)).data for _ in range(total)]
    finally:
        await bus.close()
