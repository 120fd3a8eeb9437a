"""The screen language: a user's filter over result columns, parsed, type-checked and compiled to polars.

A screen is one condition such as ``close > sma_200 and prev(close) <= prev(sma_200)``. The text is parsed by
our own grammar (`GRAMMAR`, an LALR(1) parser built by lark) into a small syntax tree, checked against the
caller's column mapping (name → `Kind`) and compiled to a polars expression in which every literal is a bound
value (`pl.lit`). Nothing is ever evaluated as Python or concatenated into SQL. docs/screens.md is the user's
reference; the rules the code enforces are:

* Types: number, boolean, string (categorical columns too) and date. Arithmetic, ordering, ``between``,
  ``abs``, ``min`` and ``max`` take numbers (ordering and ``between`` also dates); ``==``/``!=``/``in`` take
  two values of one kind; ``and``/``or``/``not`` take conditions; a screen as a whole is a condition.
* Nulls: a comparison (``< <= > >= == !=``, ``in``, ``not in``, ``between``) with a null operand is false, so
  a row lacking a value is not a hit; a boolean column that is null reads as false where a condition is
  expected; arithmetic with a null is null; ``x / 0`` is null. NaN counts as null everywhere. So ``and``,
  ``or`` and ``not`` only ever see true or false, and ``not`` is the exact complement.
* ``prev(x)`` is the symbol's value of ``x`` on the previous session, read from the column ``prev__x``
  (`prev_name`) that the caller adds with `with_previous`; `Screen.prev_columns` says which are needed.
* Limits (`MAX_LENGTH`, `MAX_DEPTH`, `MAX_TERMS`, `MAX_LITERAL_LENGTH`) are enforced while the text is lexed,
  before the parser sees it, and on the tree before anything recurses over it; the lexer and the LALR parser
  are iterative and linear, so no input reaches Python's recursion limit or takes superlinear time.

Every refusal is a `ScreenError` subclass carrying the message, the 0-based character position (plus 1-based
line and column) and what was expected there.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import TypeVar

import polars as pl
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from lark.parsers.lalr_interactive_parser import InteractiveParser

from technic_core.errors import TechnicError

#: Longest screen text, in characters; checked before anything else reads it.
MAX_LENGTH = 4_000
#: Deepest nesting: of parentheses, and of the syntax tree (operators, function calls, prefix operators).
MAX_DEPTH = 32
#: Most values and names (columns, numbers, strings, true/false, function names) in one screen.
MAX_TERMS = 200
#: Longest single number, string or name, in characters.
MAX_LITERAL_LENGTH = 256

#: `prev(x)` reads the column named PREV_PREFIX + x: the symbol's previous-session value of x.
PREV_PREFIX = "prev__"

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


class Kind(StrEnum):
    """What a column or an expression holds, as the language sees it."""

    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"
    DATE = "date"


# -------------------------------------------------------------------- errors


class ScreenError(TechnicError, ValueError):
    """A screen the language refuses. `str()` is the message with its place:
    ``expected a value after '>' at 12 (line 1, column 13)``.

    `position` is the 0-based character offset into the text; `line` and `column` are 1-based, as editors
    show them. `expected` says what would have been accepted there (may be empty).
    """

    def __init__(self, message: str, text: str, position: int, expected: Iterable[str] = ()) -> None:
        self.message = message
        self.position = position
        self.line, self.column = _line_column(text, position)
        self.expected = tuple(expected)
        super().__init__(f"{message} at {position} (line {self.line}, column {self.column})")

    def to_dict(self) -> dict[str, object]:
        """The error as JSON-ready data, for an API response."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "position": self.position,
            "line": self.line,
            "column": self.column,
            "expected": list(self.expected),
        }


class ScreenSyntaxError(ScreenError):
    """The text does not follow the grammar: an unexpected character, token or end of input."""


class ScreenLimitError(ScreenError):
    """The text exceeds a limit: length, nesting depth, number of terms, literal length or number range."""


