"""Normal behaviour of CEL expressions in flow strings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amosflow.dsl import expr
from amosflow.dsl.expr import (
    SecretRef,
    SecretSlot,
    apply_secret_slots,
    compile_template,
    evaluate,
    evaluate_condition,
    has_expression,
    iter_templates,
    render,
    render_with_secrets,
)
from amosflow.errors import ExpressionBudgetError, ExpressionError


def make_scope(**overrides: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "inputs": {"amount": 1500, "name": "Ada", "items": [1, 2, 3], "tags": {"a": 1}},
        "vars": {"limit": 1000},
        "steps": {
            "fetch": {"output": {"status": 200, "json": {"items": [1]}}, "status": "completed"},
        },
        "config": {"erp": {"url": "https://erp.example"}},
    }
    scope.update(overrides)
    return scope


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${inputs.amount}", 1500),
        ("${inputs.amount > 1000}", True),
        ("${inputs.items}", [1, 2, 3]),
        ("${inputs.tags}", {"a": 1}),
        ("${inputs.name}", "Ada"),
        ("${null}", None),
        ("${2.5}", 2.5),
    ],
)
def test_single_expression_keeps_type(text: str, expected: Any) -> None:
    """A string that is exactly one `${ }` evaluates to the value with its own type."""
    result = evaluate(text, make_scope())
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi ${inputs.name}!", "Hi Ada!"),
        ("n=${inputs.amount}", "n=1500"),
        ("ok=${inputs.amount > 1}", "ok=true"),
        ("l=${inputs.items}", "l=[1,2,3]"),
        ("m=${inputs.tags}", 'm={"a":1}'),
        ("x=${null}.", "x=."),
        ("f=${2.5}", "f=2.5"),
        (" ${inputs.amount}", " 1500"),
        ("${inputs.name}${inputs.name}", "AdaAda"),
    ],
)
def test_interpolation_renders_into_text(text: str, expected: str) -> None:
    """Expressions with text around them render as text: strings as-is, null empty, others JSON."""
    assert evaluate(text, make_scope()) == expected


def test_escaped_dollar_brace_is_literal() -> None:
    """`\\${` renders as a literal `${` and is not an expression."""
    text = "cost \\${inputs.amount} is ${inputs.amount}"
    assert has_expression("\\${x}") is False
    assert evaluate(text, make_scope()) == "cost ${inputs.amount} is 1500"
    assert render({"a": "\\${x}"}, make_scope()) == {"a": "${x}"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${ {'a': 1}.a }", 1),
        ("${ '}' }", "}"),
        ('${ "{" + "}" }', "{}"),
        ("${ {'k': {'n': 2}}.k.n } tail", "2 tail"),
        ("${ '''}''' }", "}"),
        ("${ r'\\}' }", "\\}"),
        ("${ 1 // a } comment\n }", 1),
    ],
)
def test_scanner_finds_the_closing_brace(text: str, expected: Any) -> None:
    """The closing `}` is found past braces inside string and map literals and comments."""
    assert evaluate(text, {}) == expected


@pytest.mark.parametrize(
    ("amount", "literal"),
    [(1500, "1000"), (1500.5, "1000"), (1500, "1000.0"), (1500.5, "1000.0"), (1500.0, "1000")],
)
def test_numbers_compare_across_int_and_double(amount: float, literal: str) -> None:
    """A JSON number compares with an int or double literal whatever its Python type."""
    assert evaluate_condition(f"${{inputs.amount > {literal}}}", {"inputs": {"amount": amount}})


def test_integral_floats_are_ints() -> None:
    """An integral JSON float behaves as an int, so int arithmetic and indexing work on it."""
    scope = {"inputs": {"amount": 1500.0, "i": 1.0, "l": ["a", "b"]}}
    assert evaluate("${inputs.amount + 1}", scope) == 1501
    assert evaluate("${inputs.l[inputs.i]}", scope) == "b"


def test_fractional_floats_stay_doubles() -> None:
    """A fractional JSON number is a double and needs double literals in arithmetic."""
    assert evaluate("${inputs.x * 2.0}", {"inputs": {"x": 1.25}}) == 2.5
    with pytest.raises(ExpressionError, match="no matching operation"):
        evaluate("${inputs.x * 2}", {"inputs": {"x": 1.25}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('${timestamp("2024-05-01T10:00:00Z")}', "2024-05-01T10:00:00Z"),
        ('${duration("90s")}', "90s"),
        ('${duration("1.5s")}', "1.5s"),
        ('${b"hi"}', "aGk="),
        ('${type("x")}', "string"),
    ],
)
def test_results_are_plain_json(text: str, expected: str) -> None:
    """Times, durations, bytes and types come back as strings, never as Python objects."""
    assert evaluate(text, {}) == expected


def test_standard_functions_and_macros_work() -> None:
    """Standard functions and the comprehension macros evaluate as in CEL."""
    scope = make_scope()
    assert evaluate("${inputs.items.map(x, x * 2)}", scope) == [2, 4, 6]
    assert evaluate("${inputs.items.filter(x, x > 1)}", scope) == [2, 3]
    assert evaluate("${inputs.items.map(x, x > 1, x * 10)}", scope) == [20, 30]
    assert evaluate("${inputs.items.exists_one(x, x == 2)}", scope) is True
    assert evaluate("${has(inputs.tags.a) && !has(inputs.tags.b)}", scope) is True
    assert evaluate("${inputs.name.startsWith('A') && size(inputs.name) == 3}", scope) is True
    assert evaluate("${'a' in inputs.tags}", scope) is True


@pytest.mark.parametrize(
    ("text", "names", "steps"),
    [
        ("${inputs.a > vars.b}", {"inputs", "vars"}, set()),
        ("${steps.fetch.output.status}", {"steps"}, {"fetch"}),
        ("${steps['fetch'].status} ${steps[\"post\"].output}", {"steps"}, {"fetch", "post"}),
        ("${inputs.items.map(x, x + index)}", {"inputs", "index"}, set()),
        ("${inputs.l.all(x, x.all(y, y > item))}", {"inputs", "item"}, set()),
        ("${inputs.l.map(x, x > 0, x * 2)}", {"inputs"}, set()),
        ("${[1].map(inputs, inputs + 1)}", set(), set()),
        ("${inputs.m.exists(k, k == error.step)}", {"inputs", "error"}, set()),
        ("${output.status == 200 && size(output.json.items) > 0}", {"output"}, set()),
        ("${run.id + config.x}", {"run", "config"}, set()),
        ("plain text", set(), set()),
    ],
)
def test_template_lists_free_names_and_step_refs(
    text: str, names: set[str], steps: set[str]
) -> None:
    """`names` are the free top-level names (no macro variables) and `step_refs` the step ids."""
    template = compile_template(text)
    assert template.names == names
    assert template.step_refs == steps
    assert template.source == text


def test_is_single_needs_nothing_around_the_expression() -> None:
    """Only a string that is exactly one `${ }` is single; whitespace around it is text."""
    assert compile_template("${1}").is_single
    assert not compile_template(" ${1}").is_single
    assert not compile_template("${1} ").is_single
    assert not compile_template("${1}${2}").is_single
    assert not compile_template("text").is_single


def test_dynamic_step_access_is_refused() -> None:
    """`steps` must be followed by a literal step id so the engine knows what is read."""
    with pytest.raises(ExpressionError, match="must be followed by a step id"):
        compile_template("${steps[vars.id].output}")


@pytest.mark.parametrize(
    ("text", "secrets"),
    [
        ("${secrets.token}", {"token"}),
        ("${secrets.erp.token}", {"erp.token"}),
        ("${secrets['erp.token']}", {"erp.token"}),
        ("Bearer ${secrets.a} and ${secrets.b}", {"a", "b"}),
    ],
)
def test_template_lists_secret_refs(text: str, secrets: set[str]) -> None:
    """A plain secret reference names the dotted secret, and `secrets` is among the names."""
    template = compile_template(text)
    assert template.secret_refs == secrets
    assert "secrets" in template.names


@pytest.mark.parametrize(
    "text",
    [
        "${secrets.a + 'x'}",
        "${size(secrets.a)}",
        "${secrets}",
        "${secrets[vars.name]}",
        "${secrets.a == 'x'}",
        "${secrets.a.startsWith('x')}",
    ],
)
def test_secret_used_in_an_expression_is_refused(text: str) -> None:
    """Anything but a plain `${secrets.NAME}` is refused when compiling, with a clear message."""
    with pytest.raises(ExpressionError, match="secret can only be referenced alone"):
        compile_template(text, "/steps/0/with/x")


def test_render_and_evaluate_refuse_secrets() -> None:
    """Secrets cannot be evaluated into values outside an action's `with`."""
    with pytest.raises(ExpressionError, match="only be used in an action"):
        evaluate("${secrets.token}", {})
    with pytest.raises(ExpressionError, match="only be used in an action") as caught:
        render({"h": ["Bearer ${secrets.token}"]}, {}, "/steps/1/with")
    assert caught.value.pointer == "/steps/1/with/h/0"


