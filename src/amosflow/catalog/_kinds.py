"""The registry of catalog kinds: where each kind lives in the repository and how it is checked."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

from amosflow.dsl import canonical_json, parse_flow
from amosflow.errors import Diagnostic, NotFoundError, ValidationFailedError

__all__ = [
    "FOLDER_PATTERN",
    "NAME_PATTERN",
    "Validator",
    "check_document",
    "kind_path",
    "object_path",
    "register_kind",
    "registered_kinds",
    "render_document",
]

# The flow-name rule of the DSL, used for every kind so a name is always a safe file name.
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
# The folder-name rule of identity (a folder is a directory of each kind in the repository).
FOLDER_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
_FOLDER = re.compile(FOLDER_PATTERN)
_KIND = re.compile(r"^[a-z][a-z0-9-]{0,31}$")

Validator = Callable[[str, dict[str, Any]], None]
"""Checks a document saved under a name; raises ValidationFailedError with every problem."""

_validators: dict[str, Validator] = {}
_lock = threading.Lock()


def register_kind(kind: str, validator: Validator) -> None:
    """Register (or replace) the validator of a kind so its module owns its own contract."""
    if not _KIND.match(kind):
        raise ValueError(f"catalog kind {kind!r} must match {_KIND.pattern}")
    with _lock:
        _validators[kind] = validator


def registered_kinds() -> list[str]:
    """Return the kinds the catalog accepts, sorted, so callers can list them."""
    with _lock:
        return sorted(_validators)


def _validator(kind: str) -> Validator:
    with _lock:
        validator = _validators.get(kind)
    if validator is None:
        raise NotFoundError(
            f"unknown catalog kind {kind!r} (known: {', '.join(registered_kinds())})"
        )
    return validator


def object_path(kind: str, folder: str, name: str) -> str:
    """Return the repository path of an object, ``<kind>/<folder>/<name>.json``.

    Every object lives in its folder's own namespace: the same name in two folders is two
    objects, and no path of one folder can be spelled from another. Unknown kinds, unsafe
    names and unsafe folders are refused.
    """
    kind_path(kind)
    if not isinstance(folder, str) or not _FOLDER.match(folder) or folder in {".", ".."}:
        raise NotFoundError(f"no folder {folder!r}: folder names must match {FOLDER_PATTERN}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise NotFoundError(f"no {kind} named {name!r}: names must match {NAME_PATTERN}")
    return f"{kind}/{folder}/{name}.json"


def kind_path(kind: str) -> str:
    """Return the directory of a kind in the repository, refusing unknown kinds."""
    _validator(kind)
    return kind


def render_document(document: Any) -> str:
    """Serialise a document as the catalog stores it: sorted keys, 2-space indent, final newline."""
    if not isinstance(document, dict):
        raise ValidationFailedError([Diagnostic("", "expected a JSON object")])
    try:
        canonical_json(document)  # refuses what RFC 8785 cannot represent (NaN, huge ints …)
        text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationFailedError([Diagnostic("", f"not a JSON document: {exc}")]) from None
    return text + "\n"


def check_document(kind: str, name: str, document: dict[str, Any]) -> None:
    """Run the kind's validator, after checking the name is a valid object name."""
    validator = _validator(kind)
    if not _NAME.match(name):
        raise ValidationFailedError([Diagnostic("", f"name {name!r} must match {NAME_PATTERN}")])
    validator(name, document)


def _validate_flow(name: str, document: dict[str, Any]) -> None:
    flow = parse_flow(document)
    if flow.name != name:
        message = f"must equal the catalog name {name!r}, got {flow.name!r}"
        raise ValidationFailedError([Diagnostic("/name", message)])


def _accept_object(_name: str, _document: dict[str, Any]) -> None:
    """Accept any JSON object until the triggers module registers its model."""


register_kind("flows", _validate_flow)
register_kind("triggers", _accept_object)
