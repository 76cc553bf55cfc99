"""Lexing, template splitting and a small CEL parser used to analyse expressions statically."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from amosflow.errors import ExpressionError

MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
_LITERAL_WORDS: Final = {"true": True, "false": False, "null": None}
_WHITESPACE: Final = frozenset(" \t\n\r\f\v")
_IDENT_START: Final = frozenset("_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_IDENT_CHARS: Final = _IDENT_START | frozenset("0123456789")
_DIGITS: Final = frozenset("0123456789")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_STRING_PREFIXES: Final = frozenset({"r", "b", "rb", "br"})
_TWO_CHAR_OPS: Final = frozenset({"==", "!=", "<=", ">=", "&&", "||"})
_ONE_CHAR_OPS: Final = frozenset("<>+-*/%!?:.,()[]{}")
_OPENERS: Final = frozenset("([{")
_CLOSERS: Final = frozenset(")]}")
_SIMPLE_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token; `value` is the decoded text of a string literal (None if undecodable)."""

    kind: str
    text: str
    pos: int
    value: str | None = None


class NestingError(ExpressionError):
    """An expression nests deeper than allowed; raised before the library ever sees it."""


def _fail(message: str) -> ExpressionError:
    return ExpressionError(f"expression does not compile: {message}")


class _Lexer:
    """Turns CEL source into tokens while tracking bracket nesting."""

    def __init__(self, text: str, start: int, max_depth: int) -> None:
        self.text = text
        self.start = start
        self.max_depth = max_depth
        self.tokens: list[Token] = []
        self.braces = 0
        self.depth = 0

    def run(self) -> int:
        """Lex until the `}` that closes the expression and return its offset."""
        text = self.text
        i = self.start
        n = len(text)
        while i < n:
            ch = text[i]
            if ch in _WHITESPACE:
                i += 1
            elif text.startswith("//", i):
                newline = text.find("\n", i)
                i = n if newline < 0 else newline + 1
            elif ch in _IDENT_START:
                i = self.word(i)
            elif ch in "'\"":
                token, i = _lex_string(text, i, i, "")
                self.tokens.append(token)
            elif ch in _DIGITS or (ch == "." and text[i + 1 : i + 2] in _DIGITS):
                token, i = _lex_number(text, i)
                self.tokens.append(token)
            elif text[i : i + 2] in _TWO_CHAR_OPS:
                self.tokens.append(Token("op", text[i : i + 2], i))
                i += 2
            elif ch in _ONE_CHAR_OPS:
                if ch == "}" and self.braces == 0:
                    return i
                self.bracket(ch)
                self.tokens.append(Token("op", ch, i))
                i += 1
            else:
                raise _fail(f"unexpected character {ch!r} at offset {i - self.start}")
        raise ExpressionError("`${` is not closed by a matching `}`")

    def word(self, i: int) -> int:
        """Lex an identifier, or a string literal when the word is a string prefix."""
        text = self.text
        j = i + 1
        while j < len(text) and text[j] in _IDENT_CHARS:
            j += 1
        word = text[i:j]
        if word.lower() in _STRING_PREFIXES and text[j : j + 1] in {"'", '"'}:
            token, j = _lex_string(text, i, j, word.lower())
            self.tokens.append(token)
        else:
            self.tokens.append(Token("id", word, i))
        return j

    def bracket(self, ch: str) -> None:
        """Track nesting; refusing deep nesting here protects the library's recursive parser."""
        if ch in _OPENERS:
            self.depth += 1
            if self.depth > self.max_depth:
                raise NestingError(f"expression nests brackets deeper than {self.max_depth} levels")
            self.braces += ch == "{"
        elif ch in _CLOSERS:
            self.depth = max(self.depth - 1, 0)
            self.braces -= ch == "}"


def lex_expression(text: str, start: int, max_depth: int) -> tuple[list[Token], int]:
    """Lex CEL from `start` up to the `}` that closes its `${`, checking bracket nesting."""
    lexer = _Lexer(text, start, max_depth)
    end = lexer.run()
    return lexer.tokens, end


