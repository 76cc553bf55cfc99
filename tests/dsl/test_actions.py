"""The action registry and the typed with of the built-in actions."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from amosflow.dsl import all_actions, get_action, validate_with
from amosflow.dsl.actions import ActionSpec, register
from amosflow.errors import UnknownActionError


def test_builtin_actions_are_registered_in_name_order() -> None:
    """Importing the package registers the core and http actions, sorted by name."""
    names = [spec.name for spec in all_actions()]
    assert names == sorted(names)
    assert {"core.echo", "core.sleep", "http.request"} <= set(names)


def test_get_action_returns_the_spec() -> None:
    """A registered action's spec names its capability."""
    assert get_action("http.request").capability == "http"


def test_echo_runs_locally() -> None:
    """core.echo needs no runner."""
    assert get_action("core.echo").local


def test_unknown_action_raises() -> None:
    """Asking for an unregistered action raises UnknownActionError."""
    with pytest.raises(UnknownActionError, match="nope"):
        get_action("nope")


def test_registering_another_spec_under_a_taken_name_fails() -> None:
    """Two different specs cannot share a name."""
    spec = ActionSpec("core.echo", "core", BaseModel, "impostor")
    with pytest.raises(ValueError, match="already registered"):
        register(spec)


def test_http_defaults() -> None:
    """http.request defaults to GET, no headers, any status and no redirects followed."""
    request = validate_with("http.request", {"url": "http://x"})
    assert request.model_dump() == {
        "method": "GET",
        "url": "http://x",
        "headers": {},
        "query": {},
        "json_": None,
        "body": None,
        "timeout": None,
        "expect": None,
        "follow_redirects": False,
    }


def test_typed_fields_accept_expressions_before_rendering() -> None:
    """A typed with field may hold an expression until the run renders it."""
    model = get_action("http.request").with_model
    parsed = model.model_validate({"url": "u", "expect": "${inputs.codes}", "method": "${m}"})
    assert parsed.model_dump()["expect"] == "${inputs.codes}"


def test_list_items_accept_expressions_before_rendering() -> None:
    """An item of a typed list may be an expression."""
    model = get_action("http.request").with_model
    parsed = model.model_validate({"url": "u", "expect": [200, "${inputs.code}"]})
    assert parsed.model_dump()["expect"] == [200, "${inputs.code}"]


def test_validate_with_refuses_a_leftover_expression() -> None:
    """After rendering, an expression in a typed field is an error."""
    with pytest.raises(ValidationError, match="expect"):
        validate_with("http.request", {"url": "u", "expect": "${inputs.codes}"})


def test_validate_with_refuses_an_expression_duration() -> None:
    """After rendering, a duration must be a real duration."""
    with pytest.raises(ValidationError, match="duration"):
        validate_with("core.sleep", {"duration": "${x}"})


def test_json_and_body_are_mutually_exclusive() -> None:
    """http.request takes json or body, never both."""
    with pytest.raises(ValidationError, match="mutually exclusive"):
        validate_with("http.request", {"url": "u", "json": {}, "body": "x"})


def test_echo_requires_a_value() -> None:
    """core.echo's value is required."""
    with pytest.raises(ValidationError, match="value"):
        validate_with("core.echo", {})


def test_echo_value_may_be_null() -> None:
    """core.echo echoes null like any other value."""
    assert validate_with("core.echo", {"value": None}).model_dump() == {"value": None}


def test_validate_with_of_an_unknown_action_raises() -> None:
    """validate_with names an unknown action the same way get_action does."""
    with pytest.raises(UnknownActionError):
        validate_with("nope.nope", {})
