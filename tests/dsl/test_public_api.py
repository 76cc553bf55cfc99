"""The public surface of amosflow.dsl."""

from __future__ import annotations

from pathlib import Path

import amosflow.dsl
import amosflow.dsl.actions
import amosflow.dsl.expr

EXPECTED = {
    "ActionSpec",
    "ActionStep",
    "CallStep",
    "DSL_VERSION",
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


EXPR_EXPECTED = {
    "ALLOWED_FUNCTIONS",
    "MAX_COMPREHENSION_DEPTH",
    "MAX_COST",
    "MAX_EXPRESSION_LENGTH",
    "MAX_NESTING_DEPTH",
    "MAX_VALUE_BYTES",
    "SecretRef",
    "SecretSlot",
    "Template",
    "apply_secret_slots",
    "compile_template",
    "evaluate",
    "evaluate_condition",
    "has_expression",
    "iter_templates",
    "render",
    "render_with_secrets",
}

ACTIONS_EXPECTED = {
    "BUILTIN_MODULES",
    "INLINE_READ_BYTES",
    "MAX_READ_BYTES",
    "OUTPUT_CAP_BYTES",
    "ActionSpec",
    "AgentRunWith",
    "BrowserClick",
    "BrowserCommand",
    "BrowserExtract",
    "BrowserFill",
    "BrowserGoto",
    "BrowserRunWith",
    "BrowserScreenshot",
    "BrowserSelect",
    "BrowserWaitFor",
    "Duration",
    "EchoWith",
    "Expr",
    "LlmGenerateWith",
    "WithModel",
    "all_actions",
    "bounded_timeout",
    "file_mode",
    "get_action",
    "path_problem",
    "register",
    "validate_with",
}


def test_expr_all_is_pinned() -> None:
    """amosflow.dsl.expr exports exactly the agreed names, each importable."""
    assert set(amosflow.dsl.expr.__all__) == EXPR_EXPECTED
    assert all(hasattr(amosflow.dsl.expr, name) for name in amosflow.dsl.expr.__all__)


def test_actions_all_is_pinned() -> None:
    """amosflow.dsl.actions exports exactly the agreed names, each importable."""
    assert set(amosflow.dsl.actions.__all__) == ACTIONS_EXPECTED
    assert all(hasattr(amosflow.dsl.actions, name) for name in amosflow.dsl.actions.__all__)


def test_every_dsl_module_is_private() -> None:
    """Each module file in the DSL is private; only packages are public (one packaging style)."""
    root = Path(amosflow.dsl.__file__).parent
    public = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "__init__.py" and not path.name.startswith("_")
    ]
    assert public == []