def _lex_number(text: str, i: int) -> tuple[Token, int]:
    n = len(text)
    if text.startswith(("0x", "0X"), i):
        j = i + 2
        while j < n and text[j] in _HEX:
            j += 1
        kind = "int"
    else:
        j = _digits(text, i)
        kind = "int"
        if text[j : j + 1] == "." and text[j + 1 : j + 2] in _DIGITS:
            kind = "float"
            j = _digits(text, j + 1)
        k = j + 1 if text[j : j + 1] in {"e", "E"} else j
        k += text[k : k + 1] in {"+", "-"} and k > j
        if k > j and text[k : k + 1] in _DIGITS:
            kind = "float"
            j = _digits(text, k)
    if kind == "int" and text[j : j + 1] in {"u", "U"}:
        j += 1
        kind = "uint"
    return Token(kind, text[i:j], i), j


def _digits(text: str, i: int) -> int:
    while i < len(text) and text[i] in _DIGITS:
        i += 1
    return i


def _lex_string(text: str, start: int, quote_at: int, prefix: str) -> tuple[Token, int]:
    quote = text[quote_at]
    delimiter = quote * 3 if text.startswith(quote * 3, quote_at) else quote
    raw = "r" in prefix
    i = quote_at + len(delimiter)
    body_start = i
    n = len(text)
    while i < n:
        if text.startswith(delimiter, i):
            body = text[body_start:i]
            value = body if raw else _decode_escapes(body)
            kind = "bytes" if "b" in prefix else "str"
            end = i + len(delimiter)
            return Token(kind, text[start:end], start, value), end
        i += 2 if (text[i] == "\\" and not raw) else 1
    raise _fail("unterminated string literal")


