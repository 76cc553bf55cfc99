"""Our CEL parser and the evaluator's parser agree on the language and on what expressions read.

The static analyser walks the tree of our small parser (`dsl/expr/_syntax.py`); the evaluator
(`cel`, bindings to the Rust crate) parses the same text again and shows no tree. Decision
record 0050 says why both stay. These tests are the proof that the two do not disagree where it
matters, on every expression in the repository and on generated ones:
- what the library accepts we accept, except the two forms we refuse on purpose;
- what the library rejects, `compile_template` rejects;
- where both accept, our tree holds exactly the identifiers and calls the library reports, and
  the paths, secret names and step ids we extract read what the library reads.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import cel
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from amosflow.dsl.expr import (
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING_DEPTH,
    MAX_VALUE_BYTES,
    compile_template,
    evaluate,
)
from amosflow.dsl.expr._analysis import _macro_variable, analyse
from amosflow.dsl.expr._syntax import (
    Call,
    Cond,
    Field,
    Ident,
    Index,
    ListLit,
    Lit,
    MapLit,
    Member,
    Method,
    NAry,
    Node,
    Segment,
    Token,
    Unary,
    lex_expression,
    parse,
    split_template,
)
from amosflow.dsl.expr._templates import _runtime_message
from amosflow.dsl.expr._values import Meter, build_activation, to_json
from amosflow.errors import ExpressionBudgetError, ExpressionError
from tests.support.pysource import parse_text

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# The expressions of shared/DSL.md, the contract, which lives outside this repository.
DSL_MD = (
    "steps.post.output.status == 200",
    "output.status == 200 && size(output.json.items) > 0",
)
UNARY = {"!": "!_", "-": "-_"}
BINARY = {
    "||": "_||_", "&&": "_&&_", "==": "_==_", "!=": "_!=_", "<": "_<_", "<=": "_<=_",
    ">": "_>_", ">=": "_>=_", "in": "@in", "+": "_+_", "-": "_-_", "*": "_*_", "/": "_/_",
    "%": "_%_",
}  # fmt: skip
# The calls the library's macro expansion leaves behind, by macro and argument count.
MACRO_CALLS = {
    ("all", 2): {"@not_strictly_false", "_&&_"},
    ("exists", 2): {"!_", "@not_strictly_false", "_||_"},
    ("exists_one", 2): {"_+_", "_==_", "_?_:_"},
    ("map", 2): {"_+_"},
    ("map", 3): {"_+_", "_?_:_"},
    ("filter", 2): {"_+_", "_?_:_"},
}


@dataclass
class Parsed:
    """What our front end makes of one expression: its tokens, and a tree or our error."""

    tokens: list[Token] | None
    tree: Node | ExpressionError


def ours(text: str) -> Parsed:
    """Lex and parse as `compile_template` does, without the template around the expression."""
    try:
        tokens, _ = lex_expression(text + "}", 0, MAX_NESTING_DEPTH)
    except ExpressionError as exc:
        return Parsed(None, exc)
    try:
        return Parsed(tokens, parse(tokens, MAX_NESTING_DEPTH))
    except ExpressionError as exc:
        return Parsed(tokens, exc)


def library(text: str) -> Any:
    """The library's compiled program, or None when its parser rejects the text."""
    try:
        return cel.compile(text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # the binding raises ValueError, and a panic is a BaseException
        return None


def refused_on_purpose(tokens: list[Token]) -> bool:
    """A form the library parses and we refuse, as we always have (decision record 0050).

    A leading-dot name (`.x`) says nothing the plain name does not; a message literal
    (`Foo{a: 1}`) builds a protobuf message, which flows do not have; `[,]` and `{,}` are a
    trailing comma with nothing before it, an accident of the library's grammar.
    """
    previous: Token | None = None
    for token in tokens:
        if token.kind == "op" and token.text == "." and _no_operand_before(previous):
            return True
        after_name = previous is not None and previous.kind == "id" and previous.text != "in"
        if token.text == "{" and after_name:
            return True
        if token.text == "," and previous is not None and previous.text in {"[", "{"}:
            return True
        previous = token
    return False


def _no_operand_before(token: Token | None) -> bool:
    if token is None:
        return True
    if token.kind == "op":
        return token.text not in {")", "]", "}"}
    return token.kind == "id" and token.text == "in"


def library_view(tree: Node) -> tuple[set[str], set[str], set[str]]:
    """The identifiers and calls the library should report for our tree.

    Returns (identifiers, calls that must be reported, calls that may be): the library folds a
    single `-` into a number literal right after it (`-1`), which our tree does not record.
    """
    view = _LibraryView()
    view.visit(tree)
    return view.names, view.required, view.optional


@dataclass
class _LibraryView:
    names: set[str] = dataclass_field(default_factory=set)
    required: set[str] = dataclass_field(default_factory=set)
    optional: set[str] = dataclass_field(default_factory=set)

    def visit(self, node: Node) -> None:
        for child in self.record(node):
            self.visit(child)

    def record(self, node: Node) -> list[Node]:
        """Note what one node reports and return its children."""
        children: list[Node] = []
        match node:
            case Ident(name=name):
                self.names.add(name)
            case Call(name=name, args=args):
                if name != "has":  # `has` is a presence test, not a call
                    self.required.add(name)
                children = args
            case Unary(ops=ops, operand=operand):
                self.unary(ops, operand)
                children = [operand]
            case NAry(ops=ops, operands=operands):
                self.required.update(BINARY[op] for op in ops)
                children = operands
            case Cond(cond=cond, then=then, other=other):
                self.required.add("_?_:_")
                children = [cond, then, other]
            case ListLit(items=items):
                children = items
            case MapLit(entries=entries):
                children = [part for entry in entries for part in entry]
            case Member(base=base, accessors=accessors):
                children = [base, *self.accessors(accessors)]
        return children

    def unary(self, ops: str, operand: Node) -> None:
        number = _starts_with_number(operand)
        if number and ops[-1] == "-" and "!" in ops:
            ops = ops[:-1]  # `!-1` is `!` on the literal `-1`
        if len(ops) % 2:  # the library drops pairs of the same operator
            folded = ops == "-" and number
            (self.optional if folded else self.required).add(UNARY[ops[0]])

    def accessors(self, accessors: list[Field | Index | Method]) -> list[Node]:
        children: list[Node] = []
        for accessor in accessors:
            if isinstance(accessor, Index):
                self.required.add("_[_]")
                children.append(accessor.expr)
            elif isinstance(accessor, Method) and _macro_variable(accessor) is None:
                self.required.add(accessor.name)
                children.extend(accessor.args)
            elif isinstance(accessor, Method):
                self.required.update(MACRO_CALLS[accessor.name, len(accessor.args)])
                children.extend(accessor.args[1:])
                if accessor.name == "filter":  # its expansion appends the variable
                    children.append(accessor.args[0])
        return children


def _starts_with_number(node: Node) -> bool:
    while isinstance(node, Member):
        node = node.base
    return isinstance(node, Lit) and type(node.value) in {int, float}


def bound_names(tree: Node) -> set[str]:
    """Every variable a comprehension macro in the tree binds."""
    found: set[str] = set()
    stack: list[Any] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, Member):
            for accessor in item.accessors:
                if not isinstance(accessor, (Field, Index)):
                    variable = _macro_variable(accessor)
                    if variable is not None:
                        found.add(variable)
        if hasattr(item, "__slots__"):
            stack.extend(getattr(item, slot) for slot in item.__slots__)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found


