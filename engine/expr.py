"""The safe expression language of rulesets: tokenizer, parser, type inference, two evaluators.

Rulesets are data written by business users, so their conditions (`monthly_avg_sales >= 20000`)
are parsed by a small hand-written recursive-descent parser into a tree of frozen `Node`s and never
handed to Python's own evaluator. Nothing can be reached from an expression except the names the
caller passes in and the fixed function set in `FUNCTIONS`: there is no attribute access, no
indexing, and no way to call anything else. Absurd input (over `MAX_LENGTH` characters, nesting
deeper than `MAX_DEPTH`) is an `ExpressionError`, never a `RecursionError`.

The grammar, the function set and the null semantics are fixed in docs/DESIGN.md
("Expression language", "Value model"). Two evaluators share those semantics:

* `eval_scalar` — one row, exact: numbers are `decimal.Decimal`, so `0.70 > 0.70` is false and
  `5999999.99 + 0.01 >= 6000000` is true (RULESETS §0.3). It is the reference.
* `eval_vector` / `eval_condition` — a whole table at once with numpy float64 columns. A float
  comparison can disagree with the exact decimal one only when an operand is not float-exact and
  the two sides are a hair apart; such rows are flagged in `VectorContext.uncertain` and the engine
  re-evaluates them with `eval_scalar`. Rows not flagged are guaranteed to match the scalar result.
"""
from __future__ import annotations

import calendar
import datetime as dt
import decimal
import difflib
import numbers
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np

from engine.errors import ExpressionError

__all__ = [
    "And", "BinOp", "Call", "Compare", "FUNCTIONS", "InList", "InRange", "Literal", "MAX_DEPTH",
    "MAX_LENGTH", "Name", "Neg", "Node", "Not", "Or", "Vec", "VectorContext", "eval_condition",
    "compile_scalar", "eval_scalar", "eval_vector", "free_names", "infer_type", "parse_expression", "substitute",
    "to_text",
]

MAX_LENGTH = 10_000  # characters in one expression
MAX_DEPTH = 100  # levels of the syntax tree, and of brackets in the source text

KINDS = ("number", "date", "boolean", "text")
# Ruleset input types map onto the four value kinds (DESIGN "Value model").
_KIND_ALIASES = {"number": "number", "fraction": "number", "integer": "number", "date": "date",
                 "boolean": "boolean", "text": "text", "enum": "text"}

# name -> (minimum arguments, maximum arguments or None for "any number")
FUNCTIONS: Mapping[str, tuple[int, int | None]] = {
    "add_days": (2, 2), "add_months": (2, 2), "days_between": (2, 2), "date": (3, 3),
    "year": (1, 1), "month": (1, 1), "day": (1, 1), "quarter": (1, 1), "quarter_start": (1, 1),
    "next_quarter_start": (1, 1), "min": (2, None), "max": (2, None), "abs": (1, 1),
    "round": (2, 2), "if": (3, 3), "is_blank": (1, 1), "present": (1, 1), "concat": (1, None),
}

_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "blank"})
_EPOCH = dt.date(1970, 1, 1)
_MIN_DAY = (dt.date.min - _EPOCH).days  # 0001-01-01 as days since 1970-01-01
_MAX_DAY = (dt.date.max - _EPOCH).days  # 9999-12-31
_TWO_53 = float(2**53)
_CLOSE = 1e-9  # relative distance under which an inexact float comparison is not trusted
# A sum or difference whose result is this much smaller than its operands has lost digits to
# cancellation; its float error can then exceed _CLOSE relative to the result itself.
_CANCEL = 1e-4
# Division and the like round to this many digits; + - * of parsed cells never reach it.
_DECIMAL_CONTEXT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN, Emin=-999_999,
                                   Emax=999_999, traps=[decimal.InvalidOperation, decimal.Overflow])


# --------------------------------------------------------------------------- syntax tree
class Node:
    """Base of every syntax-tree node; each node has `pos`, its character offset in the source.

    Equality ignores `pos`, so the same expression written with different spacing compares equal.
    For infix nodes `pos` is the operator's offset, which is where a type error points.
    """

    __slots__ = ()
    pos: int


@dataclass(frozen=True, eq=False)
class Literal(Node):
    """A constant: Decimal, str, bool, datetime.date, or None for blank.

    Other Python values (int, float, datetime, numpy scalars) are normalised on construction, so
    `Literal(5)` holds `Decimal(5)` and a float becomes the decimal of its shortest repr.
    """

    value: object
    pos: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _to_value(self.value))

    def __eq__(self, other: object) -> bool:
        # True == Decimal(1) in Python; a boolean literal must not equal a number literal.
        return (isinstance(other, Literal) and type(self.value) is type(other.value)
                and self.value == other.value)

    def __hash__(self) -> int:
        return hash((Literal, type(self.value), self.value))