class ScreenTypeError(ScreenError):
    """A term has the wrong type for where it stands (``sector > 3``, ``abs(sector)``, ``prev(3)``)."""


class UnknownNameError(ScreenError):
    """A column or function the screen names does not exist; `suggestions` holds the closest known names."""

    def __init__(self, message: str, text: str, position: int, suggestions: Iterable[str] = ()) -> None:
        self.suggestions = tuple(suggestions)
        super().__init__(message, text, position, self.suggestions)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "suggestions": list(self.suggestions)}


def _line_column(text: str, position: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, position) + 1
    return text.count("\n", 0, position) + 1, position - line_start + 1


# -------------------------------------------------------------------- grammar

#: The whole syntax, lowest precedence first. Keywords are case-insensitive; names are not.
GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: NOT not_expr -> not_
    | comparison
?comparison: sum
    | sum COMPARE sum -> compare
    | sum NOT? _IN "(" or_expr ("," or_expr)* ")" -> membership
    | sum _BETWEEN sum _AND sum -> between
?sum: product (ADD product)*
?product: unary (MUL unary)*
?unary: atom
    | ADD unary -> sign
?atom: NUMBER -> number
    | STRING -> string
    | TRUE -> true
    | FALSE -> false
    | NAME -> name
    | NAME "(" [or_expr ("," or_expr)*] ")" -> call
    | "(" or_expr ")"