def assert_agree(source: str) -> None:
    """Both parsers accept or both refuse; where both accept, our tree says what the library says."""
    text = source + "\n"  # so that a comment at the end does not swallow the closing `}`
    parsed = ours(text)
    program = library(text)
    if program is None:
        with pytest.raises(ExpressionError) as caught:
            compile_template("${" + text + "}")
        if parsed.tokens:  # our lexer's own refusals (`#`, no tokens at all) keep our words
            assert "does not compile" in caught.value.reason
        return
    assert parsed.tokens is not None, f"our lexer refuses {source!r}: {parsed.tree}"
    if refused_on_purpose(parsed.tokens):
        assert isinstance(parsed.tree, ExpressionError), f"{source!r} should be refused"
        return
    assert not isinstance(parsed.tree, ExpressionError), f"we refuse {source!r}: {parsed.tree}"
    names, required, optional = library_view(parsed.tree)
    assert set(program.variables()) == names, source
    calls = set(program.functions())
    assert required <= calls <= required | optional, (source, calls, required, optional)
    try:
        facts = analyse(parsed.tree)
    except ExpressionError:
        return  # `steps` or `secrets` misused: our own rule, refused on purpose
    assert facts.names <= names | {"secrets"}
    assert names - facts.names <= bound_names(parsed.tree)


