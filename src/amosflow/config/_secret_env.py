"""Secrets bound by the host's environment: ``AMOS_SECRET_<NAME>``.

A worker's or runner's own settings, the same for every folder's runs; the vault holds a
folder's secrets. Kept here, with the other environment settings, so that the runner agent
can read them without loading the vault.
"""

from __future__ import annotations

import os

from amosflow.errors import ActionError


def env_secret_name(name: str) -> str:
    """The environment variable that binds secret ``name`` (`erp.token` → AMOS_SECRET_ERP_TOKEN)."""
    return "AMOS_SECRET_" + "".join(c if c.isalnum() else "_" for c in name).upper()


def env_secret_bound(name: str) -> bool:
    """Tell whether secret ``name`` has an environment binding, without reading it."""
    return env_secret_name(name) in os.environ


def env_secret(name: str, run_id: str = "", step: str = "") -> str:
    """Read secret ``name`` from the environment; unbound fails at once, without retry.

    Has the shape of a resolver (``run_id`` and ``step`` are not needed: the environment is
    the same for every run).
    """
    del run_id, step
    value = os.environ.get(env_secret_name(name))
    if value is None:
        raise ActionError(f"secret {name!r} is not bound", type_="SecretMissing", retryable=False)
    return value
