"""The amos.flow/v1 DSL: models, JSON Schema, CEL expressions and diagnostics.

Names are imported on first use: a process that needs only canonical JSON (the audit
checkpointer, through the audit chain) does not load the action catalogue, the JSON Schema
and the CEL runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amosflow._lazy import exports

if TYPE_CHECKING:
    from amosflow.dsl._canonical import canonical_json, content_hash
    from amosflow.dsl._models import (
        DSL_VERSION,
        ActionStep,
        CallStep,
        Defaults,
        Duration,
        Expr,
        FailStep,
        Flow,
        ForeachStep,
        HumanStep,
        IfStep,
        ParallelStep,
        Requires,
        RetryPolicy,
        RunnerSelector,
        SetStep,
        Step,
        SucceedStep,
        SwitchCase,
        SwitchStep,
        TryStep,
        WaitStep,
        WhileStep,
        iter_steps,
        parse_duration,
        step_index,
    )
    from amosflow.dsl._schema import flow_json_schema
    from amosflow.dsl._validate import load_flow_text, parse_flow, validate_flow, validate_inputs
    from amosflow.dsl.actions import ActionSpec, all_actions, get_action, validate_with

_HOMES = {
    "canonical_json": "_canonical",
    "content_hash": "_canonical",
    "DSL_VERSION": "_models",
    "ActionStep": "_models",
    "CallStep": "_models",
    "Defaults": "_models",
    "Duration": "_models",
    "Expr": "_models",
    "FailStep": "_models",
    "Flow": "_models",
    "ForeachStep": "_models",
    "HumanStep": "_models",
    "IfStep": "_models",
    "ParallelStep": "_models",
    "Requires": "_models",
    "RetryPolicy": "_models",
    "RunnerSelector": "_models",
    "SetStep": "_models",
    "Step": "_models",
    "SucceedStep": "_models",
    "SwitchCase": "_models",
    "SwitchStep": "_models",
    "TryStep": "_models",
    "WaitStep": "_models",
    "WhileStep": "_models",
    "iter_steps": "_models",
    "parse_duration": "_models",
    "step_index": "_models",
    "flow_json_schema": "_schema",
    "load_flow_text": "_validate",
    "parse_flow": "_validate",
    "validate_flow": "_validate",
    "validate_inputs": "_validate",
    "ActionSpec": "actions",
    "all_actions": "actions",
    "get_action": "actions",
    "validate_with": "actions",
}


__getattr__ = exports(__name__, _HOMES, globals())


__all__ = [
    "DSL_VERSION",
    "ActionSpec",
    "ActionStep",
    "CallStep",
    "Defaults",
    "Duration",
    "Expr",
    "FailStep",
    "Flow",
    "ForeachStep",
    "HumanStep",
    "IfStep",
    "ParallelStep",
    "Requires",
    "RetryPolicy",
    "RunnerSelector",
    "SetStep",
    "Step",
    "SucceedStep",
    "SwitchCase",
    "SwitchStep",
    "TryStep",
    "WaitStep",
    "WhileStep",
    "all_actions",
    "canonical_json",
    "content_hash",
    "flow_json_schema",
    "get_action",
    "iter_steps",
    "load_flow_text",
    "parse_duration",
    "parse_flow",
    "step_index",
    "validate_flow",
    "validate_inputs",
    "validate_with",
]
