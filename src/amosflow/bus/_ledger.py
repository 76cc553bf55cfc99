"""What the relay stored on the event stream, checked after every reconnect (decision 0072).

NATS recovers a stream whose block files were truncated or damaged (a crash mid-write, a bad
disk) by keeping what it can read, and it logs that only in its own log. Two things then go
wrong silently for the node: the lost events are gone, and when the damage cut the stream's
tail the server hands out the lost sequence numbers again, so a durable consumer whose ack
floor is past them never receives the new events stored under them.

The relay keeps a ledger of what it stored (the highest sequence, and how many messages the
stream should hold). Whenever the client has reconnected (the server may have restarted) it
compares the stream with the ledger before publishing again: a stream that is gone is
created again, a tail that came back shorter is skipped past the highest sequence stored so
consumers receive what follows, and whatever was lost is said in the node's log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from amosflow.bus._publisher import DEFAULT_STREAM

if TYPE_CHECKING:
    from amosflow.bus._publisher import Ack, Bus


@dataclass
class StreamLedger:
    """The relay's account of its stream: the highest sequence stored and the message count."""

    stream: str = DEFAULT_STREAM
    last_seq: int = 0
    messages: int = 0
    known: bool = False  # False until the first check takes the stream as found

    def stored(self, ack: Ack) -> None:
        """Count one acknowledged publish (a duplicate stored nothing new)."""
        if not ack.duplicate:
            self.last_seq = max(self.last_seq, ack.seq)
            self.messages += 1


async def check_stream(bus: Bus, ledger: StreamLedger) -> list[str]:
    """Make the stream whole enough to publish on; return, in words, what was lost or repaired.

    The first check takes the stream as it is (nothing to compare it with).
    """
    name = ledger.stream
    created = await bus.ensure_stream(name)
    state = await bus.stream_state(name)
    said: list[str] = []
    if ledger.known:
        if created and ledger.messages:
            said.append(
                f"stream {name} was gone and is created again: its {ledger.messages} events"
                f" (sequences up to {ledger.last_seq}) are lost"
            )
        elif state.last_seq < ledger.last_seq:
            said.append(
                f"stream {name} came back shorter: events {state.last_seq + 1}-{ledger.last_seq}"
                " are lost"
            )
        elif state.messages < ledger.messages:
            said.append(
                f"stream {name} lost {ledger.messages - state.messages} of its"
                f" {ledger.messages} events (sequences 1-{ledger.last_seq} have gaps)"
            )
        if state.last_seq < ledger.last_seq:
            # Sequences at or below the ledger's would be skipped by consumers already past
            # them: move the stream beyond, dropping the earlier survivors with it.
            await bus.skip_to(name, ledger.last_seq + 1)
            said.append(
                f"stream {name} continues at sequence {ledger.last_seq + 1} so durable"
                f" consumers receive new events; {state.messages} earlier surviving events"
                " were dropped with the skip"
            )
            state = await bus.stream_state(name)
    ledger.known = True
    ledger.last_seq = max(ledger.last_seq, state.last_seq)
    ledger.messages = state.messages
    return said
