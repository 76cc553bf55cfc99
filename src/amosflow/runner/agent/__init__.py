"""The runner agent: the outbound process that performs steps in another network zone.

It enrolls once (its own key, a CSR and a one-time token), then heartbeats, leases jobs,
performs them with the action modules of its capabilities and reports them, over mutual TLS
to the control plane's runner endpoint only. It carries no control-plane code: no store,
vault, audit trail, catalog, identity, services, API or bus (``tests/runner/agent``).
"""

from amosflow.runner.agent._actions import ACTION_MODULES, WORKER_ONLY, load_actions, misplaced
from amosflow.runner.agent._agent import Agent, serve
from amosflow.runner.agent._identity import RunnerIdentity, enroll, repoint, save_identity
from amosflow.runner.agent._keys import RunnerKey, generate_runner_key, key_pem, make_csr

__all__ = [
    "ACTION_MODULES",
    "WORKER_ONLY",
    "Agent",
    "RunnerIdentity",
    "RunnerKey",
    "enroll",
    "generate_runner_key",
    "key_pem",
    "load_actions",
    "make_csr",
    "misplaced",
    "repoint",
    "save_identity",
    "serve",
]
