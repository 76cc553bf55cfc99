"""Package names resolved on first use (PEP 562), for packages whose parts are heavy.

A package lists where each public name lives; importing the package costs nothing, and a
name's module is imported when the name is first read. Long-lived processes that need one
light part of a package (the supervisor starting the embedded NATS server, the checkpointer
hashing canonical JSON) then do not carry the rest (decision 0069).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def exports(
    package: str,
    homes: Mapping[str, str],
    namespace: dict[str, Any],
    *,
    modules: Mapping[str, str] | None = None,
) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``homes`` maps a name to its submodule.

    ``modules`` maps names that are submodules themselves (``bus.events``). A resolved name
    is stored in ``namespace`` (the package's globals), so later reads skip the function.
    """
    submodules = dict(modules or {})

    def __getattr__(name: str) -> Any:  # noqa: N807 - it is the package's module __getattr__
        if name in submodules:
            value = importlib.import_module(f"{package}.{submodules[name]}")
        elif name in homes:
            value = getattr(importlib.import_module(f"{package}.{homes[name]}"), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    return __getattr__
