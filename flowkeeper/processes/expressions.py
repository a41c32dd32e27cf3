"""Sandboxed expressions for scheme conditions and timers, in the style of OptimaJet.

A hand-written tokenizer and precedence-climbing parser build a tree of frozen nodes that a
tree walker evaluates. Nothing reaches Python's ``eval``; the only data an expression can
read is the parameter mapping, through dictionary keys and list indexes (never attributes).

>>> evaluate("@Amount > 100 and not @Flag", {"Amount": "120", "Flag": False})
True
>>> evaluate("@Doc.Lines.0.Price * 2 + 1", {"Doc": {"Lines": [{"Price": 5}]}})
11
>>> compile_expression("@Sum >")
Traceback (most recent call last):
...
flowkeeper.errors.ExpressionError: expression '@Sum >': expected a value after '>' at position 6

Grammar, lowest precedence first (keywords are case-insensitive): ``or``/``||``;
``and``/``&&``; ``not``/``!``; one comparison ``==`` (``=`` is accepted as the same, as in
many OptimaJet schemes), ``!=``/``<>``, ``<``, ``<=``, ``>``, ``>=``; ``+ -``; ``* / %``;
unary ``- +`` (where a value is expected ``!``/``not`` binds as tightly, so ``@A == !@B``
works); values: ``@Name``, ``@Name.Key.0``, ``@Name["key"]``, ``@Name[0]``, integers,
decimals, strings in ``'`` or ``"`` with ``\\n \\t \\r \\0 \\\\ \\' \\" \\uXXXX`` escapes,
``true``, ``false``, ``null``, parentheses. There are no function calls.

Semantics: integer literals are ``int`` and decimal ones ``float`` (``Decimal`` parameters
work too); ``/`` is true division (``7 / 2`` is ``3.5``); ``%`` keeps the dividend's sign
as in .NET. A string that looks like a number (``"5"``, ``" -1.5 "``) is that number next
to a number or under ``- * / %`` (and ``+`` with a number); two strings compare as text and
``+`` joins them. ``"true"``/``"false"`` (any case) equal the booleans; booleans are not
numbers. ``==``/``!=`` take any two values (different kinds are unequal, ``null == null``);
ordering different kinds or ``null``, arithmetic on non-numbers and division by zero raise
:class:`~flowkeeper.errors.ExpressionError`. A missing parameter, key or index is ``null``.
``and``/``or``/``not`` short-circuit and give booleans, by :func:`is_true`.

Bounds: 10,000 characters of source, 64 levels of nesting (parentheses, brackets, unary
operators), 100,000 characters per string result, 4,096 bits per integer. Runs of one
precedence level are flat nodes evaluated in a loop, so long expressions use little stack.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple, TypeAlias

from flowkeeper.errors import ExpressionError

__all__ = ["Expression", "compile_expression", "evaluate", "is_true"]

MAX_LENGTH, MAX_DEPTH, MAX_STRING, MAX_INT_BITS = 10_000, 64, 100_000, 4096

_WORDS: dict[str, tuple[str, Any]] = {
    "and": ("op", "and"), "or": ("op", "or"), "not": ("op", "not"),
    "true": ("const", True), "false": ("const", False), "null": ("const", None),
}  # fmt: skip
_SYMBOLS = {"||": "or", "&&": "and", "!": "not", "=": "==", "<>": "!="}
_TWO_CHAR = ("||", "&&", "==", "!=", "<>", "<=", ">=")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}
_COMPARE, _NOT, _TIGHTEST = 4, 3, 7
_BINARY = {"or": 1, "and": 2, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}
_BINARY.update(dict.fromkeys(("==", "!=", "<", "<=", ">", ">="), _COMPARE))
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_NUMERIC_TEXT = re.compile(r"\s*[+-]?[0-9]+(?:\.[0-9]+)?\s*")
_TIMES = (date, time, timedelta)  # datetime is a date


class _Fail(Exception):
    """Internal: a reason and a position, turned into an ExpressionError naming the text."""

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason)
        self.reason, self.pos = reason, pos


def _error(text: str, reason: str, pos: int) -> ExpressionError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return ExpressionError(f"expression {shown!r}: {reason} at position {pos}")


# -- tokens ----------------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # "num", "str", "const", "param", "prop" (.Name), "op", "end"
    value: Any
    pos: int
    text: str


def _name_end(text: str, i: int) -> int:
    while i < len(text) and (text[i].isalnum() or text[i] == "_"):
        i += 1
    return i


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch, two = text[i], text[i : i + 2]
        if ch.isspace():
            i += 1
            continue
        if ch in "@.":
            j = _name_end(text, i + 1)
            if j == i + 1:
                what = "a parameter name after '@'" if ch == "@" else "a key after '.'"
                raise _Fail(f"expected {what}", i + 1)
            token = _Token("param" if ch == "@" else "prop", text[i + 1 : j], i, text[i:j])
        elif number := _NUMBER.match(text, i):
            j = number.end()
            if j < n and (text[j] == "." or _name_end(text, j) > j):
                raise _Fail(f"unexpected {text[j]!r} after the number {number[0]!r}", j)
            token = _Token("num", _parse_number(number[0], i), i, number[0])
        elif ch in "'\"":
            j, value = _string(text, i)
            token = _Token("str", value, i, text[i:j])
        elif _name_end(text, i) > i:
            j = _name_end(text, i)
            word = text[i:j]
            if word.lower() not in _WORDS:
                raise _Fail(f"unknown name {word!r} (parameters are written @Name)", i)
            token = _Token(*_WORDS[word.lower()], i, word)
        elif two in _TWO_CHAR or ch in "!=<>+-*/%()[]":
            op = two if two in _TWO_CHAR else ch
            j, token = i + len(op), _Token("op", _SYMBOLS.get(op, op), i, op)
        else:
            raise _Fail(f"unexpected character {ch!r}", i)
        tokens.append(token)
        i = j
    tokens.append(_Token("end", None, n, ""))
    return tokens


def _string(text: str, start: int) -> tuple[int, str]:
    quote, i, parts = text[start], start + 1, []
    while i < len(text) and text[i] != quote:
        if text[i] != "\\":
            parts.append(text[i])
            i += 1
        elif text[i + 1 : i + 2] == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
            parts.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        elif text[i + 1 : i + 2] in _ESCAPES:
            parts.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            raise _Fail(f"unknown escape {text[i : i + 2]!r} in a string", i)
    if i >= len(text):
        raise _Fail(f"string opened at position {start} is not closed", len(text))
    return i + 1, "".join(parts)


# -- tree ------------------------------------------------------------------------------------


class _Const(NamedTuple):
    value: Any


class _Param(NamedTuple):
    name: str
    path: tuple[str | _Node, ...]  # .Key segments and [expression] indexes


class _Logic(NamedTuple):
    op: str  # "and" or "or"
    operands: tuple[_Node, ...]


class _Unary(NamedTuple):
    op: str  # "not", "-" or "+"
    operand: _Node
    pos: int


class _Compare(NamedTuple):
    op: str
    left: _Node
    right: _Node
    pos: int


class _Chain(NamedTuple):
    first: _Node
    rest: tuple[tuple[str, _Node, int], ...]  # (operator, operand, position), left to right


_Node: TypeAlias = _Const | _Param | _Logic | _Unary | _Compare | _Chain


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens, self.i, self.depth = tokens, 0, 0
        self.names: set[str] = set()

    def next_is(self, op: str) -> bool:
        token = self.tokens[self.i]
        return token.kind == "op" and token.value == op

    def advance(self) -> _Token:
        self.i += 1
        return self.tokens[self.i - 1]

    def nested(self, opening: _Token, parse: Callable[[], _Node], closing: str = "") -> _Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Fail(f"expression nested too deeply (more than {MAX_DEPTH} levels)", opening.pos)
        node = parse()
        if closing and not self.next_is(closing):
            token = self.tokens[self.i]
            found = "the end" if token.kind == "end" else repr(token.text)
            where = f"the '{opening.text}' at position {opening.pos}"
            raise _Fail(f"expected '{closing}' to close {where} but found {found}", token.pos)
        if closing:
            self.advance()
        self.depth -= 1
        return node

    def parse(self) -> _Node:
        if self.tokens[0].kind == "end":
            raise _Fail("empty expression", 0)
        node = self.expr(0)
        token = self.tokens[self.i]
        if token.kind != "end":
            raise _Fail(f"unexpected {token.text!r}", token.pos)
        return node

    def expr(self, min_prec: int) -> _Node:
        """Precedence climbing; a run of one level becomes one flat node, built in linear time."""
        left, kind, items = self.prefix(min_prec), "", list[Any]()
        while True:
            token = self.tokens[self.i]
            prec = _BINARY.get(token.value, -1) if token.kind == "op" else -1
            if prec < min_prec:
                return _join(left, kind, items)
            if prec == _COMPARE and kind == "compare":
                raise _Fail("comparisons cannot be chained; combine them with 'and'", token.pos)
            self.advance()
            right = self.expr(prec + 1)
            new_kind = token.value if prec < _COMPARE else "chain" if prec > _COMPARE else "compare"
            if new_kind != kind:
                left, kind, items = _join(left, kind, items), new_kind, []
            if kind == "compare":
                left = _Compare(token.value, left, right, token.pos)
            else:
                items.append(right if kind != "chain" else (token.value, right, token.pos))

    def prefix(self, min_prec: int) -> _Node:
        """Unary operators; ``not`` at its own level takes a comparison, elsewhere one value."""
        token = self.tokens[self.i]
        if not (token.kind == "op" and token.value in ("not", "-", "+")):
            return self.primary()
        self.advance()
        wide = token.value == "not" and min_prec <= _NOT
        operand = self.nested(token, lambda: self.expr(_NOT) if wide else self.prefix(_TIGHTEST))
        return _Unary(token.value, operand, token.pos)

    def primary(self) -> _Node:
        token = self.advance()
        if token.kind in ("num", "str", "const"):
            return _Const(token.value)
        if token.kind == "op" and token.value == "(":
            return self.nested(token, lambda: self.expr(0), ")")
        if token.kind != "param":
            before = f"after {self.tokens[self.i - 2].text!r}" if self.i >= 2 else "at the start"
            found = "" if token.kind == "end" else f" but found {token.text!r}"
            raise _Fail(f"expected a value {before}{found}", token.pos)
        self.names.add(token.value)
        path: list[str | _Node] = []
        while self.tokens[self.i].kind == "prop" or self.next_is("["):
            step = self.advance()
            is_key = step.kind == "prop"
            path.append(step.value if is_key else self.nested(step, lambda: self.expr(0), "]"))
        return _Param(token.value, tuple(path))


def _join(left: _Node, kind: str, items: list[Any]) -> _Node:
    if not items:
        return left
    return _Chain(left, tuple(items)) if kind == "chain" else _Logic(kind, (left, *items))


# -- values ----------------------------------------------------------------------------------


def is_true(value: Any) -> bool:
    """Truthiness of conditions and of ``and``/``or``/``not`` operands.

    ``None``, ``False``, numeric zero, ``""``, ``"false"`` in any case and empty lists,
    tuples, sets and dicts are false; everything else (``"0"`` too) is true.

    >>> [is_true(v) for v in (None, 0, "", "FALSE", [], "0", "no", 1)]
    [False, False, False, False, False, True, True, True]
    """
    if value is None or isinstance(value, bool):
        return value is True
    if isinstance(value, Decimal):
        return not value.is_zero()
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value != "" and value.lower() != "false"
    if isinstance(value, list | tuple | dict | set | frozenset):
        return len(value) > 0
    return True


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if _is_number(value):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value if len(value) <= 30 else value[:27] + '...'!r}"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _parse_number(digits: str, pos: int) -> Any:
    if "." in digits:
        return _checked(float(digits), pos)
    if len(digits) > MAX_INT_BITS // 3:
        raise _Fail(f"number too large (more than {MAX_INT_BITS} bits)", pos)
    return _checked(int(digits), pos)


def _numeric(value: Any, pos: int) -> Any:
    """The number a value stands for (a number or a numeric string), else ``None``."""
    if _is_number(value):
        return value
    if isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value):
        text = value.strip()
        number = _parse_number(text.lstrip("+-"), pos)
        return -number if text.startswith("-") else number
    return None


def _checked(value: Any, pos: int) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _Fail(f"number too large (more than {MAX_INT_BITS} bits)", pos)
    if isinstance(value, float) and not math.isfinite(value):
        raise _Fail("result is not a finite number", pos)
    if isinstance(value, Decimal) and not value.is_finite():
        raise _Fail("result is not a finite number", pos)
    return value


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _equal(a: Any, b: Any, pos: int) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        left, right = _as_bool(a), _as_bool(b)
        return left is not None and left == right
    if _is_number(a) or _is_number(b):
        left, right = _numeric(a, pos), _numeric(b, pos)
        return left is not None and right is not None and bool(left == right)
    return bool(a == b)


def _compare(op: str, a: Any, b: Any, pos: int) -> bool:
    try:
        if op in ("==", "!="):
            return _equal(a, b, pos) == (op == "==")
        left, right = a, b
        if _is_number(a) or _is_number(b):
            left, right = _numeric(a, pos), _numeric(b, pos)
            comparable = left is not None and right is not None
        else:
            both_text = isinstance(a, str) and isinstance(b, str)
            comparable = both_text or (isinstance(a, _TIMES) and isinstance(b, _TIMES))
        if comparable:
            return _ORDER[op](left, right)
    except (TypeError, ValueError, ArithmeticError):
        if op in ("==", "!="):
            return op == "!="
    raise _Fail(f"cannot compare {_describe(a)} with {_describe(b)} using '{op}'", pos)


def _remainder(x: Any, y: Any) -> Any:
    """The remainder with the dividend's sign, as .NET computes it."""
    if isinstance(x, int) and isinstance(y, int):
        return abs(x) % abs(y) * (1 if x >= 0 else -1)
    if isinstance(x, Decimal) or isinstance(y, Decimal):
        return x % y  # Decimal's remainder already truncates
    return math.fmod(x, y)


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "%": _remainder,
}  # fmt: skip


