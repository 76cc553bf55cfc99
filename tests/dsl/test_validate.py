"""Flow validation: every problem reported at the JSON Pointer of the offending value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from amosflow.dsl import Flow, load_flow_text, parse_flow, validate_flow, validate_inputs
from amosflow.errors import Diagnostic, ValidationFailedError
from tests.dsl.documents import CHECK_EXAMPLE, dsl_example, every_step_type, single_step

ECHO = {"type": "action", "action": "core.echo", "with": {"value": 1}}
HTTP = {"id": "x", "type": "action", "action": "http.request"}


def pointers(document: Any) -> list[str]:
    return [d.pointer for d in validate_flow(document)]


def only(document: Any) -> Diagnostic:
    found = validate_flow(document)
    assert len(found) == 1, found
    return found[0]


def test_dsl_example_is_valid() -> None:
    """The document example of DSL.md has no diagnostics."""
    assert validate_flow(dsl_example()) == []


def test_every_step_type_is_valid() -> None:
    """A document using every step type has no diagnostics."""
    assert validate_flow(every_step_type()) == []


def test_check_example_is_valid() -> None:
    """The check example of DSL.md compiles with output in scope."""
    step = {"id": "get", "type": "action", "action": "http.request", "with": {"url": "u"}}
    assert validate_flow(single_step({**step, "check": CHECK_EXAMPLE})) == []


def test_a_document_parsed_again_is_the_same_flow_until_it_changes() -> None:
    """A repeated document is answered from memory; any change is parsed and checked anew."""
    first = parse_flow(dsl_example())
    assert parse_flow(dsl_example()) is first
    changed = dsl_example()
    changed["description"] = "another"
    assert parse_flow(changed) is not first
    assert parse_flow(changed).description == "another"
    broken = dsl_example()
    broken["steps"] = []
    for _ in range(2):  # a refusal is never remembered as a flow
        with pytest.raises(ValidationFailedError):
            parse_flow(broken)


def test_a_document_that_is_not_json_is_refused_with_diagnostics() -> None:
    """Python values JSON has no text for are a validation error, not a TypeError."""
    document = dsl_example()
    document["steps"] = {object()}
    with pytest.raises(ValidationFailedError) as refused:
        parse_flow(document)
    assert [d.pointer for d in refused.value.diagnostics] == ["/steps"]


def test_a_document_must_be_an_object() -> None:
    """A JSON array is reported at the root pointer."""
    assert only([1]).pointer == ""


def test_wrong_dsl_version() -> None:
    """Another dsl value is reported at /dsl naming the expected one."""
    document = {**dsl_example(), "dsl": "amos.flow/v2"}
    assert only(document) == Diagnostic("/dsl", "expected 'amos.flow/v1'")


def test_missing_key_is_reported_on_its_object() -> None:
    """A missing required key is reported at the object that lacks it."""
    document = dsl_example()
    del document["name"]
    assert only(document) == Diagnostic("", "missing required key 'name'")


def test_unknown_top_level_key() -> None:
    """An unknown key is reported at its own pointer with the allowed keys."""
    found = only({**dsl_example(), "extra": 1})
    assert found.pointer == "/extra"
    assert found.message.startswith("unknown key 'extra'; expected one of: dsl, name")


def test_unknown_key_in_a_nested_step() -> None:
    """A discriminator tag never appears in the pointer of a nested step's key."""
    document = dsl_example()
    document["steps"][0]["then"][0]["bogus"] = True
    assert pointers(document) == ["/steps/0/then/0/bogus"]


def test_unknown_step_type() -> None:
    """An unknown type is one diagnostic at /steps/N/type listing the valid types."""
    document = dsl_example()
    document["steps"].append({"id": "x", "type": "teleport"})
    found = only(document)
    assert found.pointer == "/steps/2/type"
    assert "'teleport'" in found.message
    assert "action, call, fail, foreach" in found.message


def test_missing_step_type() -> None:
    """A step without a type is reported at the step, listing the valid types."""
    found = only(single_step({"id": "x"}))
    assert found.pointer == "/steps/0"
    assert "missing required key 'type'" in found.message


def test_step_that_is_not_an_object() -> None:
    """A step that is a string is reported at its position."""
    assert only(single_step("echo")).pointer == "/steps/0"  # type: ignore[arg-type]


def test_unknown_action() -> None:
    """An unknown action is one diagnostic at /steps/N/action listing the valid actions."""
    found = only(single_step({"id": "x", "type": "action", "action": "ftp.get"}))
    assert found.pointer == "/steps/0/action"
    for name in ("core.echo", "core.sleep", "http.request", "browser.run", "sql.query"):
        assert name in found.message


def test_bad_with_value_deep_in_the_document() -> None:
    """A wrong with value is reported at its pointer, as in DSL.md."""
    request = {"id": "call", "type": "action", "action": "http.request", "with": {"url": 5}}
    document = dsl_example()
    document["steps"].append({"id": "maybe", "type": "if", "condition": True, "then": [request]})
    found = only(document)
    assert found == Diagnostic("/steps/2/then/0/with/url", "expected a string, got a number")