_OR: "or"i
_AND: "and"i
NOT: "not"i
_IN: "in"i
_BETWEEN: "between"i
TRUE: "true"i
FALSE: "false"i
COMPARE: "<=" | ">=" | "==" | "!=" | "<" | ">"
ADD: "+" | "-"
MUL: "*" | "/"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
STRING: /"([^"\\\n]|\\.)*"|'([^'\\\n]|\\.)*'/
%ignore /\s+/
"""

#: Token types that are terms (counted against MAX_TERMS) and literals (held to MAX_LITERAL_LENGTH).
_TERMS = frozenset({"NAME", "NUMBER", "STRING", "TRUE", "FALSE"})
_LITERALS = frozenset({"NAME", "NUMBER", "STRING"})
#: Tokens that can start a value: when the parser accepts these, it wants "a value" (a sign or 'not' too).
_VALUE_START = frozenset({"NAME", "NUMBER", "STRING", "TRUE", "FALSE", "LPAR", "ADD", "NOT"})
_OPERATORS = frozenset({"COMPARE", "ADD", "MUL", "NOT", "_IN", "_BETWEEN", "_AND", "_OR"})
#: How an accepted token type reads in an error message, in the order messages list them.
_DESCRIPTIONS = {
    "COMPARE": "a comparison",
    "ADD": "'+' or '-'",
    "MUL": "'*' or '/'",
    "NOT": "'not in'",
    "_IN": "'in'",
    "_BETWEEN": "'between'",
    "_AND": "'and'",
    "_OR": "'or'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "$END": "end of input",
}

FUNCTIONS = ("abs", "min", "max", "prev")


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False)


# -------------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class Node:
    """A term of the syntax tree; `position`/`end` delimit its text."""

    position: int
    end: int


@dataclass(frozen=True)
class Number(Node):
    value: float


@dataclass(frozen=True)
class String(Node):
    value: str


@dataclass(frozen=True)
class Boolean(Node):
    value: bool


@dataclass(frozen=True)
class Name(Node):
    name: str


@dataclass(frozen=True)
class Call(Node):
    function: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Unary(Node):
    """``not x``, ``-x`` or ``+x``."""

    op: str
    operand: Node


@dataclass(frozen=True)
class Logical(Node):
    """``a and b and ...`` or ``a or b or ...``, flattened (both are associative)."""

    op: str
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Arithmetic(Node):
    """``a + b - c`` or ``a * b / c``: `ops[i]` stands between `operands[i]` and `operands[i + 1]`."""

    operands: tuple[Node, ...]
    ops: tuple[str, ...]


@dataclass(frozen=True)
class Compare(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Membership(Node):
    """``subject in (items)`` or, `negated`, ``subject not in (items)``."""

    subject: Node
    items: tuple[Node, ...]
    negated: bool


@dataclass(frozen=True)
class Between(Node):
    subject: Node
    low: Node
    high: Node


def parse(text: str) -> Node:
    """The syntax tree of `text`; raises `ScreenSyntaxError` or `ScreenLimitError`. Names are not resolved."""
    if len(text) > MAX_LENGTH:
        raise ScreenLimitError(f"the screen is longer than {MAX_LENGTH} characters", text, MAX_LENGTH)
    tokens, lexer_error = _tokens(text)
    interactive = _parser().parse_interactive()
    for index, token in enumerate(tokens):
        try:
            interactive.feed_token(token)
        except UnexpectedToken:
            raise _unexpected(text, tokens, index, interactive) from None
    if lexer_error is not None:
        position = lexer_error.pos_in_stream or 0
        character = text[position]
        message = "unterminated string" if character in "\"'" else f"unexpected character {character!r}"
        raise ScreenSyntaxError(message, text, position, _describe(interactive.accepts()))
    if not tokens:
        raise ScreenSyntaxError("the screen is empty", text, 0, ("a condition",))
    try:
        tree: Tree[Token] = interactive.feed_eof(tokens[-1])
    except UnexpectedToken:
        raise _unexpected(text, tokens, len(tokens), interactive) from None
    _check_depth(text, tree)
    return _Builder(text).node(tree)


def _tokens(text: str) -> tuple[list[Token], UnexpectedCharacters | None]:
    """The tokens of `text` up to the first character no token matches (returned as the second item).

    Limits are checked token by token, so an oversized screen is refused at the first offending token
    without lexing the rest.
    """
    tokens: list[Token] = []
    depth = terms = 0
    try:
        for token in _parser().lex(text):
            position = _start(token)
            if token.type == "LPAR":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ScreenLimitError(f"parentheses nest deeper than {MAX_DEPTH} levels", text, position)
            elif token.type == "RPAR":
                depth -= 1
            if token.type in _TERMS:
                terms += 1
                if terms > MAX_TERMS:
                    raise ScreenLimitError(f"the screen has more than {MAX_TERMS} terms", text, position)
            if token.type in _LITERALS and len(token) > MAX_LITERAL_LENGTH:
                raise ScreenLimitError(
                    f"a {_TOKEN_NOUNS[token.type]} longer than {MAX_LITERAL_LENGTH} characters", text, position
                )
            tokens.append(token)
    except UnexpectedCharacters as error:
        return tokens, error
    return tokens, None


_TOKEN_NOUNS = {"NAME": "name", "NUMBER": "number", "STRING": "string"}


def _start(token: Token) -> int:
    # Tokens from the lexer always carry their position; lark types it optional for hand-made tokens.
    return token.start_pos or 0


def _end(token: Token) -> int:
    return token.end_pos or _start(token) + len(token)


def _unexpected(text: str, tokens: list[Token], index: int, interactive: InteractiveParser) -> ScreenSyntaxError:
    """The error for tokens[index] (or the end of input, when index is past the last token)."""
    expected = _describe(interactive.accepts())
    wanted = " or ".join(expected) if len(expected) < 2 else ", ".join(expected[:-1]) + " or " + expected[-1]
    after = f" after {_shown(tokens[index - 1])}" if index > 0 else ""
    if index < len(tokens):
        found = tokens[index]
        return ScreenSyntaxError(f"expected {wanted}{after}, found {_shown(found)}", text, _start(found), expected)
    return ScreenSyntaxError(f"expected {wanted}{after}", text, _end(tokens[-1]), expected)


def _describe(accepted: Iterable[str]) -> tuple[str, ...]:
    """What the parser accepts, in words: 'a value' for anything that starts one, 'an operator' for three or
    more operators, else each token."""
    accepted = set(accepted)
    described: list[str] = []
    if "NAME" in accepted:  # a name is a value wherever one may stand
        described.append("a value")
        accepted -= _VALUE_START
    elif len(accepted & _OPERATORS) >= 3:
        described.append("an operator")
        accepted -= _OPERATORS
    described.extend(words for token, words in _DESCRIPTIONS.items() if token in accepted)
    return tuple(described)


def _shown(token: Token) -> str:
    value = str(token)
    return repr(value if len(value) <= 24 else value[:23] + "…")


def _check_depth(text: str, tree: Tree[Token]) -> None:
    """Refuse a tree deeper than MAX_DEPTH, walking it with an explicit stack: the builder below recurses."""
    stack: list[tuple[Tree[Token], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ScreenLimitError(f"the screen nests deeper than {MAX_DEPTH} levels", text, node.meta.start_pos)
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


class _Builder:
    """Lark's parse tree → our syntax tree, with literals decoded and associative chains flattened."""

    def __init__(self, text: str) -> None:
        self.text = text

    def node(self, tree: Tree[Token]) -> Node:
        children = tree.children
        span = (tree.meta.start_pos, tree.meta.end_pos)
        match tree.data:
            case "number":
                return Number(*span, self._number(_token(children[0])))
            case "string":
                return String(*span, _unescape(str(children[0])[1:-1]))
            case "true" | "false":
                return Boolean(*span, tree.data == "true")
            case "name":
                return Name(*span, str(children[0]))
            case "call":
                return Call(*span, str(children[0]), tuple(self.node(_tree(child)) for child in children[1:]))
            case "sign":
                op, operand = str(children[0]), self.node(_tree(children[1]))
                if isinstance(operand, Number):  # a negative number is one literal, e.g. in `x in (-1, 1)`
                    return Number(*span, -operand.value if op == "-" else operand.value)
                return Unary(*span, op, operand)
            case "not_":
                return Unary(*span, "not", self.node(_tree(children[1])))
            case "or_expr" | "and_expr":
                op = "or" if tree.data == "or_expr" else "and"
                items: list[Node] = []
                for child in children:
                    item = self.node(_tree(child))
                    items.extend(item.items if isinstance(item, Logical) and item.op == op else (item,))
                return Logical(*span, op, tuple(items))
            case "sum" | "product":
                first = self.node(_tree(children[0]))
                group = _ADDITIVE if tree.data == "sum" else _MULTIPLICATIVE
                operands: list[Node] = [first]
                ops: list[str] = []
                if isinstance(first, Arithmetic) and first.ops[0] in group:
                    # `(a - b) + c` is the left-to-right chain `a - b + c`.
                    operands, ops = list(first.operands), list(first.ops)
                for op_token, child in zip(children[1::2], children[2::2]):
                    ops.append(str(op_token))
                    operands.append(self.node(_tree(child)))
                return Arithmetic(*span, tuple(operands), tuple(ops))
            case "compare":
                return Compare(*span, str(children[1]), self.node(_tree(children[0])), self.node(_tree(children[2])))
            case "membership":
                negated = isinstance(children[1], Token) and children[1].type == "NOT"
                items_start = 2 if negated else 1
                return Membership(
                    *span,
                    self.node(_tree(children[0])),
                    tuple(self.node(_tree(child)) for child in children[items_start:]),
                    negated,
                )
            case "between":
                subject, low, high = (self.node(_tree(child)) for child in children)
                return Between(*span, subject, low, high)
        raise AssertionError(f"grammar rule without a builder: {tree.data}")

    def _number(self, token: Token) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise ScreenLimitError(f"the number {_shown(token)} is out of range", self.text, _start(token))
        return value


