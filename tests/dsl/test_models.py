"""The Pydantic models of amos.flow/v1."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from amosflow.dsl import (
    ActionStep,
    Flow,
    ForeachStep,
    IfStep,
    WaitStep,
    iter_steps,
    parse_duration,
    step_index,
)
from tests.dsl.documents import dsl_example, every_step_type, single_step


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration_reads_every_unit(text: str, expected: timedelta) -> None:
    """Each duration unit of DSL.md becomes the matching timedelta."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5x", "1.5s", "-1s", " 5s", "5s ", "${inputs.t}"])
def test_parse_duration_rejects_anything_else(text: str) -> None:
    """A string that is not a plain duration raises ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_duration_rejects_an_overflowing_duration() -> None:
    """A duration too large for a timedelta is a ValueError, not an OverflowError."""
    with pytest.raises(ValueError, match="too large"):
        parse_duration("99999999999999999d")


def test_dsl_example_parses() -> None:
    """The document example at the top of DSL.md is a valid Flow."""
    flow = Flow.model_validate(dsl_example())
    assert flow.name == "invoice-approval"


def test_every_step_type_parses_to_its_class() -> None:
    """Each step type is discriminated into its own class."""
    flow = Flow.model_validate(every_step_type())
    assert [type(step).__name__ for step in flow.steps] == [
        "ActionStep",
        "SetStep",
        "IfStep",
        "SwitchStep",
        "ForeachStep",
        "WhileStep",
        "ParallelStep",
        "TryStep",
        "HumanStep",
        "CallStep",
        "SucceedStep",
    ]


def test_with_keeps_the_raw_json() -> None:
    """An action's with is kept exactly as written, expressions untouched."""
    flow = Flow.model_validate(dsl_example())
    post = flow.steps[1]
    assert isinstance(post, ActionStep)
    assert post.with_["headers"] == {"Authorization": "Bearer ${secrets.erp.token}"}


def test_document_round_trips() -> None:
    """Serialising by alias without nulls gives a document that parses to the same Flow."""
    flow = Flow.model_validate(every_step_type())
    assert Flow.model_validate(flow.to_document()) == flow


def test_serialisation_uses_the_dsl_key_names() -> None:
    """The Python names with_, else_, as_ and finally_ serialise as the DSL keys."""
    text = Flow.model_validate(every_step_type()).model_dump_json(by_alias=True)
    for key in ('"with"', '"else"', '"as"', '"finally"'):
        assert key in text


def test_steps_can_be_built_by_field_name() -> None:
    """Python code may construct steps with the field names and the type default."""
    step = ActionStep(id="echo", action="core.echo", with_={"value": 1})
    assert step.type == "action"
    assert step.with_ == {"value": 1}


def test_models_are_frozen() -> None:
    """A parsed flow cannot be changed in place."""
    flow = Flow.model_validate(dsl_example())
    with pytest.raises(ValidationError):
        flow.name = "other"  # type: ignore[misc]


def test_duration_fields_accept_expressions() -> None:
    """A Duration field holds an expression rendered at run time."""
    step = WaitStep.model_validate({"id": "w", "type": "wait", "duration": "${inputs.delay}"})
    assert step.duration == "${inputs.delay}"


def test_duration_fields_reject_prose() -> None:
    """A Duration field refuses a string that is neither a duration nor an expression."""
    with pytest.raises(ValidationError, match="expected a duration"):
        WaitStep.model_validate({"id": "w", "type": "wait", "duration": "5 minutes"})


def test_wait_needs_exactly_one_of_duration_or_until() -> None:
    """A wait step with both duration and until is invalid."""
    with pytest.raises(ValidationError, match="exactly one"):
        WaitStep(id="w", duration="1s", until="2030-01-01T00:00:00Z")


def test_until_needs_an_offset() -> None:
    """An until time without a UTC offset is not RFC 3339."""
    with pytest.raises(ValidationError, match="RFC 3339"):
        WaitStep(id="w", until="2030-01-01T00:00:00")


def test_foreach_defaults() -> None:
    """A foreach loops as item, one at a time, by default."""
    step = ForeachStep(id="each", items=[1], steps=[])
    assert (step.as_, step.concurrency) == ("item", 1)


def test_foreach_refuses_a_reserved_loop_name() -> None:
    """The loop variable may not shadow a scope name such as inputs."""
    with pytest.raises(ValidationError, match="reserved"):
        ForeachStep.model_validate({"id": "e", "items": [], "as": "inputs", "steps": []})


def test_strings_are_not_coerced_to_numbers() -> None:
    """A quoted number is not an integer, as in the JSON Schema."""
    with pytest.raises(ValidationError):
        Flow.model_validate(
            single_step({"id": "w", "type": "while", "condition": True, "max_iterations": "5"})
        )


def test_iter_steps_yields_pointers_at_any_depth() -> None:
    """iter_steps walks every nested block in document order with its JSON Pointer."""
    flow = Flow.model_validate(every_step_type())
    pointers = [pointer for pointer, _ in iter_steps(flow.steps)]
    assert pointers[2:5] == ["/steps/2", "/steps/2/then/0", "/steps/2/else/0"]
    assert "/steps/3/cases/0/steps/0" in pointers
    assert "/steps/6/branches/1/0" in pointers
    assert "/steps/7/finally/0" in pointers


def test_step_index_maps_ids_to_steps() -> None:
    """step_index finds nested steps by id."""
    flow = Flow.model_validate(every_step_type())
    index = step_index(flow)
    assert isinstance(index["branch"], IfStep)
    assert index["caught"].id == "caught"
    assert len(index) == len(list(iter_steps(flow.steps)))
