"""Reading flow documents and run inputs from files, with pointer-named errors."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from amosflow.dsl import CallStep, Flow, iter_steps, load_flow_text
from amosflow.errors import Diagnostic, ValidationFailedError

if TYPE_CHECKING:
    from pathlib import Path


def read_flow(path: Path) -> tuple[Flow, dict[str, Any]]:
    """Load and fully validate a flow file; returns the model and the raw document."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValidationFailedError(
            [Diagnostic("", f"cannot read {path}: {err.strerror}")]
        ) from err
    flow = load_flow_text(text, str(path))
    return flow, json.loads(text)


def read_inputs(inline: str | None, file: Path | None) -> dict[str, Any]:
    """Parse run inputs given inline or as a file; they must be a JSON object."""
    if inline is not None and file is not None:
        raise ValidationFailedError(
            [Diagnostic("/inputs", "give --input or --input-file, not both")]
        )
    if file is not None:
        try:
            inline = file.read_text(encoding="utf-8")
        except OSError as err:
            raise ValidationFailedError(
                [Diagnostic("/inputs", f"cannot read {file}: {err.strerror}")]
            ) from err
    if inline is None:
        return {}
    try:
        value = json.loads(inline)
    except json.JSONDecodeError as err:
        raise ValidationFailedError(
            [Diagnostic("/inputs", f"not JSON: {err.msg} at line {err.lineno} column {err.colno}")]
        ) from None
    if not isinstance(value, dict):
        raise ValidationFailedError([Diagnostic("/inputs", "expected a JSON object")])
    return value


def resolve_library(flow: Flow, directory: Path) -> dict[str, dict[str, Any]]:
    """Find every flow a `call` step reaches, by name, among the JSON files of ``directory``.

    Until the catalog exists, the directory of the flow file is its catalog; the documents
    found are pinned into the run's input so the run never reads a file.
    """
    index: dict[str, dict[str, Any]] = {}
    for candidate in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("name"), str):
            index.setdefault(doc["name"], doc)
    library: dict[str, dict[str, Any]] = {}
    pending: list[Flow] = [flow]
    problems: list[Diagnostic] = []
    while pending:
        current = pending.pop()
        for pointer, step in iter_steps(current.steps):
            if not isinstance(step, CallStep) or step.flow in library:
                continue
            doc = index.get(step.flow.split("@", 1)[0])
            if doc is None:
                problems.append(
                    Diagnostic(f"{pointer}/flow", f"flow {step.flow!r} not found in {directory}")
                )
                continue
            library[step.flow] = doc
            pending.append(load_flow_text(json.dumps(doc), step.flow))
    if problems:
        raise ValidationFailedError(problems)
    return library
