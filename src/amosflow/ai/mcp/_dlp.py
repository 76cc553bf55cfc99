"""Outbound DLP: refuse tool arguments that carry a secret in use or match a configured pattern.

A finding names where it is (a JSON Pointer into the arguments) and which rule found it,
never the value: findings go to the audit trail and into the step's error.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

# A shorter secret would match ordinary text by chance and block harmless calls; secrets
# that short are not worth protecting this way (they are guessable anyway).
MIN_SECRET_CHARS = 4


@dataclass(frozen=True, slots=True)
class Finding:
    """One hit: where in the arguments, and which rule (`secret` or `pattern #n`)."""

    pointer: str
    rule: str

    def __str__(self) -> str:
        return f"{self.rule} at {self.pointer or '/'}"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _strings(value: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON value (keys included) with its JSON Pointer."""
    if isinstance(value, str):
        yield pointer, value
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{pointer}/{_escape(str(key))}"
            yield child, str(key)
            yield from _strings(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{pointer}/{index}")


class OutboundDlp:
    """The checks for one step: the secret values it resolved and its servers' patterns."""

    def __init__(self, secrets_in_use: Iterable[str], patterns: Iterable[str] = ()) -> None:
        needles: set[str] = set()
        for secret in secrets_in_use:
            if len(secret) >= MIN_SECRET_CHARS:
                # The plain value and its base64 forms: encoding is the cheapest disguise.
                needles.add(secret)
                needles.add(base64.b64encode(secret.encode()).decode().rstrip("="))
                needles.add(base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="))
        self._needles = sorted(needles)
        self._patterns = [re.compile(p) for p in patterns]

    def scan(self, arguments: Any, extra_patterns: Iterable[str] = ()) -> list[Finding]:
        """Every finding in ``arguments``; empty means the call may go out."""
        patterns = [*self._patterns, *(re.compile(p) for p in extra_patterns)]
        found: list[Finding] = []
        for pointer, text in _strings(arguments):
            if any(needle in text for needle in self._needles):
                found.append(Finding(pointer, "a secret in use"))
            found.extend(
                Finding(pointer, f"pattern #{index + 1}")
                for index, pattern in enumerate(patterns)
                if pattern.search(text)
            )
        return found
