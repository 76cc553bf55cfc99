"""CEL caps: nesting, size and time are bounded, and each refusal is a clear, named error.

Every cap is checked on both sides of its limit. The property at the end throws random nested
and large expressions at random large inputs: each ends within the time cap with a JSON value or
an ExpressionError, never another exception and never a stall.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amosflow.dsl import expr
from amosflow.dsl.expr import compile_template, evaluate
from amosflow.dsl.expr._templates import MAX_ACCUMULATED_VALUES
from amosflow.dsl.expr._values import MAX_VALUE_DEPTH
from amosflow.errors import ExpressionBudgetError, ExpressionError

# What "ends in time" means here: the worst accepted expression the caps allow runs in under a
# second on a slow core; the rest is room for a loaded test machine.
TIME_CAP_S = 5.0


def scope(**inputs: Any) -> dict[str, Any]:
    """A scope whose `inputs` are ``inputs``."""
    return {"inputs": inputs}


def timed(text: str, inputs: dict[str, Any]) -> tuple[Any, float]:
    """Evaluate and return (value or the ExpressionError raised, seconds taken)."""
    started = time.perf_counter()
    try:
        outcome: Any = evaluate(text, scope(**inputs))
    except ExpressionError as exc:
        outcome = exc
    return outcome, time.perf_counter() - started


def test_length_cap() -> None:
    """An expression longer than MAX_EXPRESSION_LENGTH is refused at compile time, with both."""
    inner = "1" + " + 1" * ((expr.MAX_EXPRESSION_LENGTH - 1) // 4)
    compile_template("${" + inner[: expr.MAX_EXPRESSION_LENGTH].rstrip(" +") + "}")
    too_long = "${" + "1" + " " * expr.MAX_EXPRESSION_LENGTH + "}"
    with pytest.raises(ExpressionError, match=f"the limit is {expr.MAX_EXPRESSION_LENGTH}"):
        compile_template(too_long, "/steps/0/if")


@pytest.mark.parametrize(("open_", "close"), [("(", ")"), ("[", "]"), ("{'a': ", "}")])
def test_nesting_cap(open_: str, close: str) -> None:
    """Brackets nested past MAX_NESTING_DEPTH are refused before the library's parser sees them."""
    depth = expr.MAX_NESTING_DEPTH
    assert evaluate("${" + open_ * (depth - 1) + "1" + close * (depth - 1) + "}", {}) is not None
    deep = "${" + open_ * (depth + 1) + "1" + close * (depth + 1) + "}"
    with pytest.raises(ExpressionError, match=f"deeper than {depth} levels") as caught:
        compile_template(deep, "/outputs/x")
    assert caught.value.pointer == "/outputs/x"


def test_very_deep_nesting_ends_quickly() -> None:
    """A hundred thousand brackets are refused, not a stack overflow, and fast."""
    outcome, took = timed("${" + "(" * 100_000 + "1" + ")" * 100_000 + "}", {})
    assert isinstance(outcome, ExpressionError)
    assert took < TIME_CAP_S


def test_comprehension_nesting_cap() -> None:
    """Comprehensions nest at most MAX_COMPREHENSION_DEPTH deep."""
    assert evaluate("${[[1]].all(x, x.all(y, y > 0))}", {}) is True
    with pytest.raises(ExpressionError, match=f"the limit is {expr.MAX_COMPREHENSION_DEPTH}"):
        compile_template("${[[[1]]].all(x, x.all(y, y.all(z, z > 0)))}")


def test_cost_cap() -> None:
    """The cost estimate, from the expression and the length of its inputs, is capped."""
    assert evaluate("${inputs.l.all(x, x >= 0)}", scope(l=list(range(1000)))) is True
    with pytest.raises(ExpressionBudgetError, match=f"limit {expr.MAX_COST}"):
        evaluate("${inputs.l.map(x, x * 2)}", scope(l=list(range(2000))))