@dataclass(frozen=True)
class Name(Node):
    """A reference to an input, a parameter, or a fact derived by an earlier decision."""

    name: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Neg(Node):
    """Unary minus."""

    operand: Node
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class BinOp(Node):
    """Arithmetic: op is one of + - * /."""

    op: str
    left: Node
    right: Node
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Compare(Node):
    """A comparison; op is normalised to one of = != < <= > >=."""

    op: str
    left: Node
    right: Node
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class InList(Node):
    """`item in [a, b, ...]` (or `not in`)."""

    item: Node
    options: tuple[Node, ...]
    negated: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class InRange(Node):
    """`item in [low..high)` and friends: `[`/`]` are closed ends, `(`/`)` open ones."""

    item: Node
    low: Node
    high: Node
    low_closed: bool = True
    high_closed: bool = True
    negated: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class And(Node):
    """Conjunction of two or more conditions (flattened: `a and b and c` is one node)."""

    items: tuple[Node, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Or(Node):
    """Disjunction of two or more conditions (flattened like `And`)."""

    items: tuple[Node, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not(Node):
    """Negation; `not blank` is true because a blank condition counts as false."""

    operand: Node
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Call(Node):
    """A call of one of the fixed `FUNCTIONS` (the name is stored in lower case)."""

    func: str
    args: tuple[Node, ...]
    pos: int = field(default=0, compare=False)


# --------------------------------------------------------------------------- values
def _to_value(value: object) -> object:
    """Normalise a Python value to the scalar value model (Decimal, str, bool, date, None).

    Floats are read as the decimal of their shortest repr (RULESETS §0.11), NaN-like values are
    blank, and anything outside the model is an ExpressionError rather than a silent surprise.
    """
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is dt.date:
        return value
    if kind is Decimal:
        if value.is_finite():  # type: ignore[union-attr]
            return value
        if value.is_nan():  # type: ignore[union-attr]
            return None
        raise ExpressionError(f"not a finite number: {value!r}")
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return Decimal(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if number != number:
            return None
        if number in (float("inf"), float("-inf")):
            raise ExpressionError(f"not a finite number: {value!r}")
        return Decimal(repr(number))
    if isinstance(value, dt.datetime):
        return None if value != value else value.date()  # pandas NaT is a datetime that != itself
    if isinstance(value, dt.date):
        return dt.date(value.year, value.month, value.day)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        return value.astype("datetime64[D]").item()
    if isinstance(value, str):
        return str(value)
    if kind.__name__ in ("NAType", "NaTType"):
        return None
    raise ExpressionError(f"unsupported value {value!r} of type {kind.__name__}; expected a number, "
                          "text, boolean, date or blank")


def kind_of_value(value: object) -> str:
    """The expression kind of a scalar value: 'number' | 'date' | 'boolean' | 'text' | 'blank'."""
    if value is None:
        return "blank"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Decimal):
        return "number"
    if isinstance(value, dt.date):
        return "date"
    return "text"


def _suggest(word: str, choices: object) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3)  # type: ignore[call-overload]
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


# --------------------------------------------------------------------------- tokenizer
_TWO_CHAR_OPS = {"==": "=", "!=": "!=", "<>": "!=", "<=": "<=", ">=": ">=", "..": ".."}
_ONE_CHAR_OPS = frozenset("=<>+-*/()[],")
_DIGITS = frozenset("0123456789")
_BAD_CHARS = {
    ".": "'.' is not allowed here: there is no attribute access, and a decimal number needs digits "
         "on both sides of the point (0.5)",
    "!": "use 'not' for negation or '!=' for 'not equal'",
    "&": "use 'and'", "|": "use 'or'",
    "%": "percent is not part of the language; write the fraction (0.75)",
    "{": "braces are not part of the language", "}": "braces are not part of the language",
    ";": "write one expression; combine conditions with 'and' / 'or'",
    ":": "':' is not part of the language", "`": "quote text with ' or \"",
}


@dataclass(frozen=True)
class _Token:
    kind: str  # 'num' | 'str' | 'name' | 'kw' | 'op' | 'end'
    value: str
    pos: int


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "end of expression"
    if token.kind == "str":
        return "text " + _quote(token.value)
    return repr(token.value)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, length = 0, len(text)
    while i < length:
        ch = text[i]
        if ch.isspace():  # any Unicode whitespace, including U+3000 (RULESETS §0.11)
            i += 1
            continue
        pair = text[i:i + 2]
        if pair in _TWO_CHAR_OPS:
            tokens.append(_Token("op", _TWO_CHAR_OPS[pair], i))
            i += 2
            continue
        if ch in _ONE_CHAR_OPS:
            tokens.append(_Token("op", ch, i))
            i += 1
            continue
        if ch in _DIGITS:
            start = i
            while i < length and text[i] in _DIGITS:
                i += 1
            if i + 1 < length and text[i] == "." and text[i + 1] in _DIGITS:
                i += 1
                while i < length and text[i] in _DIGITS:
                    i += 1
            if i < length and (text[i] == "_" or ("a" + text[i]).isidentifier()):
                end = i
                while end < length and ("a" + text[end]).isidentifier():
                    end += 1
                raise ExpressionError(
                    f"invalid number {text[start:end]!r}: write plain digits such as 1500 or 0.75 "
                    "(no exponents, units or suffixes)", start)
            tokens.append(_Token("num", text[start:i], start))
            continue
        if ch in "'\"":
            start, i, parts = i, i + 1, []
            while True:
                end = text.find(ch, i)
                if end < 0:
                    raise ExpressionError(f"unterminated text starting with {ch}", start)
                parts.append(text[i:end])
                if text[end + 1:end + 2] == ch:  # a doubled quote stands for itself, as in Excel
                    parts.append(ch)
                    i = end + 2
                    continue
                i = end + 1
                break
            tokens.append(_Token("str", "".join(parts), start))
            continue
        if ch == "_" or ch.isidentifier():
            start = i
            i += 1
            while i < length and ("a" + text[i]).isidentifier():
                i += 1
            word = text[start:i]
            if word.startswith("__"):
                raise ExpressionError(f"names may not start with '__' ({word!r})", start)
            lower = word.lower()
            if lower in _KEYWORDS:
                tokens.append(_Token("kw", lower, start))
            else:
                tokens.append(_Token("name", word, start))
            continue
        raise ExpressionError(_bad_char_message(ch), i)
    tokens.append(_Token("end", "", length))
    return tokens


def _bad_char_message(ch: str) -> str:
    if ch in _BAD_CHARS:
        return f"unexpected {ch!r}: {_BAD_CHARS[ch]}"
    code = ord(ch)
    if 0xFF01 <= code <= 0xFF5E:  # full-width ASCII variants typed with a Chinese IME
        ascii_ch = chr(code - 0xFEE0)
        return f"unexpected full-width character {ch!r} (全角字符): use the ASCII {ascii_ch!r}"
    fancy = {"\u3001": ",", "\u3002": ".", "\u2018": "'", "\u2019": "'", "\u201c": '"',
             "\u201d": '"', "\u3010": "[", "\u3011": "]", "\u2264": "<=", "\u2265": ">=",
             "\u2260": "!=", "\u00d7": "*", "\u00f7": "/"}
    if ch in fancy:
        return f"unexpected character {ch!r}: use the ASCII {fancy[ch]!r}"
    return f"unexpected character {ch!r}"


# --------------------------------------------------------------------------- parser
# Binding strength of infix operators; prefix `not` sits at 3 and unary minus at 7.
_INFIX_PREC = {"or": 1, "and": 2, "=": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "in": 4,
               "+": 5, "-": 5, "*": 6, "/": 6}
_COMPARE_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
_NOT_PREC = 3
_NEG_PREC = 7


class _Parser:
    """Pratt (precedence-climbing) parser over the token list.

    Recursion depth is counted explicitly: `nesting` bounds the parser's own Python recursion
    (brackets, prefix operators) and `_depth` bounds the height of the tree it builds, which the
    recursive walkers below (evaluation, type inference, printing) rely on.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.nesting = 0
        self.heights: dict[int, int] = {}

    # -- helpers
    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def is_op(self, value: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token.kind == "op" and token.value == value

    def is_kw(self, value: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token.kind == "kw" and token.value == value

    def expect_op(self, value: str, context: str) -> _Token:
        token = self.peek()
        if token.kind != "op" or token.value != value:
            raise ExpressionError(f"expected {value!r} {context}, found {_describe(token)}", token.pos)
        return self.advance()

    def make(self, node: Node, *children: Node) -> Node:
        height = 1 + max((self.heights.get(id(c), 1) for c in children), default=0)
        if height > MAX_DEPTH:
            raise ExpressionError(f"expression is nested too deeply (more than {MAX_DEPTH} levels); "
                                  "split it into computed facts", node.pos)
        self.heights[id(node)] = height
        return node

    def enter(self, pos: int) -> None:
        self.nesting += 1
        if self.nesting > 2 * MAX_DEPTH:
            raise ExpressionError(f"expression is nested too deeply (more than {MAX_DEPTH} levels)", pos)

    # -- grammar
    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise ExpressionError("empty expression", 0)
        node = self.expr(0)
        token = self.peek()
        if token.kind != "end":
            hint = ""
            if token.kind == "op" and token.value == "[":
                hint = ": indexing is not allowed"
            elif token.kind == "op" and token.value == "(":
                hint = ": only the built-in functions can be called"
            elif token.kind in ("name", "num", "str"):
                hint = ": an operator (and, or, +, =, ...) is missing before it"
            raise ExpressionError(f"unexpected {_describe(token)}{hint}", token.pos)
        return node

    def expr(self, min_prec: int) -> Node:
        token = self.peek()
        self.enter(token.pos)
        try:
            if token.kind == "kw" and token.value == "not":
                if min_prec > _NOT_PREC:
                    raise ExpressionError("'not' must be put in brackets here: (not ...)", token.pos)
                self.advance()
                operand = self.expr(_NOT_PREC)
                left = self.make(Not(operand, token.pos), operand)
            elif token.kind == "op" and token.value == "-":
                self.advance()
                operand = self.expr(_NEG_PREC)
                if isinstance(operand, Literal) and isinstance(operand.value, Decimal):
                    left = self.make(Literal(operand.value.copy_negate(), token.pos))
                else:
                    left = self.make(Neg(operand, token.pos), operand)
            else:
                left = self.atom()
            return self.infix(left, min_prec)
        finally:
            self.nesting -= 1

    def infix(self, left: Node, min_prec: int) -> Node:
        compared = False
        while True:
            token = self.peek()
            negated = False
            if token.kind == "kw" and token.value == "not" and self.is_kw("in", 1):
                op, negated = "in", True
            elif token.kind in ("op", "kw") and token.value in _INFIX_PREC:
                op = token.value
            else:
                return left
            prec = _INFIX_PREC[op]
            if prec < min_prec:
                return left
            if prec == 4:
                if compared:
                    raise ExpressionError("comparisons cannot be chained (a < b < c); combine them "
                                          "with 'and', or use a range: b in (a..c)", token.pos)
                compared = True
            self.advance()
            if negated:
                self.advance()
            if op in ("and", "or"):
                right = self.expr(prec + 1)
                cls = And if op == "and" else Or
                items: list[Node] = []
                for part in (left, right):
                    items.extend(part.items if isinstance(part, cls) else (part,))
                pos = left.pos if isinstance(left, cls) else token.pos
                left = self.make(cls(tuple(items), pos), *items)
            elif op == "in":
                left = self.membership(left, negated, token.pos)
            elif op in _COMPARE_OPS:
                right = self.expr(5)
                left = self.make(Compare(op, left, right, token.pos), left, right)
            else:
                right = self.expr(prec + 1)
                left = self.make(BinOp(op, left, right, token.pos), left, right)

    def membership(self, item: Node, negated: bool, pos: int) -> Node:
        opener = self.peek()
        if not (opener.kind == "op" and opener.value in "[("):
            raise ExpressionError(f"expected a list [a, b] or a range [a..b] after 'in', found "
                                  f"{_describe(opener)}", opener.pos)
        self.advance()
        self.enter(opener.pos)
        try:
            if opener.value == "[" and self.is_op("]"):
                raise ExpressionError("empty list after 'in'", opener.pos)
            first = self.expr(0 if opener.value == "[" else 5)
            if self.is_op(".."):
                self.advance()
                high = self.expr(5)
                closer = self.peek()
                if not (closer.kind == "op" and closer.value in "])"):
                    raise ExpressionError(f"expected ']' or ')' to close the range, found "
                                          f"{_describe(closer)}", closer.pos)
                self.advance()
                node = InRange(item, first, high, opener.value == "[", closer.value == "]", negated, pos)
                return self.make(node, item, first, high)
            if opener.value == "(":
                raise ExpressionError("expected '..' in a range such as (a..b]; write a list with "
                                      "square brackets: [a, b]", self.peek().pos)
            options = [first]
            while self.is_op(","):
                self.advance()
                options.append(self.expr(0))
            self.expect_op("]", "to close the list")
            return self.make(InList(item, tuple(options), negated, pos), item, *options)
        finally:
            self.nesting -= 1

    def atom(self) -> Node:
        token = self.advance()
        if token.kind == "num":
            return self.make(Literal(Decimal(token.value), token.pos))
        if token.kind == "str":
            return self.make(Literal(token.value, token.pos))
        if token.kind == "kw" and token.value in ("true", "false", "blank"):
            value = {"true": True, "false": False, "blank": None}[token.value]
            return self.make(Literal(value, token.pos))
        if token.kind == "name":
            if self.is_op("("):
                return self.call(token)
            return self.make(Name(token.value, token.pos))
        if token.kind == "op" and token.value == "(":
            self.enter(token.pos)
            try:
                if self.is_op(")"):
                    raise ExpressionError("empty brackets '()'", token.pos)
                node = self.expr(0)
                self.expect_op(")", f"to close the '(' at position {token.pos}")
                return node
            finally:
                self.nesting -= 1
        if token.kind == "end":
            raise ExpressionError("unexpected end of expression: a value is missing", token.pos)
        raise ExpressionError(f"unexpected {_describe(token)}: expected a value", token.pos)

    def call(self, name: _Token) -> Node:
        func = name.value.lower()
        if func not in FUNCTIONS:
            raise ExpressionError(f"unknown function {name.value!r}.{_suggest(func, FUNCTIONS)} "
                                  f"Functions are: {', '.join(sorted(FUNCTIONS))}", name.pos)
        opener = self.advance()
        self.enter(opener.pos)
        try:
            args: list[Node] = []
            if not self.is_op(")"):
                args.append(self.expr(0))
                while self.is_op(","):
                    self.advance()
                    args.append(self.expr(0))
            self.expect_op(")", f"to close the call of {func}()")
        finally:
            self.nesting -= 1
        node = Call(func, tuple(args), name.pos)
        _check_arity(node)
        return self.make(node, *args)


def _check_arity(node: Call) -> None:
    if node.func not in FUNCTIONS:
        raise ExpressionError(f"unknown function {node.func!r}.{_suggest(node.func, FUNCTIONS)}",
                              node.pos)
    low, high = FUNCTIONS[node.func]
    count = len(node.args)
    if count < low or (high is not None and count > high):
        want = (f"exactly {low}" if low == high else f"at least {low}" if high is None
                else f"{low} to {high}")
        raise ExpressionError(f"{node.func}() takes {want} argument{'s' if want != 'exactly 1' else ''}, "
                              f"got {count}", node.pos)


def parse_expression(text: str) -> Node:
    """Parse expression text into a syntax tree; raise ExpressionError(message, position)."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text, got {type(text).__name__}", 0)
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is too long ({len(text)} characters; the limit is "
                              f"{MAX_LENGTH})", MAX_LENGTH)
    return _Parser(text).parse()