_ADDITIVE = frozenset("+-")
_MULTIPLICATIVE = frozenset("*/")


def _tree(child: Tree[Token] | Token) -> Tree[Token]:
    # Every value in the grammar is a rule (literals have aliases), so a child that is a value is a Tree.
    assert isinstance(child, Tree)
    return child


def _token(child: Tree[Token] | Token) -> Token:
    assert isinstance(child, Token)
    return child


_ESCAPE = re.compile(r"\\(.)")


def _unescape(body: str) -> str:
    """A string literal's body with each backslash escape replaced by the character it escapes."""
    return _ESCAPE.sub(r"\1", body)


# -------------------------------------------------------------------- normal form

#: Precedence levels, loosest first: a child printed below the level its place requires gets parentheses.
_OR, _AND, _NOT, _COMPARISON, _SUM, _PRODUCT, _SIGN, _ATOM = range(1, 9)


def normalize(text: str) -> str:
    """The screen in canonical form: keywords lower-case, single spaces, double-quoted strings, numbers in
    shortest form, only the parentheses precedence needs. Texts differing in layout alone normalize equal,
    and the normal form parses to the same tree. Raises what `parse` raises; names are not resolved."""
    return render(parse(text))


def fingerprint(normalized: str) -> str:
    """A short content hash of a normalized screen: 12 hex digits of its SHA-256."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:12]


def render(node: Node) -> str:
    """The canonical text of a syntax tree (see `normalize`)."""
    return _render(node)[0]


def _render(node: Node) -> tuple[str, int]:
    match node:
        case Number(value=value):
            text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
            return text, _SIGN if value < 0 else _ATOM
        case String(value=value):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"', _ATOM
        case Boolean(value=value):
            return ("true" if value else "false"), _ATOM
        case Name(name=name):
            return name, _ATOM
        case Call(function=function, args=args):
            return f"{function}({', '.join(render(arg) for arg in args)})", _ATOM
        case Unary(op="not", operand=operand):
            return f"not {_child(operand, _NOT)}", _NOT
        case Unary(op=op, operand=operand):
            return f"{op}{_child(operand, _SIGN)}", _SIGN
        case Logical(op=op, items=items):
            level = _OR if op == "or" else _AND
            return f" {op} ".join(_child(item, level + 1) for item in items), level
        case Arithmetic(operands=operands, ops=ops):
            level = _SUM if ops[0] in _ADDITIVE else _PRODUCT
            parts = [_child(operands[0], level)]
            for op, operand in zip(ops, operands[1:]):
                parts.append(f"{op} {_child(operand, level + 1)}")
            return " ".join(parts), level
        case Compare(op=op, left=left, right=right):
            return f"{_child(left, _SUM)} {op} {_child(right, _SUM)}", _COMPARISON
        case Membership(subject=subject, items=items, negated=negated):
            listed = ", ".join(render(item) for item in items)
            return f"{_child(subject, _SUM)} {'not in' if negated else 'in'} ({listed})", _COMPARISON
        case Between(subject=subject, low=low, high=high):
            return f"{_child(subject, _SUM)} between {_child(low, _SUM)} and {_child(high, _SUM)}", _COMPARISON
    raise AssertionError(f"syntax node without a rendering: {node!r}")


def _child(node: Node, level: int) -> str:
    text, own = _render(node)
    return text if own >= level else f"({text})"


# -------------------------------------------------------------------- columns


def prev_name(column: str) -> str:
    """The column `prev(column)` reads: the symbol's value of `column` on the previous session."""
    return PREV_PREFIX + column