def _corpus() -> dict[str, str]:
    """Every `${ }` expression in examples/, docs/, tests/ and DSL.md, with where it was found."""
    found: dict[str, str] = {}
    for text, where in _flow_strings().items():
        try:
            parts = split_template(text, MAX_NESTING_DEPTH)
        except ExpressionError:
            continue  # not closed, or nested past the limit: refused before any parser runs
        for part in parts:
            usable = isinstance(part, Segment) and part.tokens
            if usable and len(part.source) <= MAX_EXPRESSION_LENGTH:
                found.setdefault(part.source, where)
    return found


def _flow_strings() -> dict[str, str]:
    """Every string holding `${` in the repository's flows, docs and tests."""
    strings: dict[str, str] = {}
    sources = [
        *((path, _json_strings) for path in sorted(ROOT.glob("examples/**/*.json"))),
        *((path, _markdown_strings) for path in sorted(ROOT.glob("docs/**/*.md"))),
        (ROOT / "README.md", _markdown_strings),
        *((path, _python_strings) for path in sorted(ROOT.glob("tests/**/*.py"))),
    ]
    for path, extract in sources:
        for text in extract(path.read_text(encoding="utf-8")):
            strings.setdefault(text, str(path.relative_to(ROOT)))
    for source in DSL_MD:
        strings.setdefault("${" + source + "}", "shared/DSL.md")
    return strings


def _json_strings(text: str) -> list[str]:
    return _strings_in(json.loads(text))


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if "${" in value else []
    if isinstance(value, dict):
        return [text for child in value.values() for text in _strings_in(child)]
    if isinstance(value, list):
        return [text for child in value for text in _strings_in(child)]
    return []


def _markdown_strings(text: str) -> list[str]:
    found = re.findall(r"`([^`\n]*\$\{[^`\n]*)`", text)
    for quoted in re.findall(r'"((?:[^"\\\n]|\\.)*\$\{(?:[^"\\\n]|\\.)*)"', text):
        try:
            found.append(json.loads(f'"{quoted}"'))
        except json.JSONDecodeError:
            continue
    return found


def _python_strings(text: str) -> list[str]:
    return [
        node.value
        for node in ast.walk(parse_text(text))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "${" in node.value
    ]


CORPUS = _corpus()


def test_the_corpus_is_gathered() -> None:
    """The gatherer finds the expressions of every source, so an empty corpus cannot pass."""
    sources = {where.split("/")[0] for where in CORPUS.values()}
    assert {"examples", "docs", "tests"} <= sources
    assert set(DSL_MD) <= set(CORPUS)
    assert len(CORPUS) > 200


@pytest.mark.parametrize(
    "source", sorted(CORPUS), ids=[f"{CORPUS[s]}-{i}" for i, s in enumerate(sorted(CORPUS))]
)
def test_parsers_agree_on_the_corpus(source: str) -> None:
    """Every expression of the examples, docs and tests is read the same by both parsers."""
    assert_agree(source)


def test_the_refused_forms_are_ones_the_library_parses() -> None:
    """The two refusals are real: the library parses them and `compile_template` refuses them."""
    for source in (".inputs", "inputs.a + .vars", "Foo{a: 1}", "inputs.a{b: 1}", "[,]", "{ , }"):
        assert library(source) is not None
        parsed = ours(source)
        assert parsed.tokens is not None
        assert refused_on_purpose(parsed.tokens)
        with pytest.raises(ExpressionError, match="does not compile"):
            compile_template("${" + source + "}")


# --- generated expressions --------------------------------------------------------------------

FREE = ["inputs", "vars", "item", "index", "x", "y"]
BOUND = ["x", "y", "v"]
FIELDS = ["a", "b", "c", "l", "m", "n", "s", "output", "status"]
GAPS = st.sampled_from(["", " ", "  ", "\n", "\t", " // note\n", "\f"])
NUMBERS = st.sampled_from(
    ["0", "1", "2", "42", "-3", "0x1F", "1u", "0x2u", "1.5", ".5", "2.0", "1e3", "2.5E-1",
     "9223372036854775807", "18446744073709551615u"]
)  # fmt: skip
WORDS = st.sampled_from(["true", "false", "null"])
STRING_PARTS = st.sampled_from(
    ["a", "B", " ", "}", "{", "${", "//", "é", "\\n", "\\t", "\\\\", "\\'", '\\"', "\\x41",
     "\\u00e9", "\\U0001F600", "\\101", "\\a", "\\?", "\\`"]
)  # fmt: skip