def _decode_escapes(body: str) -> str | None:
    """Decode CEL escapes; None when an escape is not understood (the value then stays dynamic)."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        code = body[i + 1 : i + 2]
        if code in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[code])
            i += 2
            continue
        width = {"x": 2, "X": 2, "u": 4, "U": 8}.get(code)
        digits = body[i + 2 : i + 2 + width] if width else body[i + 1 : i + 4]
        base = 16 if width else 8
        try:
            out.append(chr(int(digits, base)))
        except ValueError:
            return None
        i += (2 + width) if width else 4
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Segment:
    """A `${ … }` found in a flow string: the CEL source and its tokens."""

    source: str
    tokens: list[Token]


def split_template(text: str, max_depth: int) -> list[str | Segment]:
    r"""Split a flow string into literal text (with `\${` unescaped) and expression segments."""
    parts: list[str | Segment] = []
    literal: list[str] = []
    i = 0
    while True:
        at = text.find("${", i)
        if at < 0:
            literal.append(text[i:])
            break
        if at > 0 and text[at - 1] == "\\":
            literal.append(text[i : at - 1] + "${")
            i = at + 2
            continue
        literal.append(text[i:at])
        tokens, end = lex_expression(text, at + 2, max_depth)
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(Segment(text[at + 2 : end], tokens))
        i = end + 1
    tail = "".join(literal)
    if tail:
        parts.append(tail)
    return [p for p in parts if p != ""]


# --- a small parser: just enough structure for names, paths, macros and cost -------------


@dataclass(slots=True)
class Lit:
    """A literal; `size` is its length for strings and bytes."""

    value: object
    size: int = 0


@dataclass(slots=True)
class Ident:
    """A bare identifier."""

    name: str


@dataclass(slots=True)
class Field:
    """`.name` selection."""

    name: str


@dataclass(slots=True)
class Index:
    """`[expr]` indexing."""

    expr: Node


@dataclass(slots=True)
class Method:
    """`.name(args)`: a receiver-style call or macro."""

    name: str
    args: list[Node]


@dataclass(slots=True)
class Member:
    """A primary followed by selections, indexes and method calls, kept flat."""

    base: Node
    accessors: list[Field | Index | Method]


@dataclass(slots=True)
class Call:
    """A global function call (or the `has` macro)."""

    name: str
    args: list[Node]


@dataclass(slots=True)
class ListLit:
    """`[a, b]`."""

    items: list[Node]


@dataclass(slots=True)
class MapLit:
    """`{k: v}`."""

    entries: list[tuple[Node, Node]]


@dataclass(slots=True)
class Unary:
    """A run of prefix operators (`!`, `-`), kept flat."""

    ops: str
    operand: Node


@dataclass(slots=True)
class NAry:
    """A left-associative chain of binary operators of one precedence level, kept flat."""

    ops: list[str]
    operands: list[Node]


@dataclass(slots=True)
class Cond:
    """`a ? b : c`."""

    cond: Node
    then: Node
    other: Node


Node = Lit | Ident | Member | Call | ListLit | MapLit | Unary | NAry | Cond

_LEVELS: Final[tuple[frozenset[str], ...]] = (
    frozenset({"||"}),
    frozenset({"&&"}),
    frozenset({"<", "<=", ">", ">=", "==", "!=", "in"}),
    frozenset({"+", "-"}),
    frozenset({"*", "/", "%"}),
)


@dataclass(slots=True)
class _Parser:
    tokens: list[Token]
    max_depth: int
    pos: int = 0
    depth: int = 0
    _eof: Token = field(default_factory=lambda: Token("eof", "", -1))

    def peek(self) -> Token:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else self._eof

    def take(self) -> Token:
        token = self.peek()
        self.pos += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind not in {"op", "id"}:
            raise _fail(f"expected {text!r}, got {token.text or 'end of expression'!r}")

    def is_op(self, *texts: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text in texts

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > self.max_depth:
            raise NestingError(f"expression nests deeper than {self.max_depth} levels")
        node = self.binary(0)
        if self.is_op("?"):
            self.take()
            then = self.binary(0)
            self.expect(":")
            node = Cond(node, then, self.expr())
        self.depth -= 1
        return node

    def binary(self, level: int) -> Node:
        if level == len(_LEVELS):
            return self.unary()
        first = self.binary(level + 1)
        ops: list[str] = []
        operands = [first]
        while True:
            token = self.peek()
            if token.kind not in {"op", "id"} or token.text not in _LEVELS[level]:
                break
            self.take()
            ops.append(token.text)
            operands.append(self.binary(level + 1))
        return NAry(ops, operands) if ops else first

    def unary(self) -> Node:
        ops: list[str] = []
        while self.is_op("!", "-"):
            ops.append(self.take().text)
        node = self.member()
        return Unary("".join(ops), node) if ops else node

    def member(self) -> Node:
        base = self.primary()
        accessors: list[Field | Index | Method] = []
        while True:
            if self.is_op("."):
                self.take()
                name = self.take()
                if name.kind != "id" or name.text in _LITERAL_WORDS or name.text == "in":
                    raise _fail(f"expected a field name after '.', got {name.text!r}")
                if self.is_op("("):
                    accessors.append(Method(name.text, self.args(")")))
                else:
                    accessors.append(Field(name.text))
            elif self.is_op("["):
                self.take()
                accessors.append(Index(self.expr()))
                self.expect("]")
            else:
                break
        return Member(base, accessors) if accessors else base

    def args(self, closer: str) -> list[Node]:
        self.expect("(" if closer == ")" else "[")
        items: list[Node] = []
        while not self.is_op(closer):
            items.append(self.expr())
            if not self.is_op(closer):
                self.expect(",")
        self.take()
        return items

    def primary(self) -> Node:
        token = self.peek()
        node: Node
        if token.kind == "id":
            node = self.identifier(self.take())
        elif token.kind in {"str", "bytes"}:
            node = Lit(self.take().value, len(token.text))
        elif token.kind in {"int", "uint", "float"}:
            node = Lit(_number_value(self.take()))
        elif self.is_op("("):
            self.take()
            node = self.expr()
            self.expect(")")
        elif self.is_op("["):
            node = ListLit(self.args("]"))
        elif self.is_op("{"):
            node = self.map_literal()
        else:
            raise _fail(f"unexpected {token.text or 'end of expression'!r}")
        return node

    def identifier(self, token: Token) -> Node:
        if token.text in _LITERAL_WORDS:
            return Lit(_LITERAL_WORDS[token.text])
        if token.text == "in":
            raise _fail("unexpected 'in'")
        if self.is_op("("):
            return Call(token.text, self.args(")"))
        return Ident(token.text)

    def map_literal(self) -> MapLit:
        self.take()
        entries: list[tuple[Node, Node]] = []
        while not self.is_op("}"):
            key = self.expr()
            self.expect(":")
            entries.append((key, self.expr()))
            if not self.is_op("}"):
                self.expect(",")
        self.take()
        return MapLit(entries)


def _number_value(token: Token) -> int | float | None:
    text = token.text.rstrip("uU")
    try:
        if token.kind == "float":
            return float(text)
        return int(text, 16) if text[:2].lower() == "0x" else int(text)
    except ValueError:
        return None


def parse(tokens: list[Token], max_depth: int) -> Node:
    """Parse the tokens of one expression into a flat syntax tree."""
    parser = _Parser(tokens, max_depth)
    node = parser.expr()
    if parser.pos != len(tokens):
        raise _fail(f"unexpected {parser.peek().text!r}")
    return node
