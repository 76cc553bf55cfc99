"""The JSON Schema (2020-12) of amos.flow/v1, generated from the models and the registry."""

from __future__ import annotations

import copy
from typing import Any

from amosflow.dsl._models import STEP_CLASSES, Flow
from amosflow.dsl.actions import ActionSpec, all_actions

__all__ = ["SCHEMA_ID", "flow_json_schema"]

SCHEMA_ID = "urn:amosflow:schema:amos.flow/v1"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _with_def_name(spec: ActionSpec) -> str:
    return "with." + spec.name


def _add_action(defs: dict[str, Any], spec: ActionSpec) -> dict[str, Any]:
    """Put an action's ``with`` schema into ``defs`` and return the rule binding it to the name."""
    schema = spec.with_model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        if defs.setdefault(name, definition) != definition:
            raise ValueError(f"two schemas are named {name!r}; rename one with-model")
    defs[_with_def_name(spec)] = schema
    then: dict[str, Any] = {"properties": {"with": {"$ref": f"#/$defs/{_with_def_name(spec)}"}}}
    if schema.get("required"):
        then["required"] = ["with"]
    return {
        "if": {"properties": {"action": {"const": spec.name}}, "required": ["action"]},
        "then": then,
    }


def flow_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of a whole flow document, each action's ``with`` included."""
    generated = copy.deepcopy(Flow.model_json_schema(by_alias=True))
    defs: dict[str, Any] = generated.setdefault("$defs", {})
    for cls in STEP_CLASSES.values():
        step = defs[cls.__name__]
        # The Python default of ``type`` is a convenience; in a document the key is required.
        step["required"] = ["type", *step.get("required", [])]
    actions = all_actions()
    action_step = defs["ActionStep"]
    action_step["properties"]["action"] = {
        "enum": [spec.name for spec in actions],
        "description": "A registered action name.",
    }
    action_step["allOf"] = [_add_action(defs, spec) for spec in actions]
    return {
        "$schema": _DIALECT,
        "$id": SCHEMA_ID,
        "title": "AMOS FLOW document (amos.flow/v1)",
        **{key: value for key, value in generated.items() if key != "title"},
    }