def test_input_size_cap() -> None:
    """Joining values read could build more than MAX_VALUE_BYTES: refused before running."""
    half = "x" * (expr.MAX_VALUE_BYTES // 2)
    with pytest.raises(ExpressionBudgetError, match=f"limit {expr.MAX_VALUE_BYTES}"):
        evaluate("${inputs.s + inputs.s + inputs.s}", scope(s=half))


def test_result_size_cap() -> None:
    """A rendered string over MAX_VALUE_BYTES is refused."""
    half = "x" * (expr.MAX_VALUE_BYTES // 2 + 10)
    with pytest.raises(ExpressionBudgetError, match="too large"):
        evaluate("${inputs.s}${inputs.s}", scope(s=half))


def test_value_depth_cap() -> None:
    """A value nested deeper than MAX_VALUE_DEPTH is refused, not handed to the library."""
    deep: Any = 1
    for _ in range(MAX_VALUE_DEPTH + 5):
        deep = [deep]
    with pytest.raises(ExpressionError, match=f"deeper than {MAX_VALUE_DEPTH} levels"):
        evaluate("${size(inputs.v)}", scope(v=deep))


def test_map_copying_a_large_value_is_refused_fast() -> None:
    """Regression: `l.map(x, l)` passed the cost cap and ran for two minutes; now it is refused.

    The library copies a map's result on every element, so 600 strings mapped to the whole
    list copy 216 million values. The refusal names MAX_ACCUMULATED_VALUES.
    """
    big = ["a" * 600 for _ in range(600)]
    outcome, took = timed("${inputs.l.map(x, inputs.l)}", {"l": big})
    assert isinstance(outcome, ExpressionBudgetError), outcome
    assert "MAX_ACCUMULATED_VALUES" in str(outcome)
    assert took < 1.0
    outcome, _ = timed("${inputs.l.filter(x, true)}", {"l": [big[:100]] * 300})
    assert isinstance(outcome, ExpressionBudgetError), outcome


def test_accumulation_cap_leaves_ordinary_maps_alone() -> None:
    """A map over hundreds of records, projecting fields, stays under the copy cap."""
    records = [{"id": i, "name": f"n{i}", "tags": ["a", "b"]} for i in range(600)]
    assert evaluate("${inputs.r.map(x, x.id)}", scope(r=records)) == list(range(600))
    assert len(evaluate("${inputs.r.filter(x, x.id % 2 == 0)}", scope(r=records[:400]))) == 200
    worst = [["s" * 20] * 40 for _ in range(150)]  # just under the cap
    outcome, took = timed("${inputs.l.map(x, x)}", {"l": worst})
    assert outcome == worst
    assert took < TIME_CAP_S
    assert MAX_ACCUMULATED_VALUES > (40 + 2) * 151**2


# --- random nested and large expressions ------------------------------------------------------

LEAVES = st.sampled_from(
    ["inputs.l", "inputs.s", "inputs.m", "inputs.n", "x", "1", "'ab'", "[1, 2]", "{'k': 1}"]
)


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(inner, st.sampled_from(["+", "==", "<", "&&", "*", "in"]), inner)
    return st.one_of(
        binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda e: f"size({e})"),
        inner.map(lambda e: f"[{e}, {e}]"),
        st.tuples(st.sampled_from(["map", "filter", "all", "exists"]), inner).map(
            lambda t: f"inputs.l.{t[0]}(x, {t[1]})"
        ),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        st.tuples(inner, st.integers(1, 40)).map(lambda t: "(" * t[1] + t[0] + ")" * t[1]),
    )


NESTED = st.recursive(LEAVES, _grow, max_leaves=12)
# Half the expressions are a comprehension over the (maybe long) input list: where time goes.
EXPRESSIONS = NESTED | st.tuples(st.sampled_from(["map", "filter", "all", "exists"]), NESTED).map(
    lambda t: f"inputs.l.{t[0]}(x, {t[1]})"
)
ITEMS = st.one_of(
    st.integers(-5, 5),
    st.text(max_size=3),
    st.lists(st.integers(0, 3), max_size=3),
)


@st.composite
def big_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """Inputs from empty to large: long lists of repeated items, long strings, wide maps."""
    length = draw(st.sampled_from([0, 1, 10, 100, 400, 900, 3000]))
    item = draw(ITEMS)
    return {
        "l": [item] * length,
        "s": "a" * draw(st.sampled_from([0, 5, 1000, 100_000])),
        "m": {str(i): i for i in range(draw(st.sampled_from([0, 3, 500])))},
        "n": draw(st.integers(-(2**63), 2**63 - 1)),
    }


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(EXPRESSIONS, big_inputs())
def test_random_expressions_end_within_the_caps(text: str, inputs: dict[str, Any]) -> None:
    """Any nesting, any size: a JSON value or an ExpressionError, within the time cap."""
    outcome, took = timed("${" + text + "}", inputs)
    assert took < TIME_CAP_S, f"{took:.1f}s for {text!r}"
    if isinstance(outcome, ExpressionError):
        assert str(outcome)
    else:
        json.dumps(outcome)