def _arithmetic(op: str, a: Any, b: Any, pos: int) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > MAX_STRING:
            raise _Fail(f"string result longer than {MAX_STRING} characters", pos)
        return a + b
    x, y = _numeric(a, pos), _numeric(b, pos)
    if x is None or y is None:
        raise _Fail(f"cannot apply '{op}' to {_describe(a)} and {_describe(b)}", pos)
    if isinstance(x, float) and isinstance(y, Decimal):
        y = float(y)
    elif isinstance(x, Decimal) and isinstance(y, float):
        x = float(x)
    if op in "/%" and y == 0:
        raise _Fail("division by zero", pos)
    try:
        return _checked(_ARITHMETIC[op](x, y), pos)
    except ArithmeticError as exc:
        raise _Fail(f"cannot compute {_describe(a)} {op} {_describe(b)}: {exc}", pos) from None


def _step(value: Any, key: Any) -> Any:
    """One step down a parameter path: a mapping key or a list index; anything else is null."""
    if isinstance(key, bool) or not isinstance(key, str | int):
        return None
    if isinstance(value, Mapping):
        return value.get(key)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        if isinstance(key, str):
            if not (key.isascii() and key.isdigit() and len(key) < 19):
                return None
            key = int(key)
        return value[key] if 0 <= key < len(value) else None
    return None