def test_render_with_secrets_leaves_placeholders_and_slots() -> None:
    """Secret strings become "" placeholders plus slots with text, refs and rendered pieces."""
    value = {
        "url": "${config.erp.url}/post",
        "headers": {"Authorization": "Bearer ${secrets.erp.token} for ${inputs.name}"},
        "a/b~c": ["${secrets['x']}", 5],
    }
    rendered, slots = render_with_secrets(value, make_scope(), "/steps/0/with")
    assert rendered == {
        "url": "https://erp.example/post",
        "headers": {"Authorization": ""},
        "a/b~c": ["", 5],
    }
    assert slots == [
        SecretSlot("/headers/Authorization", ("Bearer ", SecretRef("erp.token"), " for Ada")),
        SecretSlot("/a~1b~0c/0", (SecretRef("x"),)),
    ]


def test_apply_secret_slots_fills_a_copy() -> None:
    """Applying slots resolves each secret by name into a copy and leaves the original alone."""
    value = {"headers": {"Authorization": ""}, "a/b~c": ["", 5]}
    slots = [
        SecretSlot("/headers/Authorization", ("Bearer ", SecretRef("erp.token"), " for Ada")),
        SecretSlot("/a~1b~0c/0", (SecretRef("x"),)),
    ]
    secrets = {"erp.token": "T0K", "x": "X"}
    filled = apply_secret_slots(value, slots, secrets.__getitem__)
    assert filled == {"headers": {"Authorization": "Bearer T0K for Ada"}, "a/b~c": ["X", 5]}
    assert value["headers"]["Authorization"] == ""