@st.composite
def string_literals(draw: st.DrawFn) -> str:
    """A CEL string or bytes literal with any prefix, quote style and escapes."""
    prefix = draw(st.sampled_from(["", "", "r", "R", "b", "B", "br", "bR"]))
    quote = draw(st.sampled_from(["'", '"', "'''", '"""']))
    body = "".join(draw(st.lists(STRING_PARTS, max_size=5)))
    if "r" in prefix.lower():
        body = body.replace("\\", "")  # a raw string cannot escape its quote
    if quote in {"'", '"'}:
        body = body.replace(quote, "")
    return f"{prefix}{quote}{body}{quote}"


def atoms(names: list[str]) -> st.SearchStrategy[str]:
    """Leaves: names, paths off `steps`, numbers, words and strings."""
    return (
        st.sampled_from(names)
        | st.sampled_from(["steps.a.output", "steps['a'].status", 'steps["a"]'])
        | NUMBERS
        | WORDS
        | string_literals()
    )


def expressions(names: list[str]) -> st.SearchStrategy[str]:
    """CEL built from its grammar: every operator, selection, index, call, macro and literal."""

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        field = st.sampled_from(FIELDS)
        bound = st.sampled_from(BOUND)
        joined = st.lists(inner, max_size=3).map(", ".join)
        comma = st.sampled_from(["", ","])
        return st.one_of(
            st.builds("{} {} {}".format, inner, st.sampled_from(sorted(BINARY)), inner),
            st.builds("{}{}".format, st.sampled_from(["!", "-", "!!", "--", "---", "-!"]), inner),
            st.builds("{} ? {} : {}".format, inner, inner, inner),
            st.builds("({})".format, inner),
            st.builds("{}.{}".format, inner, field),
            st.builds("{}[{}]".format, inner, inner),
            st.builds("{}.{}({})".format, inner, st.sampled_from(["size", "startsWith"]), joined),
            st.builds(
                "{}.{}({}, {})".format,
                inner,
                st.sampled_from(["all", "exists", "exists_one", "map", "filter"]),
                bound,
                inner,
            ),
            st.builds("{}.map({}, {}, {})".format, inner, bound, inner, inner),
            st.builds("{}({})".format, st.sampled_from(["size", "int", "string", "type"]), inner),
            st.builds("has({}.{})".format, inner, field),
            st.builds("[{}{}]".format, joined, comma),
            st.builds(
                "{{{}{}}}".format,
                st.lists(st.builds("{}: {}".format, inner, inner), max_size=2).map(", ".join),
                comma,
            ),
        )

    return st.recursive(atoms(names + BOUND), extend, max_leaves=8)


@st.composite
def spaced(draw: st.DrawFn, source: str) -> str:
    """Put whitespace and comments between the tokens of an expression, where they may go."""
    pieces = re.split(r"(\s+)", source)
    return "".join(piece if piece.strip() else draw(GAPS) or " " for piece in pieces)


TOKENS = st.sampled_from(
    ["a", "inputs", "x", ".", ",", "(", ")", "[", "]", "{", "}", "?", ":", "!", "-", "+",
     "*", "/", "%", "==", "<", "<=", "&&", "||", "in", "1", "1u", "1.", ".5", "0x", "0X1",
     "1e", "'s'", '"t"', "r'\\'", "rb'z'", "'''m'''", "'\\q'", "'\\ud800'", "has", "map",
     "all", "true", "null", "if", "as", "let", " ", "\v", "\n", "// c\n", "é", "#", "$", "@",
     "?.", ".?", "'\n'", "99999999999999999999"]
)  # fmt: skip


@SETTINGS
@given(expressions(FREE).flatmap(spaced))
def test_parsers_agree_on_generated_expressions(source: str) -> None:
    """Expressions generated from the CEL grammar are read the same by both parsers."""
    _assert_agree_closed(source)


@SETTINGS
@given(st.lists(TOKENS, min_size=1, max_size=10).map("".join))
def test_parsers_agree_on_token_soup(source: str) -> None:
    """Arbitrary runs of CEL tokens, most of them wrong, are accepted or refused alike."""
    _assert_agree_closed(source)


def _assert_agree_closed(source: str) -> None:
    """Check agreement when the text stays inside its `${ }` (a bare `}` would close it)."""
    try:
        _, end = lex_expression(source + "\n}", 0, MAX_NESTING_DEPTH)
    except ExpressionError:
        end = len(source) + 1
    assume(end == len(source) + 1)
    assert_agree(source)


