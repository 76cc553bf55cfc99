"""What a process needs from its host: child processes, private key files, rate limits.

Small utilities with no knowledge of flows, the store or the network; every part of the
product may use them, the runner agent included.
"""

from amosflow.host._embedded import (
    EmbeddedServer,
    find_binary,
    free_port,
    home_argument,
    port_open,
    serve_until_signalled,
)
from amosflow.host._keyfiles import PRIVATE_MODE, exposure, write_private
from amosflow.host._procs import await_ready, die_with_parent, live_state, spawn, terminate_group
from amosflow.host._ratelimit import MAX_KEYS, RateLimits, TokenBucket

__all__ = [
    "MAX_KEYS",
    "PRIVATE_MODE",
    "EmbeddedServer",
    "RateLimits",
    "TokenBucket",
    "await_ready",
    "die_with_parent",
    "exposure",
    "find_binary",
    "free_port",
    "home_argument",
    "live_state",
    "port_open",
    "serve_until_signalled",
    "spawn",
    "terminate_group",
    "write_private",
]