def _eval(node: _Node, parameters: Mapping[str, Any]) -> Any:
    if isinstance(node, _Const):
        return node.value
    if isinstance(node, _Param):
        value = parameters.get(node.name)
        for segment in node.path:
            value = _step(
                value, segment if isinstance(segment, str) else _eval(segment, parameters)
            )
        return value
    if isinstance(node, _Logic):
        stop = node.op == "or"  # the operand value that decides the result
        for operand in node.operands:
            if is_true(_eval(operand, parameters)) is stop:
                return stop
        return not stop
    if isinstance(node, _Unary):
        value = _eval(node.operand, parameters)
        if node.op == "not":
            return not is_true(value)
        number = _numeric(value, node.pos)
        if number is None:
            raise _Fail(f"cannot apply unary '{node.op}' to {_describe(value)}", node.pos)
        return _checked(-number if node.op == "-" else number, node.pos)
    if isinstance(node, _Compare):
        left = _eval(node.left, parameters)
        return _compare(node.op, left, _eval(node.right, parameters), node.pos)
    result = _eval(node.first, parameters)
    for op, operand, pos in node.rest:
        result = _arithmetic(op, result, _eval(operand, parameters), pos)
    return result


# -- public API ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression: immutable, safe to evaluate from many threads at once."""

    text: str
    _tree: _Node = field(repr=False)
    _names: frozenset[str] = field(repr=False)

    def evaluate(self, parameters: Mapping[str, Any]) -> Any:
        """The value for ``parameters``; :class:`ExpressionError` if an operation fails.

        >>> compile_expression("@A.B <> 'x'").evaluate({"A": {"B": "y"}})
        True
        """
        try:
            return _eval(self._tree, parameters)
        except _Fail as fail:
            raise _error(self.text, fail.reason, fail.pos) from None
        except RecursionError:
            raise _error(self.text, "too deeply nested to evaluate", 0) from None

    def references(self) -> frozenset[str]:
        """The top-level parameter names read (``@Doc.Total`` reads ``Doc``)."""
        return self._names


def compile_expression(text: str) -> Expression:
    """Parse ``text`` once; :class:`ExpressionError` names the position and the reason.

    >>> sorted(compile_expression("@A.X > 1 || @B").references())
    ['A', 'B']
    """
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise _error(text, f"longer than {MAX_LENGTH} characters", MAX_LENGTH)
    try:
        parser = _Parser(_tokenize(text))
        tree = parser.parse()
    except _Fail as fail:
        raise _error(text, fail.reason, fail.pos) from None
    except RecursionError:  # only when called with little stack left
        raise _error(text, "expression nested too deeply", 0) from None
    return Expression(text, tree, frozenset(parser.names))


_compile_cached = lru_cache(maxsize=1024)(compile_expression)


def evaluate(text: str, parameters: Mapping[str, Any]) -> Any:
    """Compile ``text`` (cached) and evaluate it against ``parameters``.

    >>> evaluate("(1 + 2) * 3 % 4", {})
    1
    """
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, not {type(text).__name__}")
    return _compile_cached(text).evaluate(parameters)