# --------------------------------------------------------------------------- tree utilities
def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Literal, Name)):
        return ()
    if isinstance(node, (Neg, Not)):
        return (node.operand,)
    if isinstance(node, (BinOp, Compare)):
        return (node.left, node.right)
    if isinstance(node, InList):
        return (node.item, *node.options)
    if isinstance(node, InRange):
        return (node.item, node.low, node.high)
    if isinstance(node, (And, Or)):
        return node.items
    if isinstance(node, Call):
        return node.args
    raise ExpressionError(f"not an expression node: {node!r}")


def free_names(node: Node) -> frozenset[str]:
    """The names an expression reads (function names are not included)."""
    found: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Name):
            found.add(current.name)
        else:
            stack.extend(_children(current))
    return frozenset(found)


def substitute(node: Node, values: Mapping[str, object]) -> Node:
    """Replace each Name found in `values` by a Literal of its value (used to bind parameters).

    Values are normalised like cells (int → Decimal, float → Decimal of its repr); the literal
    keeps the name's position so later type errors still point into the source text.
    """
    if isinstance(node, Name):
        return Literal(values[node.name], node.pos) if node.name in values else node
    if isinstance(node, Literal):
        return node
    if isinstance(node, (Neg, Not)):
        operand = substitute(node.operand, values)
        return node if operand is node.operand else replace(node, operand=operand)
    if isinstance(node, (BinOp, Compare)):
        left, right = substitute(node.left, values), substitute(node.right, values)
        return node if (left is node.left and right is node.right) else replace(node, left=left, right=right)
    if isinstance(node, InList):
        item = substitute(node.item, values)
        options = tuple(substitute(o, values) for o in node.options)
        return replace(node, item=item, options=options)
    if isinstance(node, InRange):
        return replace(node, item=substitute(node.item, values), low=substitute(node.low, values),
                       high=substitute(node.high, values))
    if isinstance(node, (And, Or)):
        return replace(node, items=tuple(substitute(i, values) for i in node.items))
    if isinstance(node, Call):
        return replace(node, args=tuple(substitute(a, values) for a in node.args))
    raise ExpressionError(f"not an expression node: {node!r}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _precedence(node: Node) -> int:
    if isinstance(node, Or):
        return 1
    if isinstance(node, And):
        return 2
    if isinstance(node, Not):
        return 3
    if isinstance(node, (Compare, InList, InRange)):
        return 4
    if isinstance(node, BinOp):
        return 5 if node.op in "+-" else 6
    if isinstance(node, Neg):
        return 7
    if isinstance(node, Literal) and isinstance(node.value, Decimal) and node.value.is_signed():
        return 7
    return 8


def _wrap(node: Node, min_prec: int) -> str:
    text = to_text(node)
    return f"({text})" if _precedence(node) < min_prec else text


def to_text(node: Node) -> str:
    """Canonical source text of a tree: parses back to an equal tree (used in traces and messages)."""
    if isinstance(node, Literal):
        value = node.value
        if value is None:
            return "blank"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, Decimal):
            return format(value, "f")
        if isinstance(value, dt.date):
            return f"date({value.year}, {value.month}, {value.day})"
        return _quote(str(value))
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Neg):
        return "-" + _wrap(node.operand, 7)
    if isinstance(node, Not):
        return "not " + _wrap(node.operand, 3)
    if isinstance(node, BinOp):
        prec = 5 if node.op in "+-" else 6
        return f"{_wrap(node.left, prec)} {node.op} {_wrap(node.right, prec + 1)}"
    if isinstance(node, Compare):
        return f"{_wrap(node.left, 5)} {node.op} {_wrap(node.right, 5)}"
    if isinstance(node, InList):
        keyword = "not in" if node.negated else "in"
        return f"{_wrap(node.item, 5)} {keyword} [{', '.join(to_text(o) for o in node.options)}]"
    if isinstance(node, InRange):
        keyword = "not in" if node.negated else "in"
        opener = "[" if node.low_closed else "("
        closer = "]" if node.high_closed else ")"
        return (f"{_wrap(node.item, 5)} {keyword} {opener}{_wrap(node.low, 5)}.."
                f"{_wrap(node.high, 5)}{closer}")
    if isinstance(node, And):
        return " and ".join(_wrap(i, 3) for i in node.items)
    if isinstance(node, Or):
        return " or ".join(_wrap(i, 2) for i in node.items)
    if isinstance(node, Call):
        return f"{node.func}({', '.join(to_text(a) for a in node.args)})"
    raise ExpressionError(f"not an expression node: {node!r}")


# --------------------------------------------------------------------------- type inference
def _article(kind: str) -> str:
    return {"number": "a number", "date": "a date", "boolean": "a condition (true/false)",
            "text": "text", "blank": "blank"}[kind]


def _is_whole_literal(node: Node) -> bool:
    return not (isinstance(node, Literal) and isinstance(node.value, Decimal)
                and node.value != node.value.to_integral_value())


def infer_type(node: Node, types: Mapping[str, str]) -> str:
    """The kind of value an expression produces: 'number' | 'date' | 'boolean' | 'text'.

    `types` maps each usable name to its kind (ruleset types such as 'integer', 'fraction' and
    'enum' are accepted as their kinds). Unknown names and functions, wrong argument counts and
    kind mismatches raise ExpressionError pointing at the offending position. An expression that
    can only ever be blank (`blank`, `if(c, blank, blank)`) is reported as 'number'.
    """
    kinds: dict[str, str] = {}
    for name, kind in types.items():
        normal = _KIND_ALIASES.get(kind) if kind != "blank" else "blank"
        if normal is None:
            raise ExpressionError(f"unknown type {kind!r} for name {name!r}; expected one of "
                                  f"{', '.join(KINDS)}")
        kinds[name] = normal
    kind = _infer(node, kinds)
    return "number" if kind == "blank" else kind


def _unify(first: str, second: str) -> str | None:
    if first == "blank":
        return second
    if second == "blank" or first == second:
        return first
    return None


