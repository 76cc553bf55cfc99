"""The public surface of amosflow.dsl."""

from __future__ import annotations

import amosflow.dsl

EXPECTED = {
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
}


def test_all_is_pinned() -> None:
    """__all__ lists exactly the agreed public names."""
    assert set(amosflow.dsl.__all__) == EXPECTED


def test_all_has_no_duplicates() -> None:
    """Each public name is listed once."""
    assert len(amosflow.dsl.__all__) == len(set(amosflow.dsl.__all__))


def test_every_public_name_is_importable() -> None:
    """Every name in __all__ is an attribute of the package."""
    missing = [name for name in amosflow.dsl.__all__ if not hasattr(amosflow.dsl, name)]
    assert missing == []