def test_missing_with_key() -> None:
    """A missing required with key is reported at the with object."""
    step = {"id": "x", "type": "action", "action": "http.request"}
    assert only(single_step(step)) == Diagnostic("/steps/0/with", "missing required key 'url'")


def test_unknown_with_key_is_escaped() -> None:
    """An unknown with key is reported at its RFC 6901 escaped pointer."""
    step = {"id": "x", "type": "action", "action": "core.echo", "with": {"value": 1, "a/b~": 2}}
    assert only(single_step(step)).pointer == "/steps/0/with/a~1b~0"


def test_bad_with_enum() -> None:
    """An unknown HTTP method lists the allowed ones."""
    step = {**HTTP, "with": {"url": "u", "method": "FETCH"}}
    found = only(single_step(step))
    assert found.pointer == "/steps/0/with/method"
    assert "'GET'" in found.message


def test_duplicate_step_ids() -> None:
    """A repeated id is reported at the later one."""
    document = every_step_type()
    document["steps"][2]["else"][0]["id"] = "start"
    assert only(document) == Diagnostic(
        "/steps/2/else/0/id", "duplicate step id 'start', first at /steps/0"
    )


def test_bad_step_id() -> None:
    """An id that breaks the id pattern is reported at /steps/N/id."""
    assert pointers(single_step({**ECHO, "id": "Echo"})) == ["/steps/0/id"]


def test_while_needs_max_iterations() -> None:
    """A while loop without max_iterations is invalid."""
    step = {"id": "loop", "type": "while", "condition": True, "steps": []}
    assert only(single_step(step)) == Diagnostic(
        "/steps/0", "missing required key 'max_iterations'"
    )


def test_while_max_iterations_is_bounded() -> None:
    """max_iterations above 10000 is reported at its pointer."""
    step = {"id": "loop", "type": "while", "condition": True, "steps": [], "max_iterations": 10001}
    assert only(single_step(step)) == Diagnostic(
        "/steps/0/max_iterations", "expected a number <= 10000"
    )


def test_condition_of_the_wrong_type_is_one_diagnostic() -> None:
    """A when that is a number says a boolean or an expression was expected."""
    found = only(single_step({**ECHO, "id": "x", "when": 5}))
    assert found == Diagnostic("/steps/0/when", "expected a boolean or a ${…} expression")


def test_bad_duration() -> None:
    """A malformed timeout names the accepted forms."""
    found = only(single_step({**ECHO, "id": "x", "timeout": "soon"}))
    assert found.pointer == "/steps/0/timeout"
    assert "30s" in found.message


def test_every_problem_is_reported() -> None:
    """Independent structural problems are all reported."""
    document = single_step({**ECHO, "id": "x", "retry": {"max_attempts": 0}, "on_error": "skip"})
    assert sorted(pointers(document)) == ["/steps/0/on_error", "/steps/0/retry/max_attempts"]


def test_expression_that_does_not_compile() -> None:
    """A syntax error is reported at the string holding it."""
    document = single_step({"id": "s", "type": "set", "values": {"a": "${1 +}"}})
    found = only(document)
    assert found.pointer == "/steps/0/values/a"
    assert found.message.startswith("invalid expression")


def test_unknown_step_reference() -> None:
    """steps.X with an unknown X is reported at the expression."""
    document = dsl_example()
    document["outputs"]["posted"] = "${steps.postt.output}"
    found = only(document)
    assert found.pointer == "/outputs/posted"
    assert "unknown step 'postt'" in found.message


def test_unknown_name() -> None:
    """A name that is not in scope is reported with the names that are."""
    found = only(single_step({"id": "s", "type": "set", "values": {"a": "${inputz.x}"}}))
    assert found.message == "unknown name 'inputz'; in scope here: config, inputs, run, steps, vars"


def test_secret_outside_with() -> None:
    """A secret in a set step is refused at its pointer."""
    document = single_step(
        {"id": "s", "type": "set", "values": {"token": "${secrets.t}"}},
        requires={"secrets": ["t"]},
    )
    assert only(document) == Diagnostic(
        "/steps/0/values/token", "secrets are only allowed inside an action's 'with'"
    )


def test_secret_in_check_is_refused() -> None:
    """A secret in an action's check is outside with, so it is refused."""
    step = {**ECHO, "id": "x", "check": "${output == secrets.t}"}
    assert pointers(single_step(step, requires={"secrets": ["t"]})) == ["/steps/0/check"]


def test_undeclared_secret() -> None:
    """A secret used in with but missing from requires.secrets is reported."""
    document = dsl_example()
    document["requires"]["secrets"] = []
    found = only(document)
    assert found.pointer == "/steps/1/with/headers/Authorization"
    assert "'erp.token'" in found.message


def test_loop_variable_outside_its_foreach() -> None:
    """The foreach variable is not in scope after the loop."""
    document = every_step_type()
    document["steps"].append({"id": "late", **ECHO, "with": {"value": "${number}"}})
    assert only(document).message == "'number' is only in scope inside the foreach that defines it"


