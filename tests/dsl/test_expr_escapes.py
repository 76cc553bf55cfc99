"""Escape attempts: each must fail cleanly with an ExpressionError, quickly, touching nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from amosflow.dsl.expr import (
    MAX_EXPRESSION_LENGTH,
    MAX_VALUE_BYTES,
    compile_template,
    evaluate,
)
from amosflow.errors import ExpressionBudgetError, ExpressionError

MIB = 1024 * 1024


def _deep_list(depth: int) -> list[Any]:
    root: list[Any] = []
    current = root
    for _ in range(depth):
        child: list[Any] = []
        current.append(child)
        current = child
    return root


SCOPE: dict[str, Any] = {
    "inputs": {
        "s": "x" * MIB,
        "a": "a" * 50_000 + "b",
        "list": list(range(5_000)),
        "small": list(range(300)),
        "max": 2**63 - 1,
        "deep": _deep_list(100_000),
        "m": {"k": 1},
    },
    "vars": {},
}

# (case id, flow string, expected error type, words the message must contain)
ESCAPES: list[tuple[str, str, type[ExpressionError], str]] = [
    ("class attribute", "${inputs.__class__}", ExpressionError, "no such key '__class__'"),
    ("dict attribute", "${inputs.__dict__}", ExpressionError, "no such key '__dict__'"),
    ("mro chain", "${''.__class__.__mro__}", ExpressionError, "no matching operation"),
    ("globals", "${inputs.m.__globals__}", ExpressionError, "no such key"),
    ("import", "${__import__('os')}", ExpressionError, "unknown function '__import__'"),
    ("open", "${open('/etc/passwd')}", ExpressionError, "unknown function 'open'"),
    ("eval", "${eval('1')}", ExpressionError, "unknown function 'eval'"),
    ("exec", "${exec('1')}", ExpressionError, "unknown function 'exec'"),
    ("getattr", "${getattr(inputs, 'm')}", ExpressionError, "unknown function 'getattr'"),
    ("method on value", "${inputs.s.upper()}", ExpressionError, "unknown function 'upper'"),
    ("unknown function", "${foo(1)}", ExpressionError, "unknown function 'foo'"),
    ("extension function", "${['a'].join(',')}", ExpressionError, "unknown function 'join'"),
    ("bind", "${cel.bind(x, 1, x)}", ExpressionError, "unknown function 'bind'"),
    ("message literal", "${Foo{a: 1}}", ExpressionError, "does not compile"),
    ("string growth", "${" + " + ".join(["inputs.s"] * 8) + "}", ExpressionBudgetError, "large"),
    ("map to huge list", "${inputs.list.map(x, inputs.list)}", ExpressionBudgetError, "cost"),
    ("map of long", "${inputs.list.map(x, x * 1000)}", ExpressionBudgetError, "cost"),
    (
        "nested map",
        "${inputs.small.map(x, inputs.small.map(y, inputs.small))}",
        ExpressionBudgetError,
        "cost",
    ),
    (
        "comprehension depth",
        "${[1].map(x, [1].map(y, [1].map(z, z)))}",
        ExpressionError,
        "nest 3 deep",
    ),
    ("deep parens", "${" + "(" * 100_000 + "1" + ")" * 100_000 + "}", ExpressionError, "deeper"),
    ("deep lists", "${" + "[" * 100_000 + "]" * 100_000 + "}", ExpressionError, "deeper"),
    ("deep ternary", "${" + "true ? 1 : " * 150 + "2}", ExpressionError, "deeper"),
    ("deep value", "${size(inputs.deep)}", ExpressionError, "nests deeper"),
    ("overlong", "${" + "1+" * MAX_EXPRESSION_LENGTH + "1}", ExpressionError, "characters long"),
    ("overflow", "${inputs.max + 1}", ExpressionError, "integer overflow"),
    ("negative overflow", "${-9223372036854775807 - 2}", ExpressionError, "integer overflow"),
    ("int conversion overflow", "${int(1e19)}", ExpressionError, "overflow"),
    ("division by zero", "${1 / 0}", ExpressionError, "division by zero"),
    ("modulo by zero", "${1 % 0}", ExpressionError, "modulo by zero"),
    ("infinity", "${1.0 / 0.0}", ExpressionError, "not a finite number"),
    ("missing key", "${inputs.nope}", ExpressionError, "no such key 'nope'"),
    ("missing index", "${inputs.small[1000]}", ExpressionError, "out of bounds"),
    ("unknown name", "${os}", ExpressionError, "unknown name 'os'"),
    ("bad regex", "${'a'.matches('(')}", ExpressionError, "not a valid regex"),
    ("backreference", "${'aa'.matches('(a)\\\\1')}", ExpressionError, "backreferences"),
    ("non-string keys", "${{1: 2}}", ExpressionError, "keys must be strings"),
    ("unclosed", "${inputs.a", ExpressionError, "not closed"),
    ("unterminated string", "${'abc}", ExpressionError, "unterminated string"),
    ("empty", "${}", ExpressionError, "empty expression"),
    ("bad character", "${inputs.a; 1}", ExpressionError, "unexpected character"),
    ("secret exfiltration", "${secrets.a + inputs.s}", ExpressionError, "secret"),
]


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [pytest.param(text, error, words, id=case) for case, text, error, words in ESCAPES],
)
def test_escape_attempt_fails_cleanly(text: str, error: type[ExpressionError], words: str) -> None:
    """The attempt raises the expected ExpressionError, names the pointer and is quick."""
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as caught:
        evaluate(text, SCOPE, "/steps/0/with/x")
    elapsed = time.perf_counter() - started
    assert isinstance(caught.value, error)
    assert words in caught.value.reason
    assert caught.value.pointer == "/steps/0/with/x"
    assert elapsed < 2.0


def test_catastrophic_regex_runs_in_linear_time() -> None:
    """`^(a+)+$` on 50k characters finishes fast because the regex engine is linear-time."""
    started = time.perf_counter()
    assert evaluate("${inputs.a.matches('^(a+)+$')}", SCOPE) is False
    assert evaluate("${inputs.a.matches('(a|aa)*c')}", SCOPE) is False
    assert time.perf_counter() - started < 1.0


def test_budget_allows_what_fits() -> None:
    """Three copies of a 1 MiB string fit the size budget and are produced."""
    result = evaluate("${inputs.s + inputs.s + inputs.s}", SCOPE)
    assert len(result) == 3 * MIB
    assert len(result) < MAX_VALUE_BYTES


def test_budget_decision_is_deterministic() -> None:
    """The same expression over the same values is refused the same way every time."""
    text = "${inputs.list.map(x, inputs.list)}"
    reasons = set()
    for _ in range(3):
        with pytest.raises(ExpressionBudgetError) as caught:
            evaluate(text, SCOPE)
        reasons.add(caught.value.reason)
    assert len(reasons) == 1


def test_a_moderate_map_is_allowed() -> None:
    """A map over a few hundred elements stays inside the cost budget."""
    assert evaluate("${inputs.small.map(x, x * 2)}", SCOPE)[-1] == 598


def test_escapes_also_fail_at_compile_where_static() -> None:
    """Static escape attempts are refused by compile_template, before any evaluation."""
    for text in ("${__import__('os')}", "${" + "(" * 100_000 + "}", "${secrets.a + 'x'}"):
        with pytest.raises(ExpressionError):
            compile_template(text)