def test_apply_secret_slot_at_the_root() -> None:
    """A slot with the empty pointer replaces the whole value."""
    _, slots = render_with_secrets("${secrets.k}", {})
    assert apply_secret_slots("", slots, lambda name: f"<{name}>") == "<k>"


def test_apply_secret_slots_refuses_a_missing_location() -> None:
    """A slot pointing nowhere is an error, not a silent no-op."""
    with pytest.raises(ExpressionError, match="does not exist"):
        apply_secret_slots({}, [SecretSlot("/nope", (SecretRef("k"),))], str)


def test_user_data_cannot_inject_a_secret_reference() -> None:
    """A value like `${secrets.x}` from inputs stays literal text and never resolves a secret."""
    scope = {"inputs": {"evil": "${secrets.admin}", "evil2": "\\${secrets.admin}"}}
    resolved: list[str] = []

    def resolve(name: str) -> str:
        resolved.append(name)
        return "SECRET"

    value = {"a": "${inputs.evil}", "b": "x ${inputs.evil} ${secrets.mine}", "c": "${inputs.evil2}"}
    rendered, slots = render_with_secrets(value, scope)
    filled = apply_secret_slots(rendered, slots, resolve)
    assert filled == {
        "a": "${secrets.admin}",
        "b": "x ${secrets.admin} SECRET",
        "c": "\\${secrets.admin}",
    }
    assert resolved == ["mine"]
    assert render({"a": "${inputs.evil}"}, scope) == {"a": "${secrets.admin}"}


