"""CEL expressions inside flow strings: compile, check, evaluate and render.

See docs/decisions/0003-cel-expressions.md for the rules and the cost model, and
docs/decisions/0050-one-cel-parser.md for why our parser sits beside the library's.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from amosflow.dsl.expr._analysis import Facts, PruneTree, analyse
from amosflow.dsl.expr._cel import cel
from amosflow.dsl.expr._syntax import NestingError, Node, Segment, parse, split_template
from amosflow.dsl.expr._values import Meter, build_activation, to_json, to_text, type_name
from amosflow.errors import ExpressionBudgetError, ExpressionError

MAX_EXPRESSION_LENGTH = 2048
MAX_NESTING_DEPTH = 32
MAX_COMPREHENSION_DEPTH = 2
MAX_COST = 1_000_000
MAX_VALUE_BYTES = 4 * 1024 * 1024
# Values a map/filter may copy while it builds its result: about a second of the library's
# time on a slow core (it spends ~0.3-0.5 µs per value copied).
MAX_ACCUMULATED_VALUES = 3_000_000

# The CEL standard functions and operators the library implements natively; nothing else.
ALLOWED_FUNCTIONS: Final = frozenset(
    {
        "size", "matches", "startsWith", "endsWith", "contains",
        "int", "uint", "double", "string", "bytes", "type", "dyn", "duration", "timestamp",
        "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek",
        "getHours", "getMinutes", "getSeconds", "getMilliseconds",
        "_+_", "_-_", "_*_", "_/_", "_%_", "-_", "!_",
        "_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_", "_&&_", "_||_", "_?_:_", "_[_]",
        "@in", "@not_strictly_false",
    }
)  # fmt: skip
_CACHE_SIZE: Final = 4096
_PASS_THROUGH: Final = (KeyboardInterrupt, SystemExit, GeneratorExit)


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A `${secrets.NAME}` placeholder kept as a reference until the action runs."""

    name: str


@dataclass(frozen=True, slots=True)
class SecretSlot:
    """Where in a rendered `with` a string must be assembled from text and secrets."""

    pointer: str
    parts: tuple[str | SecretRef, ...]


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled flow string: literal text and `${ }` expressions."""

    source: str
    is_single: bool
    names: frozenset[str]
    step_refs: frozenset[str]
    secret_refs: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Expression:
    """One compiled `${ }`: the program and the static facts the budget needs."""

    source: str
    program: Any
    trees: Mapping[str, PruneTree | None]
    operations: int
    additions: int
    cost_exponent: int
    largest_literal: int
    accumulating_depth: int
    accumulated_names: frozenset[str]
    secret: str | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A compiled flow string: the public template and its literal and expression parts."""

    template: Template
    parts: tuple[str | _Expression, ...]


def has_expression(text: str) -> bool:
    """Tell whether a string holds at least one unescaped `${`."""
    at = text.find("${")
    while at >= 0:
        if at == 0 or text[at - 1] != "\\":
            return True
        at = text.find("${", at + 2)
    return False


def compile_template(text: str, pointer: str = "") -> Template:
    """Compile a flow string; raises ExpressionError naming the pointer."""
    return _compile_at(text, pointer).template