def test_index_outside_a_foreach() -> None:
    """index is only in scope inside a foreach."""
    document = single_step({**ECHO, "id": "x", "with": {"value": "${index}"}})
    assert only(document).pointer == "/steps/0/with/value"


def test_error_outside_catch() -> None:
    """error in a try's finally is out of scope."""
    document = every_step_type()
    document["steps"][7]["finally"].append({"id": "f", **ECHO, "with": {"value": "${error}"}})
    assert only(document) == Diagnostic(
        "/steps/7/finally/1/with/value", "'error' is only in scope inside a try step's 'catch'"
    )


def test_output_outside_check() -> None:
    """output is only in scope in an action's check."""
    document = single_step({**ECHO, "id": "x", "with": {"value": "${output}"}})
    assert only(document).message == "'output' is only in scope in an action's 'check'"


def test_inputs_must_be_a_json_schema() -> None:
    """An invalid input schema is reported inside /inputs."""
    document = {**dsl_example(), "inputs": {"type": "object", "required": "amount"}}
    assert pointers(document) == ["/inputs/required"]


def test_inputs_must_describe_an_object() -> None:
    """Run inputs are an object, so the schema's type must be object."""
    document = {**dsl_example(), "inputs": {"type": "array"}}
    assert pointers(document) == ["/inputs/type"]


def test_human_form_must_be_a_json_schema() -> None:
    """A human form that is not a JSON Schema is reported inside the form."""
    step = {"id": "h", "type": "human", "task": "form", "title": "t", "form": {"type": 5}}
    assert pointers(single_step(step)) == ["/steps/0/form/type"]


def test_parse_flow_returns_the_flow() -> None:
    """parse_flow of a valid document returns a Flow."""
    assert isinstance(parse_flow(dsl_example()), Flow)


def test_parse_flow_raises_with_every_diagnostic() -> None:
    """parse_flow raises ValidationFailedError carrying all diagnostics."""
    document = {**dsl_example(), "extra": 1, "name": "Bad Name"}
    with pytest.raises(ValidationFailedError) as caught:
        parse_flow(document)
    assert [d.pointer for d in caught.value.diagnostics] == ["/extra", "/name"]


def test_load_flow_text_parses_json() -> None:
    """load_flow_text turns JSON text into a Flow."""
    assert load_flow_text(json.dumps(dsl_example())).name == "invoice-approval"


def test_load_flow_text_reports_line_and_column() -> None:
    """A JSON syntax error is one diagnostic at the root naming line and column."""
    with pytest.raises(ValidationFailedError) as caught:
        load_flow_text('{\n  "dsl": ,\n}', source="flow.json")
    (found,) = caught.value.diagnostics
    assert found.pointer == ""
    assert "flow.json at line 2, column 10" in found.message


def test_load_flow_text_refuses_nan() -> None:
    """NaN is not JSON."""
    with pytest.raises(ValidationFailedError, match="NaN"):
        load_flow_text('{"dsl": NaN}')


def test_deep_nesting_is_one_diagnostic() -> None:
    """A value nested far too deep is refused at its pointer instead of overflowing."""
    value: Any = 1
    for _ in range(1000):
        value = [value]
    found = only(single_step({**ECHO, "id": "x", "with": {"value": value}}))
    assert found.message == "nested deeper than 128 levels"
    assert found.pointer.startswith("/steps/0/with/value/0/0")


def test_load_flow_text_survives_absurd_nesting() -> None:
    """JSON text too deep for the parser is a diagnostic, not a RecursionError."""
    with pytest.raises(ValidationFailedError, match="nested deeper"):
        load_flow_text("[" * 100_000 + "]" * 100_000)


def test_validate_inputs_returns_the_inputs() -> None:
    """Inputs that match the schema come back as a dict."""
    assert validate_inputs(parse_flow(dsl_example()), {"amount": 5}) == {"amount": 5}


def test_validate_inputs_reports_a_missing_input() -> None:
    """A missing required input is reported at /inputs."""
    with pytest.raises(ValidationFailedError) as caught:
        validate_inputs(parse_flow(dsl_example()), {})
    assert [d.pointer for d in caught.value.diagnostics] == ["/inputs"]


def test_validate_inputs_reports_a_wrong_input_at_its_pointer() -> None:
    """A wrongly typed input is reported under /inputs."""
    with pytest.raises(ValidationFailedError) as caught:
        validate_inputs(parse_flow(dsl_example()), {"amount": "many"})
    assert [d.pointer for d in caught.value.diagnostics] == ["/inputs/amount"]


def test_validate_inputs_without_a_schema_accepts_none() -> None:
    """A flow without an input schema takes no inputs as an empty dict."""
    assert validate_inputs(parse_flow(every_step_type()), None) == {}


def test_validate_inputs_needs_an_object() -> None:
    """Run inputs that are not an object are refused."""
    with pytest.raises(ValidationFailedError):
        validate_inputs(parse_flow(every_step_type()), [1])