def test_render_walks_json_values() -> None:
    """Render keeps structure and non-string scalars, and renders every string inside."""
    value = {"a": ["${inputs.amount}", 1, None, True], "b": {"c": "n=${inputs.amount}"}}
    assert render(value, make_scope()) == {"a": [1500, 1, None, True], "b": {"c": "n=1500"}}


def test_iter_templates_yields_pointers() -> None:
    """Every string with an expression is yielded with its JSON Pointer."""
    value = {"with": {"url": "${config.x}", "n": 1, "l": ["plain", "${inputs.a}"], "e/x": "${1}"}}
    found = [(p, t.source) for p, t in iter_templates(value, "/steps/0")]
    assert found == [
        ("/steps/0/with/url", "${config.x}"),
        ("/steps/0/with/l/1", "${inputs.a}"),
        ("/steps/0/with/e~1x", "${1}"),
    ]


def test_condition_must_be_bool() -> None:
    """A condition that is not a bool is an error that names the type it got."""
    assert evaluate_condition(True, {}) is True
    assert evaluate_condition("${1 < 2}", {}) is True
    with pytest.raises(ExpressionError, match="condition must be a bool, got string") as caught:
        evaluate_condition("${'yes'}", {}, "/steps/3/condition")
    assert caught.value.pointer == "/steps/3/condition"
    with pytest.raises(ExpressionError, match="got int"):
        evaluate_condition("${1}", {})


@pytest.mark.parametrize(
    ("text", "scope", "message"),
    [
        ("${inputs.foo}", {"inputs": {}}, "no such key 'foo'"),
        ("${1 +}", {}, "expression does not compile"),
        ("${item}", {"inputs": {}}, "unknown name 'item'"),
        ("${nope(1)}", {}, "unknown function 'nope'"),
        ("${1 / 0}", {}, "division by zero"),
    ],
)
def test_errors_name_the_pointer_and_the_problem(
    text: str, scope: dict[str, Any], message: str
) -> None:
    """Errors carry the pointer and the source text and say what was expected."""
    with pytest.raises(ExpressionError, match=message) as caught:
        evaluate(text, scope, "/steps/2/with/url")
    assert caught.value.pointer == "/steps/2/with/url"
    assert caught.value.source == text
    assert str(caught.value).startswith("/steps/2/with/url: ")


def test_compile_is_cached() -> None:
    """Compiling the same text twice reuses the first result."""
    text = "${inputs.cached_probe > 1}"
    assert compile_template(text) is compile_template(text, "/elsewhere")


def test_only_referenced_steps_are_converted() -> None:
    """Unrelated step outputs are never read, so even unconvertible values there are harmless."""
    scope = make_scope()
    scope["steps"]["other"] = {"output": object(), "status": "completed"}
    scope["inputs"]["junk"] = object()
    assert evaluate("${steps.fetch.output.status == 200 && inputs.amount > 1}", scope) is True


def test_has_sees_the_real_keys_through_pruning() -> None:
    """Only reading the referenced keys does not change what `has` reports."""
    scope = {"inputs": {"a": {"b": 1}}}
    assert evaluate("${has(inputs.a.b)}", scope) is True
    assert evaluate("${has(inputs.a.c)}", scope) is False


def test_large_result_is_refused() -> None:
    """A result over MAX_VALUE_BYTES is refused after evaluation."""
    big = "x" * (expr.MAX_VALUE_BYTES // 2 + 10)
    with pytest.raises(ExpressionBudgetError, match="too large"):
        evaluate("${inputs.s + inputs.s}", {"inputs": {"s": big}})


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=12),
            st.sampled_from(
                ["${", "}", "\\${", "'", '"', "{", "(", "[", "]", ")", ".", "inputs", "secrets",
                 "steps", "map(x,", "//", "\n", "r'", "b'", "'''", "0x", "1u", "?", ":", "+"]
            ),
        ),
        max_size=20,
    ).map("".join)
)  # fmt: skip
def test_arbitrary_text_only_raises_expression_error(text: str) -> None:
    """Whatever text is compiled, the only failure is an ExpressionError."""
    outcome: object
    try:
        outcome = compile_template(text)
    except ExpressionError as exc:
        outcome = exc
    assert getattr(outcome, "source", None) == text