# --- what an expression reads -------------------------------------------------------------------

LEAF: dict[str, Any] = {
    "a": 1, "b": 2.5, "c": "text", "l": [1, 2, 3], "m": {"a": 1, "b": [True]}, "n": None,
    "s": "x}y", "output": {"a": 1}, "status": 200,
}  # fmt: skip
NESTED: dict[str, Any] = {**LEAF, "a": dict(LEAF), "l": [dict(LEAF), 2], "m": {"a": dict(LEAF)}}
SCOPE: dict[str, Any] = {
    "inputs": NESTED,
    "vars": dict(LEAF),
    "item": dict(LEAF),
    "index": 1,
    "x": 2,
    "y": "y",
    "v": [1, "v"],
    "steps": {"a": {"output": NESTED, "status": "completed"}, "b": {"output": 1}},
}


def outcome(run: Any) -> tuple[str, Any] | None:
    """("ok", value) or ("error", kind of error); None when the budget refused to run it at all.

    The library iterates a map in a different order on every run, so lists are compared as
    multisets and an error by its kind, without the values or types that it names.
    """
    try:
        return "ok", _unordered(run())
    except ExpressionBudgetError:
        return None
    except ExpressionError as exc:
        return "error", re.sub(r"'[^']*'|\d+|,? got .*", "_", exc.reason.split(":")[0])


def _unordered(value: Any) -> Any:
    if isinstance(value, list):
        return sorted((_unordered(item) for item in value), key=repr)
    if isinstance(value, dict):
        return sorted(((key, _unordered(item)) for key, item in value.items()), key=repr)
    return value


def library_result(program: Any) -> Any:
    """Run the library on the whole scope, unpruned, as our evaluator would report it."""
    activation = build_activation(SCOPE, dict.fromkeys(SCOPE), Meter())
    try:
        result = program.execute(activation)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the binding maps runtime errors to several exception types
        raise ExpressionError(_runtime_message(exc)) from None
    return to_json(result, MAX_VALUE_BYTES)


@SETTINGS
@given(expressions(FREE).flatmap(spaced))
def test_pruning_to_our_paths_never_changes_a_result(source: str) -> None:
    """Our evaluator copies only the paths our tree says are read; the library agrees on them."""
    text = source + "\n"
    try:
        compile_template("${" + text + "}")
    except ExpressionError:
        assume(False)
    ours_outcome = outcome(lambda: evaluate("${" + text + "}", SCOPE))
    assume(ours_outcome is not None)
    assert ours_outcome == outcome(lambda: library_result(cel.compile(text))), source


SECRETS = st.lists(
    st.builds(
        "{}{}".format,
        st.sampled_from(["", " "]),
        st.sampled_from(["a", "erp", "token", "_x1"]).map(".{}".format)
        | st.sampled_from(["a", "erp.token", "a b", "x/y", "\\x41"]).flatmap(
            lambda key: st.sampled_from([f"['{key}']", f'["{key}"]', f"[r'{key}']", f"[b'{key}']"])
        ),
    ),
    min_size=1,
    max_size=3,
).map(lambda accessors: "secrets" + "".join(accessors))


@SETTINGS
@given(SECRETS.flatmap(spaced) | expressions(["secrets"]).flatmap(spaced))
def test_a_secret_reference_names_what_the_library_reads(source: str) -> None:
    """The secret we name is the one the library reads, wherever it sits under `secrets`."""
    try:
        template = compile_template("${" + source + "\n}")
    except ExpressionError:
        template = None
    assume(template is not None and template.secret_refs)
    assert template is not None
    text = source + "\n"
    parsed = ours(text)
    assert parsed.tokens is not None
    assert not isinstance(parsed.tree, ExpressionError)
    (path,) = analyse(parsed.tree).paths["secrets"]
    assert template.secret_refs == {".".join(str(key) for key in path)}
    value: Any = "the-secret"
    for key in reversed(path):
        value = {key: value}
    program = cel.compile(text)
    if any(token.kind == "bytes" for token in parsed.tokens):
        # The one difference we keep (decision record 0050): `secrets[b'a']` names the secret
        # `a` for us, while the library would look up a bytes key, which no map here has.
        with pytest.raises(TypeError):
            program.execute({"secrets": value})
        return
    assert program.execute({"secrets": value}) == "the-secret"