def kind_of(dtype: pl.DataType | type[pl.DataType]) -> Kind | None:
    """The language's kind of a polars dtype (class or instance), or None for dtypes a screen cannot use
    (lists, structs, datetimes, ...)."""
    if dtype == pl.Boolean:
        return Kind.BOOLEAN
    if dtype.is_numeric():
        return Kind.NUMBER
    if dtype in (pl.String, pl.Categorical, pl.Enum):
        return Kind.STRING
    if dtype == pl.Date:
        return Kind.DATE
    return None


def column_kinds(dtypes: Mapping[str, pl.DataType | type[pl.DataType]]) -> dict[str, Kind]:
    """Name → kind for every column whose dtype a screen can use (see `kind_of`); the others are left out."""
    kinds = {name: kind_of(dtype) for name, dtype in dtypes.items()}
    return {name: kind for name, kind in kinds.items() if kind is not None}


def with_previous(
    frame: FrameT, previous: pl.DataFrame | pl.LazyFrame, columns: Iterable[str], *, on: str = "symbol"
) -> FrameT:
    """`frame` with `prev_name(c)` added for each of `columns`: the value of `c` in `previous` (the previous
    session's rows) for the same `on` key, null for a key `previous` lacks.

    Left join, so `frame` keeps every row in its order; `previous` must hold at most one row per key (a
    polars validation error otherwise), since a second row would duplicate the symbol's hit.
    """
    wanted = sorted(set(columns))
    if not wanted:
        return frame
    prior = previous.select(on, *(pl.col(column).alias(prev_name(column)) for column in wanted))
    if isinstance(frame, pl.LazyFrame):
        return frame.join(prior.lazy(), on=on, how="left", validate="m:1", maintain_order="left")
    eager = prior.collect() if isinstance(prior, pl.LazyFrame) else prior
    return frame.join(eager, on=on, how="left", validate="m:1", maintain_order="left")


