"""Property tests: no input makes validation raise anything but its own error."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amosflow.dsl import Flow, parse_flow, validate_flow
from amosflow.errors import Diagnostic, ValidationFailedError
from tests.dsl.documents import dsl_example, every_step_type

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["action", "if", "while", "core.echo", "${inputs.x}", "1s", "amos.flow/v1"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
keys = st.text(max_size=10) | st.sampled_from(["id", "type", "steps", "with", "then", "as"])
expression_text = st.text(max_size=30).map(lambda text: "${" + text + "}") | st.text(max_size=30)


def containers(value: Any) -> list[Any]:
    """Every dict and list inside a JSON value, the value itself first."""
    found = [value] if isinstance(value, dict | list) else []
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    )
    for child in children:
        found.extend(containers(child))
    return found


def string_slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) whose value is a string."""
    slots: list[tuple[Any, Any]] = []
    for container in containers(value):
        items = container.items() if isinstance(container, dict) else enumerate(container)
        slots.extend((container, key) for key, item in items if isinstance(item, str))
    return slots


def assert_contract(document: Any) -> None:
    """validate_flow returns diagnostics and parse_flow raises only ValidationFailedError."""
    found = validate_flow(document)
    assert all(isinstance(item, Diagnostic) for item in found)
    raised: list[Diagnostic] = []
    try:
        flow = parse_flow(document)
    except ValidationFailedError as exc:
        raised = exc.diagnostics
    else:
        assert isinstance(flow, Flow)
    assert raised == sorted(found, key=lambda item: (item.pointer, item.message))


base_documents = st.sampled_from([dsl_example(), every_step_type()]).map(copy.deepcopy)


@SETTINGS
@given(json_values)
def test_arbitrary_json_never_raises(document: Any) -> None:
    """Any JSON value gives diagnostics, never an unexpected exception."""
    assert_contract(document)


@SETTINGS
@given(st.dictionaries(keys, json_values, max_size=8))
def test_arbitrary_objects_never_raise(document: dict[str, Any]) -> None:
    """Any JSON object gives diagnostics, never an unexpected exception."""
    assert_contract({"dsl": "amos.flow/v1", "name": "x", **document})


@SETTINGS
@given(base_documents, st.data())
def test_dropping_a_key_never_raises(document: dict[str, Any], data: st.DataObject) -> None:
    """Removing any key or list item anywhere in a valid flow never raises."""
    container = data.draw(st.sampled_from(containers(document)))
    if container:
        key = data.draw(
            st.sampled_from(
                list(container.keys() if isinstance(container, dict) else range(len(container)))
            )
        )
        del container[key]
    assert_contract(document)


@SETTINGS
@given(base_documents, st.data(), json_values)
def test_changing_a_value_never_raises(
    document: dict[str, Any], data: st.DataObject, value: Any
) -> None:
    """Replacing any value anywhere in a valid flow never raises."""
    container = data.draw(st.sampled_from(containers(document)))
    if container:
        key = data.draw(
            st.sampled_from(
                list(container.keys() if isinstance(container, dict) else range(len(container)))
            )
        )
        container[key] = value
    assert_contract(document)


@SETTINGS
@given(base_documents, st.data(), keys, json_values)
def test_inserting_a_key_never_raises(
    document: dict[str, Any], data: st.DataObject, key: str, value: Any
) -> None:
    """Adding a key to any object in a valid flow never raises."""
    objects = [item for item in containers(document) if isinstance(item, dict)]
    data.draw(st.sampled_from(objects))[key] = value
    assert_contract(document)


@SETTINGS
@given(base_documents, st.data(), expression_text)
def test_random_expressions_never_raise(
    document: dict[str, Any], data: st.DataObject, text: str
) -> None:
    """Random text in any string position, expression or not, never raises."""
    container, key = data.draw(st.sampled_from(string_slots(document)))
    container[key] = text
    assert_contract(document)
