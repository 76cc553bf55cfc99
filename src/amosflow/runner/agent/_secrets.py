"""The runner's secret slot filler: what the control plane delivered for a step, else the env.

A runner has no vault. For each step it asks the control plane for exactly the secrets the
step refers to; a name the control plane does not hold falls back to the runner's own
``AMOS_SECRET_<NAME>`` binding (``amosflow.config.env_secret``), which is all a runner
without a control-plane vault has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amosflow.config import env_secret

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def step_resolver(delivered: Mapping[str, str]) -> Callable[[str, str, str], str]:
    """Resolve from what the control plane delivered for this step, else the runner's env."""

    def resolve(name: str, run_id: str, step: str) -> str:
        value = delivered.get(name)
        return value if value is not None else env_secret(name, run_id, step)

    return resolve