# -------------------------------------------------------------------- compiling


@dataclass(frozen=True, eq=False)
class Screen:
    """A parsed, type-checked screen.

    `predicate` is a polars boolean expression, never null (see the module docstring on nulls): filter a
    frame holding `required_columns` with it, or call `apply`. `columns` are the columns it reads from the
    row itself, `prev_columns` those it reads through `prev()`, by their own names; `with_previous` adds the
    latter as `prev_name(c)` columns.
    """

    text: str
    normalized: str
    fingerprint: str
    predicate: pl.Expr
    columns: frozenset[str]
    prev_columns: frozenset[str]

    @property
    def required_columns(self) -> frozenset[str]:
        """Every column a frame needs for `predicate`: `columns` plus the `prev__` columns."""
        return self.columns | {prev_name(column) for column in self.prev_columns}

    def apply(self, frame: FrameT) -> FrameT:
        """The rows of `frame` the screen selects (its hits)."""
        return frame.filter(self.predicate)


def compile(text: str, columns: Mapping[str, Kind]) -> Screen:
    """Parse and type-check `text` against `columns` (name → kind; see `column_kinds`) and compile it.

    Raises a `ScreenError` subclass for any text the language refuses.
    """
    tree = parse(text)
    compiler = _Compiler(text, columns)
    predicate = compiler.condition(tree, "a screen")
    normalized = render(tree)
    return Screen(
        text=text,
        normalized=normalized,
        fingerprint=fingerprint(normalized),
        predicate=predicate,
        columns=frozenset(compiler.read),
        prev_columns=frozenset(compiler.read_prev),
    )


@dataclass(frozen=True)
class _Typed:
    """A compiled term: its kind, its expression and whether that expression is never null."""

    kind: Kind
    expr: pl.Expr
    total: bool = False


_COMPARISONS = {
    "<": pl.Expr.lt,
    "<=": pl.Expr.le,
    ">": pl.Expr.gt,
    ">=": pl.Expr.ge,
    "==": pl.Expr.eq,
    "!=": pl.Expr.ne,
}
_ORDERED = (Kind.NUMBER, Kind.DATE)
_ARTICLES = {Kind.NUMBER: "a number", Kind.BOOLEAN: "a condition", Kind.STRING: "a string", Kind.DATE: "a date"}