def iter_templates(value: Any, pointer: str = "") -> Iterator[tuple[str, Template]]:
    """Yield (pointer, template) for every string with an expression inside a JSON value."""
    stack: list[tuple[str, Any]] = [(pointer, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if has_expression(item):
                yield where, compile_template(item, where)
        elif isinstance(item, Mapping):
            stack.extend((f"{where}/{_escape(str(k))}", v) for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}/{i}", v) for i, v in reversed(list(enumerate(item))))


def evaluate(text: str, scope: Mapping[str, Any], pointer: str = "") -> Any:
    """Evaluate one flow string against the scope (type kept for a single `${ }`)."""
    compiled = _compile_at(text, pointer)
    if compiled.template.secret_refs:
        raise _secrets_not_allowed(text, pointer)
    return _evaluate(compiled, scope, pointer)


def evaluate_condition(
    text: str | bool,  # noqa: FBT001 - the stub's contract: a literal bool is a condition too
    scope: Mapping[str, Any],
    pointer: str = "",
) -> bool:
    """Evaluate a condition; anything but a bool is an ExpressionError."""
    result = text if isinstance(text, bool) else evaluate(text, scope, pointer)
    if not isinstance(result, bool):
        raise ExpressionError(
            f"condition must be a bool, got {type_name(result)}",
            pointer=pointer,
            source=text if isinstance(text, str) else "",
        )
    return result


def render(value: Any, scope: Mapping[str, Any], pointer: str = "") -> Any:
    """Render every string of a JSON value; secrets are not allowed here."""
    rendered, slots = _render(value, scope, pointer, "", allow_secrets=False)
    assert not slots
    return rendered


def render_with_secrets(
    value: Any, scope: Mapping[str, Any], pointer: str = ""
) -> tuple[Any, list[SecretSlot]]:
    """Render a JSON value, keeping secret references out of it as slots."""
    return _render(value, scope, pointer, "", allow_secrets=True)


def apply_secret_slots(value: Any, slots: list[SecretSlot], resolve: Callable[[str], str]) -> Any:
    """Fill the secret slots of a rendered value where the action runs."""
    result = copy.deepcopy(value)
    for slot in slots:
        text = "".join(p if isinstance(p, str) else resolve(p.name) for p in slot.parts)
        if slot.pointer == "":
            result = text
        elif not _set_at(result, [_unescape(t) for t in slot.pointer.split("/")[1:]], text):
            raise ExpressionError(
                f"secret slot {slot.pointer!r} does not exist in the value", pointer=slot.pointer
            )
    return result


def _set_at(target: Any, tokens: list[str], text: str) -> bool:
    """Set the string at a JSON Pointer's tokens; False when the location does not exist."""
    for position, token in enumerate(tokens):
        key: Any
        if isinstance(target, list) and token.isdigit() and int(token) < len(target):
            key = int(token)
        elif isinstance(target, dict) and token in target:
            key = token
        else:
            return False
        if position == len(tokens) - 1:
            target[key] = text
            return True
        target = target[key]
    return False


# --- compiling ------------------------------------------------------------------------------


def _compile_at(text: str, pointer: str) -> _Compiled:
    try:
        return _compile(text)
    except ExpressionError as exc:
        kind = ExpressionBudgetError if isinstance(exc, ExpressionBudgetError) else ExpressionError
        raise kind(exc.reason, pointer=pointer, source=text) from None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(text: str) -> _Compiled:
    parts = [
        part if isinstance(part, str) else _compile_expression(part)
        for part in split_template(text, MAX_NESTING_DEPTH)
    ]
    expressions = [p for p in parts if isinstance(p, _Expression)]
    names: set[str] = set()
    steps: set[str] = set()
    for expression in expressions:
        names.update(expression.trees)
        if expression.secret is not None:
            names.add("secrets")
        steps.update(str(key) for key in (expression.trees.get("steps") or {}))
    template = Template(
        source=text,
        is_single=len(parts) == 1 and bool(expressions),
        names=frozenset(names),
        step_refs=frozenset(steps),
        secret_refs=frozenset(e.secret for e in expressions if e.secret is not None),
    )
    return _Compiled(template, tuple(parts))


def _compile_expression(segment: Segment) -> _Expression:
    source = segment.source
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression is {len(source)} characters long, the limit is {MAX_EXPRESSION_LENGTH}"
        )
    if not segment.tokens:
        raise ExpressionError("empty expression in ${ }")
    # Our own parse runs first and bounds nesting, so the native parser never recurses deeply;
    # for other syntax errors the library's message is the better one, so it is preferred.
    tree: Node | ExpressionError
    try:
        tree = parse(segment.tokens, MAX_NESTING_DEPTH)
    except NestingError as exc:
        raise ExpressionError(exc.reason) from None
    except ExpressionError as exc:
        tree = exc
    try:
        program = cel.compile(source)
        functions = set(program.functions())
    except BaseException as exc:
        if isinstance(exc, _PASS_THROUGH):
            raise
        raise ExpressionError(f"expression does not compile: {_library_message(exc)}") from None
    if isinstance(tree, ExpressionError):
        raise tree
    unknown = sorted(functions - ALLOWED_FUNCTIONS)
    if unknown:
        raise ExpressionError(
            f"unknown function {unknown[0]!r}: only the CEL standard functions are available"
        )
    facts = analyse(tree)
    if facts.comprehension_depth > MAX_COMPREHENSION_DEPTH:
        raise ExpressionError(
            f"comprehensions (all, exists, exists_one, map, filter) nest "
            f"{facts.comprehension_depth} deep, the limit is {MAX_COMPREHENSION_DEPTH}"
        )
    return _expression(source, program, facts)


def _expression(source: str, program: Any, facts: Facts) -> _Expression:
    trees = facts.prune_trees()
    trees.pop("secrets", None)
    return _Expression(
        source=source,
        program=program,
        trees=trees,
        operations=facts.operations,
        additions=facts.additions,
        cost_exponent=facts.cost_exponent,
        largest_literal=facts.largest_literal,
        accumulating_depth=facts.accumulating_depth,
        accumulated_names=frozenset(facts.accumulated_names),
        secret=facts.secret,
    )


def _library_message(exc: BaseException) -> str:
    """Keep the useful line of a library error: the located syntax error, not the preamble."""
    text = str(exc)
    marker = text.find("ERROR: ")
    if marker >= 0:
        text = text[marker + len("ERROR: ") :]
    first = text.split("\n", 1)[0].strip()
    return first or type(exc).__name__


# --- evaluating -----------------------------------------------------------------------------


def _evaluate(compiled: _Compiled, scope: Mapping[str, Any], pointer: str) -> Any:
    parts = compiled.parts
    if compiled.template.is_single:
        expression = parts[0]
        assert isinstance(expression, _Expression)
        return _run(expression, scope, pointer, compiled.template.source)
    pieces = [
        p if isinstance(p, str) else to_text(_run(p, scope, pointer, compiled.template.source))
        for p in parts
    ]
    return _joined(pieces, pointer, compiled.template.source)


def _joined(pieces: list[str], pointer: str, source: str) -> str:
    text = "".join(pieces)
    if len(text) > MAX_VALUE_BYTES:
        raise ExpressionBudgetError(
            f"rendered string is too large: {len(text)} characters, limit {MAX_VALUE_BYTES}",
            pointer=pointer,
            source=source,
        )
    return text


def _run(expression: _Expression, scope: Mapping[str, Any], pointer: str, source: str) -> Any:
    try:
        meter = Meter()
        activation = build_activation(scope, expression.trees, meter)
        _check_budget(expression, meter)
        try:
            result = expression.program.execute(activation)
        except BaseException as exc:
            if isinstance(exc, _PASS_THROUGH):
                raise
            raise ExpressionError(_runtime_message(exc)) from None
        return to_json(result, MAX_VALUE_BYTES)
    except ExpressionError as exc:
        raise type(exc)(exc.reason, pointer=pointer, source=source) from None


def _check_budget(expression: _Expression, meter: Meter) -> None:
    """Refuse, before running, an expression whose estimated cost or size is over budget."""
    length = max(meter.largest_length, expression.largest_literal)
    cost = (expression.operations + 1) * (length + 1) ** expression.cost_exponent
    if cost > MAX_COST:
        raise ExpressionBudgetError(
            f"expression is too expensive for its inputs: estimated cost {cost}, limit {MAX_COST}"
        )
    size = (expression.additions + 1) * meter.largest_size
    if size > MAX_VALUE_BYTES:
        raise ExpressionBudgetError(
            f"expression could build a value too large: estimated {size} bytes, "
            f"limit {MAX_VALUE_BYTES}"
        )
    if expression.accumulating_depth:
        _check_accumulation(expression, meter, length)


def _check_accumulation(expression: _Expression, meter: Meter, length: int) -> None:
    """Refuse a map/filter whose result the library would spend too long copying.

    The library copies a map's or filter's result on every element, so its work grows with the
    square of the length times the size of one element, which the operation count does not
    see: `l.map(x, l)` over 600 strings is cheap by cost and ran for two minutes. An element
    holds at most a list or map item, plus all that the transform reads of its free names,
    times the additions that can join them. It is counted in values, since the copy costs per
    value, not per byte.
    """
    read = sum(meter.values_read.get(name, 0) for name in expression.accumulated_names)
    element = (expression.additions + 1) * (meter.largest_item + read + 1)
    copied = element * (length + 1) ** (2 * expression.accumulating_depth)
    if copied > MAX_ACCUMULATED_VALUES:
        raise ExpressionBudgetError(
            f"map/filter would copy too much while building its result: estimated {copied} "
            f"values, limit MAX_ACCUMULATED_VALUES = {MAX_ACCUMULATED_VALUES}"
        )


def _runtime_message(exc: BaseException) -> str:
    """Say what went wrong in words a flow author can act on."""
    lines = str(exc).splitlines() or [""]
    text = lines[0]
    # Regex errors put the reason on a later `error: ...` line; keep it.
    text += "".join(f" {line.strip()}" for line in lines[1:] if line.startswith("error:"))
    if isinstance(exc, KeyError):
        message = f"no such key {exc.args[0] if exc.args else text!r}"
    elif isinstance(exc, ZeroDivisionError):
        message = text.removesuffix(" in CEL expression")
    elif isinstance(exc, OverflowError):
        message = f"integer overflow: {_first_sentence(text)}"
    elif isinstance(exc, TypeError):
        message = f"no matching operation for these value types: {_first_sentence(text)}"
    elif text.startswith("Undefined variable or function"):
        message = f"undefined: {text.split(':', 1)[1].split('.', 1)[0].strip()}"
    elif isinstance(exc, ValueError) and "Conversion Error" in text:
        message = f"a value cannot be used in an expression: {text}"
    else:
        message = _first_sentence(text) or type(exc).__name__
    return message


def _first_sentence(text: str) -> str:
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


# --- rendering ------------------------------------------------------------------------------


def _render(
    value: Any, scope: Mapping[str, Any], base: str, relative: str, *, allow_secrets: bool
) -> tuple[Any, list[SecretSlot]]:
    slots: list[SecretSlot] = []
    result = _render_value(value, scope, base, relative, slots, allow_secrets=allow_secrets)
    return result, slots


def _render_value(
    value: Any,
    scope: Mapping[str, Any],
    base: str,
    relative: str,
    slots: list[SecretSlot],
    *,
    allow_secrets: bool,
) -> Any:
    if isinstance(value, str):
        if not has_expression(value):
            return value.replace("\\${", "${") if "\\${" in value else value
        compiled = _compile_at(value, base + relative)
        if not compiled.template.secret_refs:
            return _evaluate(compiled, scope, base + relative)
        if not allow_secrets:
            raise _secrets_not_allowed(value, base + relative)
        slots.append(SecretSlot(relative, _slot_parts(compiled, scope, base + relative)))
        return ""
    if isinstance(value, Mapping):
        return {
            key: _render_value(
                item, scope, base, f"{relative}/{_escape(str(key))}", slots,
                allow_secrets=allow_secrets,
            )
            for key, item in value.items()
        }  # fmt: skip
    if isinstance(value, (list, tuple)):
        return [
            _render_value(item, scope, base, f"{relative}/{i}", slots, allow_secrets=allow_secrets)
            for i, item in enumerate(value)
        ]
    return value


def _slot_parts(
    compiled: _Compiled, scope: Mapping[str, Any], pointer: str
) -> tuple[str | SecretRef, ...]:
    """Build a slot's parts; user data only ever becomes text, never a secret reference."""
    parts: list[str | SecretRef] = []
    source = compiled.template.source
    for part in compiled.parts:
        if isinstance(part, str):
            piece: str | SecretRef = part
        elif part.secret is not None:
            piece = SecretRef(part.secret)
        else:
            piece = to_text(_run(part, scope, pointer, source))
        if isinstance(piece, str) and parts and isinstance(parts[-1], str):
            parts[-1] += piece
        elif piece != "":
            parts.append(piece)
    _joined([p for p in parts if isinstance(p, str)], pointer, source)
    return tuple(parts)


def _secrets_not_allowed(text: str, pointer: str) -> ExpressionError:
    return ExpressionError(
        "secrets can only be used in an action's `with`, where they are resolved as the "
        "action runs",
        pointer=pointer,
        source=text,
    )


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")
