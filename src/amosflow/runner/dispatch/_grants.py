"""What a runner may be granted, and the one answer every refused runner credential gets.

Capabilities and zones are checked here for tokens, registrations and heartbeats alike; a
zone goes into certificate URIs, so its shape is strict.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from amosflow.errors import AuthenticationError, Diagnostic, ValidationFailedError

if TYPE_CHECKING:
    from collections.abc import Iterable

#: What a runner can be enrolled for; each action module names the one it needs.
CAPABILITIES = frozenset(
    {"core", "http", "browser", "file", "sql", "email", "sandbox", "document", "llm"}
)
#: A zone name: it goes into certificate URIs (``urn:amosflow:runner:<id>:<zone>``), so no ``:``.
ZONE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
#: The answer to every refused runner credential; ``reason`` says why, for the audit only.
RUNNER_REFUSED = "runner credentials refused"
MAX_NAME_LENGTH = 200

RunnerStatus = Literal["active", "draining", "revoked"]


class RunnerRefused(AuthenticationError):  # noqa: N818 - a refusal, named like LoginRefused
    """A runner credential (enrollment token, certificate, identity) was refused.

    The message is the same for every cause so a caller learns nothing from it; ``reason``
    (``malformed``, ``unknown``, ``used``, ``expired``, ``not_yet_valid``, ``wrong_ca``,
    ``usage``, ``revoked``, ``mismatch``) is the truth, for the audit trail.
    """

    def __init__(self, reason: str, *, runner_id: str | None = None) -> None:
        self.reason = reason
        self.runner_id = runner_id
        super().__init__(RUNNER_REFUSED)


def aware(now: datetime) -> datetime:
    """``now`` in UTC; a naive datetime is a programming error."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("pass a timezone-aware datetime")
    return now.astimezone(UTC)


def positive(ttl: timedelta, name: str) -> timedelta:
    """``ttl`` when it is more than zero, else ValueError naming it."""
    if ttl <= timedelta(0):
        raise ValueError(f"{name} must be positive")
    return ttl


def validate_zone(zone: str, pointer: str = "/zone") -> str:
    """Return ``zone`` when it is a zone name, else raise ValidationFailedError."""
    if not ZONE.fullmatch(zone):
        raise ValidationFailedError(
            [
                Diagnostic(
                    pointer,
                    f"{zone!r} is not a zone name: 1 to 100 lower-case letters, digits or "
                    ". _ -, starting with a letter or digit",
                )
            ]
        )
    return zone


def validate_capabilities(capabilities: Iterable[str], pointer: str = "/capabilities") -> list[str]:
    """Return the capabilities sorted and without repeats; unknown or none at all is invalid."""
    found = list(capabilities)
    problems = [
        Diagnostic(f"{pointer}/{index}", f"unknown capability {value!r}")
        for index, value in enumerate(found)
        if value not in CAPABILITIES
    ]
    if not found:
        problems.append(
            Diagnostic(pointer, f"name at least one of {', '.join(sorted(CAPABILITIES))}")
        )
    if problems:
        raise ValidationFailedError(problems)
    return sorted(set(found))