class _Compiler:
    def __init__(self, text: str, columns: Mapping[str, Kind]) -> None:
        self.text = text
        self.columns = columns
        self.read: set[str] = set()
        self.read_prev: set[str] = set()

    # ---------------------------------------------------------------- helpers

    def _snippet(self, node: Node) -> str:
        text = self.text[node.position : node.end]
        return text if len(text) <= 40 else text[:39] + "…"

    def _type_error(self, node: Node, message: str, *expected: Kind) -> ScreenTypeError:
        return ScreenTypeError(message, self.text, node.position, (_ARTICLES[kind] for kind in expected))

    def _expect(self, node: Node, typed: _Typed, kinds: tuple[Kind, ...], where: str) -> None:
        if typed.kind not in kinds:
            wanted = " or ".join(_ARTICLES[kind] for kind in kinds)
            raise self._type_error(
                node, f"{where} takes {wanted}, but {self._snippet(node)} is {_ARTICLES[typed.kind]}", *kinds
            )

    def condition(self, node: Node, where: str) -> pl.Expr:
        """`node` as a never-null boolean: a null condition reads as false."""
        typed = self.value(node)
        if typed.kind is not Kind.BOOLEAN:
            raise self._type_error(
                node,
                f"{where} needs a condition (true or false), but {self._snippet(node)} is {_ARTICLES[typed.kind]}",
                Kind.BOOLEAN,
            )
        return typed.expr if typed.total else typed.expr.fill_null(False)

    def _column(self, node: Node, name: str) -> Kind:
        kind = self.columns.get(name)
        if kind is None:
            known = {column.lower(): column for column in self.columns}
            close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
            suggestions = [known[match] for match in close]
            hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
            raise UnknownNameError(f"unknown column {name!r}{hint}", self.text, node.position, suggestions)
        return kind

    @staticmethod
    def _read(name: str, kind: Kind) -> pl.Expr:
        # NaN is "no value" here, like null; polars would otherwise order it above every number.
        return pl.col(name).fill_nan(None) if kind is Kind.NUMBER else pl.col(name)

    # ---------------------------------------------------------------- terms

    def value(self, node: Node) -> _Typed:
        match node:
            case Number(value=value):
                return _Typed(Kind.NUMBER, pl.lit(value, dtype=pl.Float64), total=True)
            case String(value=value):
                return _Typed(Kind.STRING, pl.lit(value, dtype=pl.String), total=True)
            case Boolean(value=value):
                return _Typed(Kind.BOOLEAN, pl.lit(value, dtype=pl.Boolean), total=True)
            case Name(name=name):
                kind = self._column(node, name)
                self.read.add(name)
                return _Typed(kind, self._read(name, kind))
            case Call():
                return self._call(node)
            case Unary(op="not", operand=operand):
                return _Typed(Kind.BOOLEAN, self.condition(operand, "'not'").not_(), total=True)
            case Unary(op=op, operand=operand):
                typed = self.value(operand)
                self._expect(operand, typed, (Kind.NUMBER,), f"'{op}'")
                return _Typed(Kind.NUMBER, -typed.expr if op == "-" else typed.expr)
            case Logical(op=op, items=items):
                conditions = [self.condition(item, f"'{op}'") for item in items]
                combined = pl.all_horizontal(conditions) if op == "and" else pl.any_horizontal(conditions)
                return _Typed(Kind.BOOLEAN, combined, total=True)
            case Arithmetic():
                return self._arithmetic(node)
            case Compare(op=op, left=left, right=right):
                return _Typed(Kind.BOOLEAN, self._compare(op, left, right), total=True)
            case Membership(subject=subject, items=items, negated=negated):
                # `x in (a, b)` is `x == a or x == b` and `x not in (a, b)` is `x != a and x != b`, each
                # comparison false with a null, so a null `x` is in no list and outside none.
                tests = [self._compare("!=" if negated else "==", subject, item) for item in items]
                combined = pl.all_horizontal(tests) if negated else pl.any_horizontal(tests)
                return _Typed(Kind.BOOLEAN, combined, total=True)
            case Between(subject=subject, low=low, high=high):
                typed = self.value(subject)
                self._expect(subject, typed, _ORDERED, "'between'")
                bounds = []
                for bound in (low, high):
                    bounded = self.value(bound)
                    self._expect(bound, bounded, (typed.kind,), f"'between' on {_ARTICLES[typed.kind]}")
                    bounds.append(bounded.expr)
                inside = typed.expr.is_between(bounds[0], bounds[1], closed="both").fill_null(False)
                return _Typed(Kind.BOOLEAN, inside, total=True)
        raise AssertionError(f"syntax node without a compiler: {node!r}")

    def _compare(self, op: str, left: Node, right: Node) -> pl.Expr:
        left_typed, right_typed = self.value(left), self.value(right)
        if op in ("==", "!="):
            if left_typed.kind is not right_typed.kind:
                raise self._type_error(
                    right,
                    f"cannot compare {self._snippet(left)} ({_ARTICLES[left_typed.kind]}) with "
                    f"{self._snippet(right)} ({_ARTICLES[right_typed.kind]})",
                    left_typed.kind,
                )
        else:
            self._expect(left, left_typed, _ORDERED, f"'{op}'")
            self._expect(right, right_typed, (left_typed.kind,), f"'{op}' on {_ARTICLES[left_typed.kind]}")
        return _COMPARISONS[op](left_typed.expr, right_typed.expr).fill_null(False)

    def _arithmetic(self, node: Arithmetic) -> _Typed:
        typed = []
        for operand in node.operands:
            value = self.value(operand)
            self._expect(operand, value, (Kind.NUMBER,), "arithmetic")
            typed.append(value.expr)
        result = typed[0]
        for op, right in zip(node.ops, typed[1:]):
            if op == "+":
                result = result + right
            elif op == "-":
                result = result - right
            elif op == "*":
                result = result * right
            else:
                result = pl.when(right != 0).then(result / right)  # x / 0 is no value, not ±inf
        # inf - inf and 0 * inf give NaN, which counts as null like NaN in a column.
        return _Typed(Kind.NUMBER, result.fill_nan(None))

    def _call(self, node: Call) -> _Typed:
        function, args = node.function, node.args
        if function not in FUNCTIONS:
            close = difflib.get_close_matches(function.lower(), FUNCTIONS, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; the functions are {', '.join(FUNCTIONS)}"
            raise UnknownNameError(f"unknown function {function!r}{hint}", self.text, node.position, close)
        if function == "prev":
            if len(args) != 1 or not isinstance(args[0], Name):
                culprit = args[0] if args else node
                raise ScreenTypeError(
                    f"prev takes one column name, as in prev(close), not {self._snippet(culprit)}",
                    self.text,
                    culprit.position,
                    ("a column name",),
                )
            name = args[0].name
            kind = self._column(args[0], name)
            self.read_prev.add(name)
            return _Typed(kind, self._read(prev_name(name), kind))
        if function == "abs" and len(args) != 1:
            raise self._type_error(node, f"abs takes one number, not {len(args)} values", Kind.NUMBER)
        if function in ("min", "max") and len(args) < 2:
            raise self._type_error(node, f"{function} takes two or more numbers, not {len(args)}", Kind.NUMBER)
        values = []
        for arg in args:
            typed = self.value(arg)
            self._expect(arg, typed, (Kind.NUMBER,), function)
            values.append(typed.expr)
        if function == "abs":
            return _Typed(Kind.NUMBER, values[0].abs())
        # min/max of values one of which is null is null, as arithmetic is: polars' horizontal min and max
        # would skip the null and answer from the others.
        extreme = pl.min_horizontal(values) if function == "min" else pl.max_horizontal(values)
        return _Typed(
            Kind.NUMBER, pl.when(pl.any_horizontal(value.is_null() for value in values)).then(None).otherwise(extreme)
        )
