"""Who is calling: the identified principal every authorization decision is about."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: A binding to this folder grants its role in every folder.
ALL_FOLDERS = "*"

Via = Literal["session", "token", "oidc", "client", "system"]


@dataclass(frozen=True, slots=True)
class Binding:
    """A role held in one folder (or ``*``), optionally only where a CEL condition holds."""

    role: str
    folder: str = ALL_FOLDERS
    condition: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user or a service account, with its effective bindings.

    ``bindings`` already include those its groups carry; ``scopes`` (from a scoped API token)
    narrows the permissions those bindings give, never widens them.
    """

    id: str
    kind: Literal["user", "service"]
    username: str
    source: str = "local"
    bindings: tuple[Binding, ...] = ()
    groups: tuple[str, ...] = ()
    via: Via = "session"
    token_id: str | None = None
    scopes: frozenset[str] | None = field(default=None)

    @property
    def actor(self) -> str:
        """How the audit trail names this caller, e.g. ``user:alice`` or ``service:ci``."""
        return actor_of(self.kind, self.username)


def actor_of(kind: str, username: str) -> str:
    """``kind:username``, cut to the 200 characters an audit record's actor holds."""
    return f"{kind}:{username}"[:200]


#: The platform acting on its own (schedules, the run watcher); it never comes from a request.
SYSTEM = Principal(
    id="system",
    kind="service",
    username="system",
    bindings=(Binding("administrator"),),
    via="system",
)
