"""Property tests: no input makes validation raise anything but its own error, and every
problem it reports is located by a JSON Pointer (RFC 6901) that resolves in the document."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
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


# RFC 6901: "" or a run of "/token", where "~" appears only as the escapes "~0" and "~1".
POINTER = re.compile(r"(/([^~/]|~[01])*)*")
ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def pointer_resolves(document: Any, pointer: str) -> bool:
    """Whether ``pointer`` is well formed and names a value of ``document``.

    A missing member may be named by the last token alone (a required key that is absent):
    then everything before it must resolve to an object or array.
    """
    if POINTER.fullmatch(pointer) is None:
        return False
    tokens = [token.replace("~1", "/").replace("~0", "~") for token in pointer.split("/")[1:]]
    value = document
    for position, token in enumerate(tokens):
        last = position == len(tokens) - 1
        if isinstance(value, dict):
            if token not in value:
                return last
            value = value[token]
        elif isinstance(value, list):
            if ARRAY_INDEX.fullmatch(token) is None:
                return False
            if int(token) >= len(value):
                return last
            value = value[int(token)]
        else:
            return False
    return True


def assert_pointers(document: Any, found: list[Diagnostic]) -> None:
    """Every diagnostic has a message and a pointer that resolves in ``document``."""
    for item in found:
        assert isinstance(item.pointer, str), item
        assert item.message, item
        assert pointer_resolves(document, item.pointer), f"{item.pointer!r} ({item.message})"


def assert_contract(document: Any) -> None:
    """validate_flow returns located diagnostics and parse_flow raises only ValidationFailedError."""
    found = validate_flow(document)
    assert all(isinstance(item, Diagnostic) for item in found)
    assert_pointers(document, found)
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


@SETTINGS
@given(base_documents, st.data(), st.lists(json_values, min_size=1, max_size=4))
def test_every_rejection_is_located(
    document: dict[str, Any], data: st.DataObject, values: list[Any]
) -> None:
    """Several random changes at once: a rejected flow names each problem by a pointer."""
    for value in values:
        container = data.draw(st.sampled_from(containers(document)))
        if container:
            slots = list(container.keys() if isinstance(container, dict) else range(len(container)))
            container[data.draw(st.sampled_from(slots))] = value
    found = validate_flow(document)
    assert_pointers(document, found)
    if found:
        with pytest.raises(ValidationFailedError) as caught:
            parse_flow(document)
        assert caught.value.diagnostics == sorted(found, key=lambda d: (d.pointer, d.message))


def test_pointer_check_can_fail() -> None:
    """The pointer check itself turns down what RFC 6901 or the document does not allow."""
    document = {"steps": [{"id": "a", "with": {"a/b": 1, "m~n": 2}}]}
    assert pointer_resolves(document, "")
    assert pointer_resolves(document, "/steps/0/with/a~1b")
    assert pointer_resolves(document, "/steps/0/with/m~0n")
    assert pointer_resolves(document, "/steps/0/type")  # a missing key, named last
    assert not pointer_resolves(document, "steps")  # no leading slash
    assert not pointer_resolves(document, "/steps/0/with/m~n")  # a bare "~"
    assert not pointer_resolves(document, "/steps/01")  # not an array index
    assert not pointer_resolves(document, "/steps/3/id")  # past the end, then deeper
    assert not pointer_resolves(document, "/nothing/here")
    assert not pointer_resolves(document, "/steps/0/id/x")  # into a string