def _expect(node: Node, kinds: Mapping[str, str], want: str, what: str) -> str:
    got = _infer(node, kinds)
    if got not in (want, "blank"):
        raise ExpressionError(f"{what} must be {_article(want)}, got {_article(got)} "
                              f"({to_text(node)})", node.pos)
    return got


def _no_blank_literal(node: Node, advice: str) -> None:
    if isinstance(node, Literal) and node.value is None:
        raise ExpressionError(f"a comparison with blank is always false; {advice}", node.pos)


def _infer(node: Node, kinds: Mapping[str, str]) -> str:
    if isinstance(node, Literal):
        return kind_of_value(node.value)
    if isinstance(node, Name):
        if node.name in kinds:
            return kinds[node.name]
        hint = _suggest(node.name, kinds)
        if not hint and node.name.lower() in FUNCTIONS:
            hint = f" {node.name.lower()!r} is a function: call it with brackets, {node.name.lower()}(...)"
        raise ExpressionError(f"unknown name {node.name!r}.{hint}", node.pos)
    if isinstance(node, Neg):
        _expect(node.operand, kinds, "number", "the operand of unary '-'")
        return "number"
    if isinstance(node, BinOp):
        left, right = _infer(node.left, kinds), _infer(node.right, kinds)
        if left in ("number", "blank") and right in ("number", "blank"):
            return "number"
        if "date" in (left, right):
            advice = ("use add_days(d, n) or add_months(d, n)" if node.op in "+-" and
                      {left, right} <= {"date", "number", "blank"} and right != "date"
                      else "use days_between(a, b) for the days from a to b" if node.op == "-"
                      else "dates cannot be multiplied or divided")
            raise ExpressionError(f"'{node.op}' cannot be applied to {_article(left)} and "
                                  f"{_article(right)}: {advice}", node.pos)
        advice = "use concat(a, b) to join text" if "text" in (left, right) else "arithmetic needs numbers"
        raise ExpressionError(f"'{node.op}' cannot be applied to {_article(left)} and "
                              f"{_article(right)}: {advice}", node.pos)
    if isinstance(node, Compare):
        for side in (node.left, node.right):
            _no_blank_literal(side, "use is_blank(x) or present(x)")
        left, right = _infer(node.left, kinds), _infer(node.right, kinds)
        kind = _unify(left, right)
        if kind is None:
            raise ExpressionError(f"cannot compare {_article(left)} with {_article(right)}", node.pos)
        if kind == "blank":
            raise ExpressionError("a comparison of two blanks is always false; use is_blank(x)", node.pos)
        if kind in ("text", "boolean") and node.op not in ("=", "!="):
            raise ExpressionError(f"'{node.op}' does not apply to {_article(kind)}: only = and != "
                                  "compare text and conditions", node.pos)
        return "boolean"
    if isinstance(node, InList):
        _no_blank_literal(node.item, "use is_blank(x)")
        kind = _infer(node.item, kinds)
        for option in node.options:
            if isinstance(option, Literal) and option.value is None:
                raise ExpressionError("blank in a list never matches (a comparison with blank is "
                                      "false); test it with is_blank(x)", option.pos)
            got = _infer(option, kinds)
            unified = _unify(kind, got)
            if unified is None:
                raise ExpressionError(f"list item {to_text(option)} is {_article(got)} but the "
                                      f"value tested is {_article(kind)}", option.pos)
            kind = unified
        return "boolean"
    if isinstance(node, InRange):
        for side in (node.item, node.low, node.high):
            _no_blank_literal(side, "a range needs both ends")
        kind = _infer(node.item, kinds)
        for bound in (node.low, node.high):
            got = _infer(bound, kinds)
            unified = _unify(kind, got)
            if unified is None:
                raise ExpressionError(f"range end {to_text(bound)} is {_article(got)} but the value "
                                      f"tested is {_article(kind)}", bound.pos)
            kind = unified
        if kind not in ("number", "date", "blank"):
            raise ExpressionError(f"a range [a..b] needs numbers or dates, not {_article(kind)}", node.pos)
        return "boolean"
    if isinstance(node, (And, Or)):
        word = "and" if isinstance(node, And) else "or"
        for item in node.items:
            _expect(item, kinds, "boolean", f"each side of '{word}'")
        return "boolean"
    if isinstance(node, Not):
        _expect(node.operand, kinds, "boolean", "the operand of 'not'")
        return "boolean"
    if isinstance(node, Call):
        return _infer_call(node, kinds)
    raise ExpressionError(f"not an expression node: {node!r}")


def _infer_call(node: Call, kinds: Mapping[str, str]) -> str:
    _check_arity(node)
    func, args = node.func, node.args

    def arg(index: int, want: str) -> str:
        return _expect(args[index], kinds, want, f"argument {index + 1} of {func}()")

    def whole(index: int, what: str) -> None:
        if not _is_whole_literal(args[index]):
            raise ExpressionError(f"{func}() needs a whole number of {what}, got "
                                  f"{to_text(args[index])}", args[index].pos)

    if func in ("add_days", "add_months"):
        arg(0, "date")
        arg(1, "number")
        whole(1, "days" if func == "add_days" else "months")
        return "date"
    if func == "days_between":
        arg(0, "date")
        arg(1, "date")
        return "number"
    if func == "date":
        for index, what in enumerate(("years", "months", "days")):
            arg(index, "number")
            whole(index, what)
        return "date"
    if func in ("year", "month", "day", "quarter"):
        arg(0, "date")
        return "number"
    if func in ("quarter_start", "next_quarter_start"):
        arg(0, "date")
        return "date"
    if func in ("min", "max"):
        kind = "blank"
        for index, item in enumerate(args):
            got = _infer(item, kinds)
            unified = _unify(kind, got)
            if unified is None or unified not in ("number", "date", "blank"):
                raise ExpressionError(f"{func}() needs all numbers or all dates; argument "
                                      f"{index + 1} is {_article(got)}", item.pos)
            kind = unified
        return kind
    if func == "abs":
        arg(0, "number")
        return "number"
    if func == "round":
        arg(0, "number")
        arg(1, "number")
        whole(1, "decimal places")
        return "number"
    if func == "if":
        arg(0, "boolean")
        then_kind, else_kind = _infer(args[1], kinds), _infer(args[2], kinds)
        kind = _unify(then_kind, else_kind)
        if kind is None:
            raise ExpressionError(f"if() branches differ: {_article(then_kind)} and "
                                  f"{_article(else_kind)}", args[2].pos)
        return kind
    if func in ("is_blank", "present"):
        _infer(args[0], kinds)
        return "boolean"
    if func == "concat":
        for item in args:
            _infer(item, kinds)
        return "text"
    raise ExpressionError(f"unknown function {func!r}", node.pos)  # pragma: no cover - arity checked


# --------------------------------------------------------------------------- scalar evaluation
def eval_scalar(node: Node, env: Mapping[str, object]) -> object:
    """Evaluate for one row with exact decimals; returns Decimal | str | bool | date | None.

    Values in `env` may be any Python value the value model accepts (float → Decimal of its repr,
    int → Decimal). A name missing from `env` raises ExpressionError. Trees are assumed to have
    passed `infer_type`; a kind mismatch at run time is reported as an ExpressionError too.

    This walks the tree and is the reference; `compile_scalar` turns a tree into a function with
    the same results for the engines that evaluate one expression for many rows.
    """
    with decimal.localcontext(_DECIMAL_CONTEXT):
        try:
            return _scalar(node, env)
        except (TypeError, decimal.InvalidOperation) as exc:
            raise _wrong_kinds(node, exc) from exc


def _wrong_kinds(node: Node, exc: Exception) -> ExpressionError:
    return ExpressionError(f"cannot evaluate {to_text(node)}: values of the wrong kind ({exc})", node.pos)


def _read_name(node: Name, env: Mapping[str, object]) -> object:
    try:
        raw = env[node.name]
    except KeyError:
        raise ExpressionError(f"unknown name {node.name!r}.{_suggest(node.name, env)}", node.pos) from None
    return _to_value(raw)


def _scalar(node: Node, env: Mapping[str, object]) -> object:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Name):
        return _read_name(node, env)
    if isinstance(node, Compare):
        return _compare_scalar(node.op, _scalar(node.left, env), _scalar(node.right, env))
    if isinstance(node, And):
        return all(_scalar(item, env) is True for item in node.items)
    if isinstance(node, Or):
        return any(_scalar(item, env) is True for item in node.items)
    if isinstance(node, Not):
        return _scalar(node.operand, env) is not True
    if isinstance(node, BinOp):
        return _ARITHMETIC[node.op](_scalar(node.left, env), _scalar(node.right, env))
    if isinstance(node, Neg):
        return _negate(_scalar(node.operand, env))
    if isinstance(node, InList):
        item = _scalar(node.item, env)
        if item is None:
            return False
        hit = any(_compare_scalar("=", item, _scalar(o, env)) for o in node.options)
        return not hit if node.negated else hit
    if isinstance(node, InRange):
        item, low, high = (_scalar(n, env) for n in (node.item, node.low, node.high))
        return _in_range_scalar(node, item, low, high)
    if isinstance(node, Call):
        if node.func == "if":  # the one lazy function: only the chosen branch is evaluated
            return _scalar(node.args[1] if _scalar(node.args[0], env) is True else node.args[2], env)
        return _SCALAR_FUNCTIONS[node.func](*[_scalar(a, env) for a in node.args])
    raise ExpressionError(f"not an expression node: {node!r}")


