"""Where secret values come from until the vault lands: ``AMOS_SECRET_<NAME>`` variables.

Only the worker that runs an action resolves a value; the control plane only asks whether a
binding exists, so it can refuse a run that would need a missing secret.
"""

from __future__ import annotations

import os

from amosflow.errors import ActionError


def env_name(name: str) -> str:
    """The environment variable that binds secret ``name`` (`erp.token` → AMOS_SECRET_ERP_TOKEN)."""
    return "AMOS_SECRET_" + "".join(c if c.isalnum() else "_" for c in name).upper()


def is_bound(name: str) -> bool:
    """Tell whether secret ``name`` has a value, without reading it."""
    return env_name(name) in os.environ


def bound_names(names: list[str]) -> set[str]:
    """The subset of ``names`` that have a binding."""
    return {name for name in names if is_bound(name)}


def resolve(name: str) -> str:
    """Read the value of secret ``name``; an unbound secret fails at once, without retry."""
    value = os.environ.get(env_name(name))
    if value is None:
        raise ActionError(f"secret {name!r} is not bound", type_="SecretMissing", retryable=False)
    return value