# Operations on values. Decimal arithmetic names _DECIMAL_CONTEXT explicitly, so the results do
# not depend on the caller's thread context (compiled functions run without `localcontext`).
def _operation(op: Callable[[Decimal, Decimal], Decimal], fallback: Callable[[object, object], object]
               ) -> Callable[[object, object], object]:
    def apply(left: object, right: object) -> object:
        if left is None or right is None:
            return None
        if type(left) is Decimal and type(right) is Decimal:
            return op(left, right)
        return fallback(left, right)  # values of the wrong kind: Python's own error (TypeError)
    return apply


def _divide(left: object, right: object) -> object:
    if left is None or right is None or right == 0:
        return None
    if type(left) is Decimal and type(right) is Decimal:
        return _DECIMAL_CONTEXT.divide(left, right)
    return left / right  # type: ignore[operator]


_ARITHMETIC: dict[str, Callable[[object, object], object]] = {
    "+": _operation(_DECIMAL_CONTEXT.add, lambda a, b: a + b),  # type: ignore[operator]
    "-": _operation(_DECIMAL_CONTEXT.subtract, lambda a, b: a - b),  # type: ignore[operator]
    "*": _operation(_DECIMAL_CONTEXT.multiply, lambda a, b: a * b),  # type: ignore[operator]
    "/": _divide,
}


def _negate(value: object) -> object:
    if value is None:
        return None
    return _DECIMAL_CONTEXT.minus(value) if type(value) is Decimal else -value  # type: ignore[operator]


def _in_range_scalar(node: InRange, item: object, low: object, high: object) -> bool:
    if item is None or low is None or high is None:
        return False
    above = low <= item if node.low_closed else low < item  # type: ignore[operator]
    below = item <= high if node.high_closed else item < high  # type: ignore[operator]
    inside = above and below
    return not inside if node.negated else inside


def _compare_scalar(op: str, left: object, right: object) -> bool:
    if left is None or right is None:
        return False
    if isinstance(left, bool) is not isinstance(right, bool):
        raise TypeError(f"cannot compare {left!r} with {right!r}")
    return bool(_COMPARE.get(op, operator.ge)(left, right))


_COMPARE: dict[str, Callable[[object, object], object]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def _whole(value: object) -> int | None:
    """The int of a whole Decimal, or None (blank, or a fraction where a count is needed)."""
    if value is None or not isinstance(value, Decimal):
        return None
    if value != value.to_integral_value(context=_DECIMAL_CONTEXT):
        return None
    return int(value)


def _add_months(day: dt.date, months: int) -> dt.date | None:
    total = day.year * 12 + day.month - 1 + months
    year, month0 = divmod(total, 12)
    if not 1 <= year <= 9999:
        return None
    last = calendar.monthrange(year, month0 + 1)[1]
    return dt.date(year, month0 + 1, min(day.day, last))


def _number_text(value: Decimal) -> str:
    if value == 0:
        return "0"
    return format(value.normalize(_DECIMAL_CONTEXT), "f")


def _text_of(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, Decimal):
        return _number_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# The functions on values (every argument evaluated first; `if` is lazy and handled by the callers).
def _fn_add_days(day: object, count: object) -> object:
    days = _whole(count)
    if day is None or days is None:
        return None
    try:
        return day + dt.timedelta(days=days)  # type: ignore[operator]
    except OverflowError:
        return None


def _fn_add_months(day: object, count: object) -> object:
    months = _whole(count)
    if day is None or months is None:
        return None
    return _add_months(day, months)  # type: ignore[arg-type]


def _fn_days_between(first: object, second: object) -> object:
    if first is None or second is None:
        return None
    return Decimal((second - first).days)  # type: ignore[operator]


def _fn_date(*parts: object) -> object:
    year, month, day = (_whole(part) for part in parts)
    if year is None or month is None or day is None:
        return None
    try:
        return dt.date(year, month, day)
    except (ValueError, OverflowError):
        return None


def _date_part(part: Callable[[dt.date], int]) -> Callable[[object], object]:
    def function(day: object) -> object:
        return None if day is None else Decimal(part(day))  # type: ignore[arg-type]
    return function


def _quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _fn_quarter_start(day: object) -> object:
    return None if day is None else _quarter_start(day)  # type: ignore[arg-type]


def _fn_next_quarter_start(day: object) -> object:
    return None if day is None else _add_months(_quarter_start(day), 3)  # type: ignore[arg-type]


def _extreme(pick: Callable[..., object]) -> Callable[..., object]:
    def function(*values: object) -> object:
        return None if any(v is None for v in values) else pick(values)
    return function


def _fn_abs(value: object) -> object:
    if value is None:
        return None
    return _DECIMAL_CONTEXT.abs(value) if type(value) is Decimal else abs(value)  # type: ignore[arg-type]


def _fn_round(value: object, places: object) -> object:
    digits = _whole(places)
    if value is None or digits is None:
        return None
    if not isinstance(value, Decimal):
        raise TypeError(f"round() of {value!r}")
    if -value.as_tuple().exponent <= digits:  # type: ignore[operator]
        return value  # nothing to drop
    try:
        return value.quantize(Decimal(1).scaleb(-digits, _DECIMAL_CONTEXT), rounding=decimal.ROUND_HALF_UP,
                              context=_DECIMAL_CONTEXT)
    except decimal.InvalidOperation:
        return Decimal(0)  # rounding to more than 999,999 places left of the point


def _fn_is_blank(value: object) -> object:
    return value is None


def _fn_present(value: object) -> object:
    return value is not None


def _fn_concat(*values: object) -> object:
    return "".join(_text_of(value) for value in values)


_SCALAR_FUNCTIONS: dict[str, Callable[..., object]] = {
    "add_days": _fn_add_days, "add_months": _fn_add_months, "days_between": _fn_days_between,
    "date": _fn_date, "year": _date_part(lambda d: d.year), "month": _date_part(lambda d: d.month),
    "day": _date_part(lambda d: d.day), "quarter": _date_part(lambda d: (d.month - 1) // 3 + 1),
    "quarter_start": _fn_quarter_start, "next_quarter_start": _fn_next_quarter_start,
    "min": _extreme(min), "max": _extreme(max), "abs": _fn_abs, "round": _fn_round,
    "is_blank": _fn_is_blank, "present": _fn_present, "concat": _fn_concat,
}


# --------------------------------------------------------------------------- compiled scalar evaluation
ScalarFunction = Callable[[Mapping[str, object]], object]


def compile_scalar(node: Node) -> ScalarFunction:
    """The tree as a function of one row's values, with `eval_scalar`'s exact results and errors.

    The rete engine and the prepare stage evaluate the same few expressions for every row; walking
    the tree each time (an isinstance chain per node, a decimal context per call) was most of
    their time. Here the walk happens once: each node becomes a closure over its children's
    closures and the same value operations `_scalar` uses, so the two cannot drift apart (the
    differential tests compare the rete engine, which uses this, with the scalar engine).
    Nothing is generated as source text and nothing reaches Python's evaluator.
    """
    if isinstance(node, Literal):
        value = node.value
        return lambda env: value
    inner = _compiled(node)

    def evaluate(env: Mapping[str, object]) -> object:
        try:
            return inner(env)
        except (TypeError, decimal.InvalidOperation) as exc:
            raise _wrong_kinds(node, exc) from exc
    return evaluate


def _compiled(node: Node) -> ScalarFunction:  # noqa: C901 - one branch per node kind, as _scalar
    if isinstance(node, Literal):
        value = node.value
        return lambda env: value
    if isinstance(node, Name):
        name = node.name

        def read(env: Mapping[str, object]) -> object:
            try:
                raw = env[name]
            except KeyError:
                return _read_name(node, env)  # raises the ExpressionError with a suggestion
            kind = type(raw)
            # the model's own types pass as they are (_to_value would return them unchanged)
            if kind in _PLAIN or (kind is Decimal and raw.is_finite()):  # type: ignore[union-attr]
                return raw
            return _to_value(raw)
        return read
    if isinstance(node, Compare):
        return _compiled_compare(node)
    if isinstance(node, (And, Or)):
        return _compiled_junction(node)
    if isinstance(node, Not):
        operand = _compiled(node.operand)
        return lambda env: operand(env) is not True
    if isinstance(node, BinOp):
        left, right, arithmetic = _compiled(node.left), _compiled(node.right), _ARITHMETIC[node.op]
        return lambda env: arithmetic(left(env), right(env))
    if isinstance(node, Neg):
        operand = _compiled(node.operand)
        return lambda env: _negate(operand(env))
    if isinstance(node, InList):
        return _compiled_in_list(node)
    if isinstance(node, InRange):
        item, low, high = (_compiled(n) for n in (node.item, node.low, node.high))
        return lambda env: _in_range_scalar(node, item(env), low(env), high(env))
    if isinstance(node, Call):
        args = tuple(_compiled(a) for a in node.args)
        if node.func == "if":
            test, then, otherwise = args
            if isinstance(node.args[1], Literal) and isinstance(node.args[2], Literal):  # if(x > 0.7, 1, 0)
                yes, no = node.args[1].value, node.args[2].value
                return lambda env: yes if test(env) is True else no
            return lambda env: then(env) if test(env) is True else otherwise(env)
        function = _SCALAR_FUNCTIONS[node.func]
        if len(args) == 1:
            (only,) = args
            return lambda env: function(only(env))
        if len(args) == 2:
            first, second = args
            return lambda env: function(first(env), second(env))
        return lambda env: function(*[a(env) for a in args])
    raise ExpressionError(f"not an expression node: {node!r}")


_PLAIN = frozenset({type(None), str, bool, dt.date})  # value-model types read as they are


def _compiled_compare(node: Compare) -> ScalarFunction:
    left, op = _compiled(node.left), node.op
    if not isinstance(node.right, Literal):
        right = _compiled(node.right)
        return lambda env: _compare_scalar(op, left(env), right(env))
    # the common `amount >= 20000`: the constant's checks are done once, here
    constant = node.right.value
    if constant is None:
        return lambda env: left(env) is None and False  # evaluated for its errors; blank compares false
    test = _COMPARE.get(op, operator.ge)
    constant_is_bool = isinstance(constant, bool)

    def compare(env: Mapping[str, object]) -> object:
        value = left(env)
        if value is None:
            return False
        if isinstance(value, bool) is not constant_is_bool:
            raise TypeError(f"cannot compare {value!r} with {constant!r}")
        return bool(test(value, constant))
    return compare


def _compiled_junction(node: And | Or) -> ScalarFunction:
    """`and`/`or`, two-valued and short-circuit like `_scalar`; two items (the usual case) unrolled."""
    items = tuple(_compiled(item) for item in node.items)
    conjunction = isinstance(node, And)
    if len(items) == 2:
        first, second = items
        if conjunction:
            return lambda env: first(env) is True and second(env) is True
        return lambda env: first(env) is True or second(env) is True
    every = all if conjunction else any
    return lambda env: every(item(env) is True for item in items)


def _compiled_in_list(node: InList) -> ScalarFunction:
    item, options, negated = _compiled(node.item), tuple(_compiled(o) for o in node.options), node.negated

    def member(env: Mapping[str, object]) -> object:
        value = item(env)
        if value is None:
            return False
        hit = any(_compare_scalar("=", value, option(env)) for option in options)
        return not hit if negated else hit
    return member


# --------------------------------------------------------------------------- vector evaluation
class VectorContext:
    """Per-table state of a vector evaluation: the row count and the rows to redo exactly.

    `uncertain[i]` is set when row i's float result may differ from the exact decimal one; the
    engine re-evaluates those rows with `eval_scalar` and patches them in.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.uncertain = np.zeros(n, bool)
        # Whole-number masks of input columns, keyed by id (the array is kept alive alongside, so
        # the id cannot be reused): a column used in several sums is checked once.
        self._whole_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}


@dataclass
class Vec:
    """A column during vector evaluation (DESIGN "Value model").

    kind: 'number' | 'date' | 'boolean' | 'text'. values: float64 for number/date/boolean (NaN is
    blank, dates are days since 1970-01-01, booleans 1.0/0.0), object array of str/None for text.
    inexact (numbers only): rows whose float may differ from the exact decimal, or None for none.
    """

    kind: str
    values: np.ndarray
    inexact: np.ndarray | None = None


class _V:
    """Internal column: values may be 0-d (a literal, broadcast lazily), booleans may be bool arrays.

    Keeping literals 0-d lets numpy broadcast them inside each operation instead of materialising
    a full column per constant, which keeps `x >= 20000` at one pass over the data.
    """

    __slots__ = ("kind", "values", "inexact", "named")

    def __init__(self, kind: str, values: np.ndarray, inexact: np.ndarray | None = None,
                 named: bool = False) -> None:
        self.kind = kind
        self.values = values
        self.inexact = inexact
        self.named = named  # an input column (lives as long as the table; worth caching facts about)


_FALSE = np.array(False)
_TRUE = np.array(True)
_NAN = np.array(np.nan)
_NONE = np.array(None, dtype=object)


def eval_vector(node: Node, env: Mapping[str, Vec], ctx: VectorContext) -> Vec:
    """Evaluate over all ctx.n rows; literals broadcast. Uncertain rows are flagged in ctx."""
    with np.errstate(all="ignore"):
        result = _vector(node, env, ctx)
    return _public(result, ctx.n)


def eval_condition(node: Node, env: Mapping[str, Vec], ctx: VectorContext) -> np.ndarray:
    """Rows where the condition holds, as a bool array (blank and false both give False)."""
    with np.errstate(all="ignore"):
        mask = _condition(_vector(node, env, ctx))
    if mask.shape != (ctx.n,):
        mask = np.broadcast_to(mask, (ctx.n,)).copy()
    return mask


def _public(vec: _V, n: int) -> Vec:
    kind, values, inexact = vec.kind, vec.values, vec.inexact
    if kind == "blank":
        kind, values = "number", np.full(n, np.nan)
    if values.dtype == bool:
        values = values.astype(np.float64)
    if values.shape != (n,):
        values = np.broadcast_to(values, (n,)).copy()
    if inexact is not None:
        if inexact.shape != (n,):
            inexact = np.broadcast_to(inexact, (n,)).copy()
        if not inexact.any():
            inexact = None
    return Vec(kind, values, inexact if kind == "number" else None)


def _or_masks(first: np.ndarray | None, second: np.ndarray | None) -> np.ndarray | None:
    if first is None:
        return second
    if second is None:
        return first
    return first | second


def _mark(ctx: VectorContext, rows: np.ndarray) -> None:
    ctx.uncertain |= rows  # broadcasting: a 0-d True marks every row


def _valid(vec: _V) -> np.ndarray:
    """Rows where the value is not blank."""
    values = vec.values
    if vec.kind == "blank":
        return _FALSE
    if values.dtype == bool:
        return _TRUE
    if values.dtype == object:
        return np.not_equal(values, None)
    return ~np.isnan(values)


def _condition(vec: _V) -> np.ndarray:
    """True only where the value is the boolean true (blank and false are both false)."""
    if vec.values.dtype == bool:
        return vec.values
    if vec.kind != "boolean":
        return np.zeros(vec.values.shape, bool)
    return vec.values == 1.0


def _as_kind(vec: _V, kind: str) -> _V:
    """A blank literal takes the kind of the other side (text blanks are None, others NaN)."""
    if vec.kind != "blank" or kind == "blank":
        return vec
    return _V(kind, _NONE if kind == "text" else _NAN)


def _vector(node: Node, env: Mapping[str, Vec], ctx: VectorContext) -> _V:
    if isinstance(node, Name):
        try:
            vec = env[node.name]
        except KeyError:
            raise ExpressionError(f"unknown name {node.name!r}.{_suggest(node.name, env)}",
                                  node.pos) from None
        return _from_env(vec, ctx)
    if isinstance(node, Literal):
        return _literal_vector(node.value)
    if isinstance(node, Compare):
        left, right = _vector(node.left, env, ctx), _vector(node.right, env, ctx)
        return _V("boolean", _compare_vector(node.op, left, right, ctx))
    if isinstance(node, (And, Or)):
        combine = np.logical_and if isinstance(node, And) else np.logical_or
        result = _condition(_vector(node.items[0], env, ctx))
        for item in node.items[1:]:
            result = combine(result, _condition(_vector(item, env, ctx)))
        return _V("boolean", result)
    if isinstance(node, Not):
        return _V("boolean", ~_condition(_vector(node.operand, env, ctx)))
    if isinstance(node, BinOp):
        return _binop_vector(node.op, _vector(node.left, env, ctx), _vector(node.right, env, ctx), ctx)
    if isinstance(node, Neg):
        operand = _as_kind(_vector(node.operand, env, ctx), "number")
        return _V("number", -operand.values, operand.inexact)
    if isinstance(node, InList):
        return _V("boolean", _in_list_vector(node, env, ctx))
    if isinstance(node, InRange):
        return _V("boolean", _in_range_vector(node, env, ctx))
    if isinstance(node, Call):
        if node.func == "if":  # the only function that needs its condition as a mask
            return _if_vector(node.args, env, ctx)
        return _VECTOR_FUNCTIONS[node.func]([_vector(a, env, ctx) for a in node.args], ctx)
    raise ExpressionError(f"not an expression node: {node!r}")


def _from_env(vec: Vec, ctx: VectorContext) -> _V:
    kind = _KIND_ALIASES.get(vec.kind, vec.kind)
    values = np.asarray(vec.values)
    if values.shape != (ctx.n,):
        raise ValueError(f"column of {values.shape} rows in a table of {ctx.n} rows")
    if kind == "text" and values.dtype != object:
        values = values.astype(object)
    elif kind != "text" and values.dtype != np.float64:
        values = values.astype(np.float64)
    inexact = vec.inexact if kind == "number" else None
    if inexact is not None and not inexact.any():
        inexact = None
    return _V(kind, values, inexact, named=True)


def _float_exact(value: Decimal) -> bool:
    """Whether the float nearest to `value` stands for exactly `value` (its shortest repr)."""
    number = float(value)
    return number not in (float("inf"), float("-inf")) and Decimal(repr(number)) == value


def _literal_vector(value: object) -> _V:
    if value is None:
        return _V("blank", _NAN)
    if isinstance(value, bool):
        return _V("boolean", _TRUE if value else _FALSE)
    if isinstance(value, Decimal):
        return _V("number", np.array(float(value)), None if _float_exact(value) else _TRUE)
    if isinstance(value, dt.date):
        return _V("date", np.array(float((value - _EPOCH).days)))
    return _V("text", np.array(value, dtype=object))


def _mark_close(ctx: VectorContext, left: _V, right: _V, a: np.ndarray, b: np.ndarray) -> None:
    """Flag rows where an inexact operand is within _CLOSE of the other side (RULESETS §0.3)."""
    inexact = _or_masks(left.inexact, right.inexact)
    if inexact is None:
        return
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1.0)
    _mark(ctx, inexact & (np.abs(a - b) <= _CLOSE * scale))


def _compare_vector(op: str, left: _V, right: _V, ctx: VectorContext) -> np.ndarray:
    if left.kind == "blank" or right.kind == "blank":
        return _FALSE
    a, b = left.values, right.values
    if left.kind == "text":
        if op == "=":
            # None == None is true in Python; one side's validity suffices since equal values
            # share it, and a side that is a (never blank) literal needs no check at all.
            if (a.ndim == 0 and a[()] is not None) or (b.ndim == 0 and b[()] is not None):
                return np.asarray(a == b)
            return (a == b) & _valid(left)
        return (a != b) & _valid(left) & _valid(right)
    if op == "=":
        result = a == b
    elif op == "!=":
        result = (a != b) & _valid(left) & _valid(right)
    elif op == "<":
        result = a < b
    elif op == "<=":
        result = a <= b
    elif op == ">":
        result = a > b
    else:
        result = a >= b
    if left.kind == "number":
        _mark_close(ctx, left, right, a, b)
    return result


def _whole_mask(vec: _V, ctx: VectorContext) -> np.ndarray:
    """Rows holding a whole number below 2**53, where float + - * are exact."""
    values = vec.values
    if vec.named:
        cached = ctx._whole_cache.get(id(values))
        if cached is not None and cached[0] is values:
            return cached[1]
    mask = (np.trunc(values) == values) & (np.abs(values) < _TWO_53)
    if vec.named:
        ctx._whole_cache[id(values)] = (values, mask)
    return mask


def _binop_vector(op: str, left: _V, right: _V, ctx: VectorContext) -> _V:
    left, right = _as_kind(left, "number"), _as_kind(right, "number")
    a, b = left.values, right.values
    if op == "/":
        result = np.where(b == 0, np.nan, a / b)
        return _V("number", result, _TRUE)
    result = a + b if op == "+" else a - b if op == "-" else a * b
    exact = _whole_mask(left, ctx) & _whole_mask(right, ctx) & (np.abs(result) < _TWO_53)
    inexact = _or_masks(_or_masks(left.inexact, right.inexact), None if exact.all() else ~exact)
    if inexact is not None and op in "+-":
        # Cancellation: the float error is relative to the operands, not to the small result.
        magnitude = np.maximum(np.abs(a), np.abs(b))
        _mark(ctx, inexact & (np.abs(result) < _CANCEL * magnitude))
    return _V("number", result, inexact)


def _in_list_vector(node: InList, env: Mapping[str, Vec], ctx: VectorContext) -> np.ndarray:
    item = _vector(node.item, env, ctx)
    if item.kind == "blank":
        return _FALSE
    hit: np.ndarray = _FALSE
    for option in node.options:
        value = _vector(option, env, ctx)
        hit = hit | _compare_vector("=", item, value, ctx)
    if node.negated:
        return ~hit & _valid(item)
    return hit


def _in_range_vector(node: InRange, env: Mapping[str, Vec], ctx: VectorContext) -> np.ndarray:
    item, low, high = (_vector(n, env, ctx) for n in (node.item, node.low, node.high))
    if "blank" in (item.kind, low.kind, high.kind):
        return _FALSE
    above = _compare_vector("<=" if node.low_closed else "<", low, item, ctx)
    below = _compare_vector("<=" if node.high_closed else "<", item, high, ctx)
    inside = above & below
    if node.negated:
        return ~inside & _valid(item) & _valid(low) & _valid(high)
    return inside


def _if_vector(args: tuple[Node, ...], env: Mapping[str, Vec], ctx: VectorContext) -> _V:
    chosen = _condition(_vector(args[0], env, ctx))
    then, other = _vector(args[1], env, ctx), _vector(args[2], env, ctx)
    kind = then.kind if then.kind != "blank" else other.kind
    then, other = _as_kind(then, kind), _as_kind(other, kind)
    a, b = then.values, other.values
    if a.dtype != b.dtype and kind == "boolean":
        a, b = a.astype(np.float64), b.astype(np.float64)
    values = np.where(chosen, a, b)
    inexact = None
    if then.inexact is not None or other.inexact is not None:
        inexact = np.where(chosen, _FALSE if then.inexact is None else then.inexact,
                           _FALSE if other.inexact is None else other.inexact)
    return _V(kind, values, inexact)


def _whole_numbers(vec: _V, ctx: VectorContext) -> np.ndarray:
    """Rows where a count argument (days, months, places) is a whole number.

    An inexact count near a whole number may be whole in exact decimals: flag it for re-evaluation.
    """
    values = vec.values
    whole = np.trunc(values) == values
    if vec.inexact is not None:
        near = np.abs(values - np.round(values)) <= _CLOSE * np.maximum(np.abs(values), 1.0)
        _mark(ctx, vec.inexact & near)
    return whole


# Dates are converted with Howard Hinnant's civil-calendar formulas in int32 arithmetic: about
# ten times faster than numpy's datetime64[M]/[Y] casts, and exact over 0001-01-01..9999-12-31.


def _civil(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day, valid) of float days since 1970-01-01 (NaN = blank)."""
    valid = ~np.isnan(days)
    shifted = np.where(valid, days, 0).astype(np.int32) + 719468  # days since 0000-03-01
    era = shifted // 146097
    day_of_era = shifted - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    march_month = (5 * day_of_year + 2) // 153  # 0 = March ... 11 = February
    day = day_of_year - (153 * march_month + 2) // 5 + 1
    month = np.where(march_month < 10, march_month + 3, march_month - 9)
    year = year_of_era + era * 400 + (month <= 2)
    return year, month, day, valid


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _month_length(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    # 31 for months 1 3 5 7 8 10 12, else 30; February separately. Given year % 4 == 0,
    # "% 100 == 0" is "% 25 == 0" and "% 400 == 0" is "% 16 == 0": one division instead of three.
    length = 30 + ((month + (month >> 3)) & 1)
    leap = ((year & 3) == 0) & (((year % 25) != 0) | ((year & 15) == 0))
    return np.where(month == 2, 28 + leap, length)


def _date_values(year: np.ndarray, month: np.ndarray, day: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Float days of (year, month, day) where ok and the year is in 1..9999, else NaN."""
    ok = ok & (year >= 1) & (year <= 9999)
    return np.where(ok, _days_from_civil(year, month, day).astype(np.float64), np.nan)


def _whole_ints(vec: _V, ctx: VectorContext, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """(int32 values, ok): ok where the value is whole and within ±limit (int32-safe)."""
    values = vec.values
    ok = _whole_numbers(vec, ctx) & (np.abs(values) <= limit)
    return np.where(ok, values, 0).astype(np.int32), ok


def _vf_add_days(args: list[_V], ctx: VectorContext) -> _V:
    day, count = _as_kind(args[0], "date"), _as_kind(args[1], "number")
    result = day.values + count.values
    ok = _whole_numbers(count, ctx) & (result >= _MIN_DAY) & (result <= _MAX_DAY)
    return _V("date", np.where(ok, result, np.nan))


def _vf_add_months(args: list[_V], ctx: VectorContext) -> _V:
    year, month, day, valid = _civil(_as_kind(args[0], "date").values)
    # More than 10,000 years either way leaves the date range anyway; the limit keeps int32 safe.
    count, ok = _whole_ints(_as_kind(args[1], "number"), ctx, 120_000)
    total = year * 12 + (month - 1) + count
    year, month = total // 12, total % 12 + 1
    # EDATE: the same day of the month, or the target month's last day if it is shorter.
    year_safe = np.where((year >= 1) & (year <= 9999), year, 2000)
    day = np.minimum(day, _month_length(year_safe, month))
    return _V("date", _date_values(year, month, day, valid & ok))


def _vf_days_between(args: list[_V], ctx: VectorContext) -> _V:
    first, second = _as_kind(args[0], "date"), _as_kind(args[1], "date")
    return _V("number", second.values - first.values)


def _vf_date(args: list[_V], ctx: VectorContext) -> _V:
    (year, year_ok), (month, month_ok), (day, day_ok) = (
        _whole_ints(_as_kind(a, "number"), ctx, 100_000) for a in args)
    ok = year_ok & month_ok & day_ok & (year >= 1) & (year <= 9999) & (month >= 1) & (month <= 12)
    month = np.where(ok, month, 1)
    ok = ok & (day >= 1) & (day <= _month_length(year, month))
    return _V("date", _date_values(year, month, day, ok))


def _date_part_vector(part: str) -> Callable[[list[_V], VectorContext], _V]:
    def function(args: list[_V], ctx: VectorContext) -> _V:
        year, month, day, valid = _civil(_as_kind(args[0], "date").values)
        result = {"year": year, "month": month, "day": day, "quarter": (month - 1) // 3 + 1}[part]
        return _V("number", np.where(valid, result.astype(np.float64), np.nan))
    return function


def _quarter_start_vector(quarters_later: int) -> Callable[[list[_V], VectorContext], _V]:
    def function(args: list[_V], ctx: VectorContext) -> _V:
        year, month, _day, valid = _civil(_as_kind(args[0], "date").values)
        total = year * 12 + (month - 1) // 3 * 3 + 3 * quarters_later
        return _V("date", _date_values(total // 12, total % 12 + 1, np.ones_like(year), valid))
    return function


def _vf_extreme(pick: np.ufunc) -> Callable[[list[_V], VectorContext], _V]:
    def function(args: list[_V], ctx: VectorContext) -> _V:
        kind = next((a.kind for a in args if a.kind != "blank"), "blank")
        if kind == "blank":
            return _V("blank", _NAN)
        items = [_as_kind(a, kind) for a in args]
        values, inexact = items[0].values, items[0].inexact
        for item in items[1:]:
            values = pick(values, item.values)  # NaN propagates: any blank argument → blank
            inexact = _or_masks(inexact, item.inexact)
        return _V(kind, values, inexact)
    return function


def _vf_abs(args: list[_V], ctx: VectorContext) -> _V:
    value = _as_kind(args[0], "number")
    return _V("number", np.abs(value.values), value.inexact)


def _vf_round(args: list[_V], ctx: VectorContext) -> _V:
    """ROUND_HALF_UP to n places: sign * floor(|x| * 10**n + 0.5) / 10**n.

    The float product can land on the wrong side of a .5 tie, so rows within _CLOSE of a tie are
    flagged uncertain. Away from ties the rounded value is the exact decimal k / 10**n, which is
    float-exact whenever k has at most 15 digits, so rounding also cleans an inexact input.
    """
    value, places = _as_kind(args[0], "number"), _as_kind(args[1], "number")
    x, n = value.values, places.values
    whole = _whole_numbers(places, ctx)
    n_safe = np.clip(np.where(whole, n, 0), -400, 400)
    power = 10.0 ** np.abs(n_safe)  # exact for |n| <= 22; inf far beyond, handled below
    positive = n_safe >= 0
    magnitude = np.abs(x)
    scaled = np.where(positive, magnitude * power, magnitude / power)
    steps = np.floor(scaled + 0.5)
    many_places = n_safe > 15  # beyond float precision: keep x, exactness unknown
    fraction = scaled - np.floor(scaled)
    _mark(ctx, ~many_places & (np.abs(fraction - 0.5) <= _CLOSE * np.maximum(scaled, 1.0)))
    rounded = np.where(positive, steps / power, np.where(steps == 0, 0.0, steps * power))
    rounded = np.copysign(rounded, x)
    result = np.where(many_places, x, rounded)
    result = np.where(whole, result, np.nan)
    # k / 10**n is float-exact for k below 1e15 while 10**|n| is itself exact (|n| <= 22)
    inexact = many_places | (n_safe < -22) | (steps >= 1e15)
    inexact = inexact if inexact.any() else None
    return _V("number", result, inexact)


def _vf_blankness(want_blank: bool) -> Callable[[list[_V], VectorContext], _V]:
    def function(args: list[_V], ctx: VectorContext) -> _V:
        valid = _valid(args[0])
        return _V("boolean", ~valid if want_blank else valid)
    return function


def _lookup_texts(codes: np.ndarray, valid: np.ndarray, render: Callable[[int], str]) -> np.ndarray | None:
    """Render integer codes through a table of their range, or None if the range is too wide.

    Scores, counts and dates cover few distinct values, so formatting the range once and
    gathering is far cheaper than formatting every row (numpy's own str casts run at ~0.5 µs/row).
    """
    if not valid.any():
        return np.full(codes.shape, "", dtype=object)
    low, high = int(codes[valid].min()), int(codes[valid].max())
    span = high - low + 1
    if span > max(4096, codes.size):
        return None
    table = np.array([render(low + i) for i in range(span)] + [""], dtype=object)
    return table[np.where(valid, codes - low, span)]


def _number_texts(values: np.ndarray) -> np.ndarray:
    """Decimal text of floats as the scalar evaluator writes Decimal(repr(x)): no exponent."""
    valid = ~np.isnan(values)
    whole = valid & (np.trunc(values) == values) & (np.abs(values) < _TWO_53)
    codes = np.where(whole, values, 0).astype(np.int64)
    texts = _lookup_texts(codes, whole, str)
    if texts is None:
        texts = np.where(whole, codes.astype(str), "").astype(object)
    rest = np.flatnonzero(valid & ~whole)
    if rest.size:
        shortest = values[rest].astype(str).astype(object)  # shortest round-trip digits, like repr
        for index in np.flatnonzero(np.strings.find(shortest.astype(str), "e") >= 0):
            # numpy writes 1e-05 / 1e+16 with an exponent; rare enough for a Python fix-up
            shortest[index] = _number_text(Decimal(repr(float(values[rest[index]]))))
        texts[rest] = shortest
    return texts


def _date_texts(values: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(values)
    codes = np.where(valid, values, 0).astype(np.int64)
    texts = _lookup_texts(codes, valid, lambda day: (_EPOCH + dt.timedelta(days=day)).isoformat())
    if texts is None:
        texts = np.where(valid, codes.astype("datetime64[D]").astype(str), "").astype(object)
    return texts


def _texts(vec: _V, n: int, ctx: VectorContext) -> np.ndarray:
    values = np.broadcast_to(vec.values, (n,))
    if vec.kind == "blank":
        return np.full(n, "", dtype=object)
    if vec.kind == "text":
        return np.where(np.equal(values, None), "", values).astype(object)
    if vec.kind == "number":
        if vec.inexact is not None:  # the float's digits may not be the exact decimal's
            _mark(ctx, vec.inexact & ~np.isnan(vec.values))
        return _number_texts(values)
    if vec.kind == "date":
        return _date_texts(values)
    truth = values.astype(np.float64)
    return np.where(truth == 1.0, "TRUE", np.where(truth == 0.0, "FALSE", "")).astype(object)


def _vf_concat(args: list[_V], ctx: VectorContext) -> _V:
    scalar = all(a.values.ndim == 0 for a in args)
    n = 1 if scalar else ctx.n
    result = _texts(args[0], n, ctx)
    for arg in args[1:]:
        result = result + _texts(arg, n, ctx)
    return _V("text", np.array(result[0], dtype=object) if scalar else result)


_VECTOR_FUNCTIONS: dict[str, Callable[[list[_V], VectorContext], _V]] = {
    "add_days": _vf_add_days, "add_months": _vf_add_months, "days_between": _vf_days_between,
    "date": _vf_date, "year": _date_part_vector("year"), "month": _date_part_vector("month"),
    "day": _date_part_vector("day"), "quarter": _date_part_vector("quarter"), "quarter_start": _quarter_start_vector(0),
    "next_quarter_start": _quarter_start_vector(1), "min": _vf_extreme(np.minimum),
    "max": _vf_extreme(np.maximum), "abs": _vf_abs, "round": _vf_round,
    "is_blank": _vf_blankness(True), "present": _vf_blankness(False), "concat": _vf_concat,
}
