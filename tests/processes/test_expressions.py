"""The sandboxed expression evaluator: grammar, semantics, error messages, bounds, safety."""

from __future__ import annotations

import ast
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowkeeper.errors import ExpressionError, FlowkeeperError, InvalidArgument
from flowkeeper.processes import expressions
from flowkeeper.processes.expressions import Expression, compile_expression, evaluate, is_true

PARAMS: dict[str, Any] = {
    "Sum": 150,
    "Small": 5,
    "Text": "abc",
    "Num": "10",
    "Flag": True,
    "No": False,
    "Nothing": None,
    "Price": 2.5,
    "Money": Decimal("10.25"),
    "Doc": {"Total": 120, "Lines": [{"Price": 5}, {"Price": 7}], "Owner": {"Name": "Ann"}},
    "List": [10, 20, 30],
    "Key": "Total",
    "Index": 1,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # literals
        ("42", 42),
        ("1.5", 1.5),
        ("'a\\'b'", "a'b"),
        ('"tab\\there"', "tab\there"),
        ('"\\u00e9\\n\\\\"', "é\n\\"),
        ("true", True),
        ("True", True),
        ("FALSE", False),
        ("null", None),
        ("NULL == null", True),
        # parameters, keys and indexes
        ("@Sum", 150),
        ("@Missing", None),
        ("@Doc.Total", 120),
        ("@Doc.Owner.Name", "Ann"),
        ("@Doc.Lines.1.Price", 7),
        ("@Doc.Lines.5.Price", None),
        ("@Doc.Missing.Deeper", None),
        ("@List.0", 10),
        ("@List[2]", 30),
        ("@List[@Index]", 20),
        ("@List[-1]", None),
        ('@Doc["Total"]', 120),
        ("@Doc[@Key]", 120),
        ("@Doc.Lines[0].Price", 5),
        ("@Text.0", None),
        ("@Sum.Anything", None),
        # arithmetic and precedence
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 2 - 3", 5),
        ("2 * 3 % 4", 2),
        ("7 / 2", 3.5),
        ("6 / 3", 2.0),
        ("-7 % 3", -1),
        ("7 % -3", 1),
        ("-@Small", -5),
        ("- -@Small", 5),
        ("+'5'", 5),
        ("@Price * 2", 5.0),
        ("@Money + 1", Decimal("11.25")),
        ("@Money * @Price", 25.625),
        # strings and numeric strings
        ("'a' + 'b'", "ab"),
        ("'5' + '5'", "55"),
        ("'5' + 5", 10),
        ("@Num * 2", 20),
        ("' -1.5 ' * 2", -3.0),
        ("'5' < 10", True),
        ("'10' == 10", True),
        ("10 == '10.0'", True),
        ("'abc' == 'abc'", True),
        ("'abc' == 10", False),
        ("'b' > 'a'", True),
        ("'10' < '9'", True),  # two strings compare as text
        # comparisons
        ("@Sum > 100", True),
        ("@Sum >= 150", True),
        ("@Sum < 150", False),
        ("@Sum <= 149", False),
        ("@Sum = 150", True),
        ("@Sum == 150.0", True),
        ("@Sum != 150", False),
        ("@Sum <> 150", False),
        ("@Money > 10", True),
        ("@Money == 10.25", True),
        ("@Nothing == null", True),
        ("@Missing != null", False),
        ("@Sum == null", False),
        ("true == 1", False),
        ("'TRUE' == true", True),
        ("@No == 'false'", True),
        ("@List == @List", True),
        ("(1 < 2) == true", True),
        # logic
        ("@Sum > 100 and @Small < 10", True),
        ("@Sum > 100 AND @Small > 10", False),
        ("@Sum > 100 && @Flag", True),
        ("@No || @Flag", True),
        ("@No Or @Nothing", False),
        ("not @Flag", False),
        ("!@No", True),
        ("not 1 == 2", True),
        ("not @Sum > 100 and @Flag", False),
        ("@Flag == !@No", True),
        ("true or false and false", True),
        ("(true or false) and false", False),
        ("not not 'x'", True),
        ("@Nothing or 0 or ''", False),
        ("@Missing and (1 / 0)", False),  # short-circuit: the division never runs
        ("@Flag or @Missing.X > 1", True),
        ("1 and 'yes'", True),
    ],
)
def test_values(text: str, expected: Any) -> None:
    result = evaluate(text, PARAMS)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("@Sum >", "expression '@Sum >': expected a value after '>' at position 6"),
        ("", "empty expression at position 0"),
        ("   ", "empty expression"),
        ("(1 + 2", "expected ')' to close the '(' at position 0 but found the end at position 6"),
        ("@List[1", "expected ']' to close the '[' at position 5"),
        ("1 + * 2", "expected a value after '+' but found '*' at position 4"),
        ("* 2", "expected a value at the start but found '*' at position 0"),
        ("1 2", "unexpected '2' at position 2"),
        ("'it''s'", "unexpected \"'s'\" at position 4"),
        ("(1))", "unexpected ')' at position 3"),
        ("1 < 2 < 3", "comparisons cannot be chained; combine them with 'and' at position 6"),
        ("@", "expected a parameter name after '@' at position 1"),
        ("@A.", "expected a key after '.' at position 3"),
        ("1.", "unexpected '.' after the number '1' at position 1"),
        ("1.2.3", "unexpected '.' after the number '1.2'"),
        ("12abc", "unexpected 'a' after the number '12' at position 2"),
        ("'open", "string opened at position 0 is not closed at position 5"),
        ("'\\q'", "unknown escape '\\\\q' in a string at position 1"),
        ("1 | 2", "unexpected character '|' at position 2"),
        ("1 & 2", "unexpected character '&'"),
        ("2 ** 3", "expected a value after '*' but found '*'"),
        ("1 ^ 2", "unexpected character '^'"),
        ("amount > 1", "unknown name 'amount' (parameters are written @Name) at position 0"),
        ("@A.b()", "unexpected '(' at position 4"),
        ("9" * 2000, "number too large"),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 / 0", "expression '1 / 0': division by zero at position 2"),
        ("1 % 0.0", "division by zero"),
        ("@Sum / (@Small - 5)", "division by zero at position 5"),
        ("true + 1", "cannot apply '+' to boolean true and number 1 at position 5"),
        ("'abc' + 1", "cannot apply '+' to string 'abc' and number 1"),
        ("'abc' - 'a'", "cannot apply '-' to string 'abc' and string 'a'"),
        ("null + 1", "cannot apply '+' to null and number 1"),
        ("@Doc * 2", "cannot apply '*' to dict and number 2"),
        ("-'x'", "cannot apply unary '-' to string 'x' at position 0"),
        ("-true", "cannot apply unary '-' to boolean true"),
        ("'abc' < 10", "cannot compare string 'abc' with number 10 using '<' at position 6"),
        ("null < 1", "cannot compare null with number 1 using '<'"),
        ("@Missing >= 0", "cannot compare null with number 0 using '>='"),
        ("true > false", "cannot compare boolean true with boolean false"),
        ("@Doc > @Doc", "cannot compare dict with dict"),
        ("1 + !@Flag", "cannot apply '+' to number 1 and boolean false"),
    ],
)
def test_evaluation_errors(text: str, message: str) -> None:
    expression = compile_expression(text)  # compiles: the problem is in the values
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate(PARAMS)
    assert message in str(caught.value)
    assert isinstance(caught.value, InvalidArgument)
    assert isinstance(caught.value, FlowkeeperError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (0, False),
        (0.0, False),
        (Decimal(0), False),
        ("", False),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ([], False),
        ({}, False),
        (True, True),
        (1, True),
        (-0.5, True),
        (Decimal("0.1"), True),
        ("0", True),
        ("no", True),
        (" false", True),
        ([0], True),
        ({"a": None}, True),
        (object(), True),
    ],
)
def test_is_true(value: Any, expected: bool) -> None:
    assert is_true(value) is expected


def test_expression_object() -> None:
    expression = compile_expression("@Doc.Total > @Limit or @Doc[@Key] == 1 or @Limit")
    assert isinstance(expression, Expression)
    assert expression.text == "@Doc.Total > @Limit or @Doc[@Key] == 1 or @Limit"
    assert expression.references() == frozenset({"Doc", "Limit", "Key"})
    assert expression.evaluate({"Doc": {"Total": 5}, "Limit": 3}) is True
    assert expression.evaluate({"Doc": {"Total": 1}, "Limit": 3}) is True  # @Limit is truthy
    assert expression.evaluate({"Doc": {"Total": 0}, "Limit": 0}) is False
    assert compile_expression("1 + 2").references() == frozenset()
    with pytest.raises(AttributeError):
        expression.text = "other"  # type: ignore[misc]


def test_evaluate_caches_compilation() -> None:
    assert evaluate("@X * 2 + 1", {"X": 1}) == 3
    assert evaluate("@X * 2 + 1", {"X": 2}) == 5
    assert expressions._compile_cached.cache_info().hits >= 1


@pytest.mark.parametrize("value", [None, 42, b"1 + 1", ["1"]])
def test_text_must_be_a_string(value: Any) -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        compile_expression(value)
    with pytest.raises(ExpressionError, match="must be a string"):
        evaluate(value, {})


def test_one_expression_many_threads() -> None:
    expression = compile_expression("@N * 2 + @Doc.K")
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda n: expression.evaluate({"N": n, "Doc": {"K": 1}}), range(500))
        )
    assert results == [n * 2 + 1 for n in range(500)]


def outcome(call: Callable[[], object]) -> object:
    """The result, or the ExpressionError raised instead."""
    try:
        return call()
    except ExpressionError as error:
        return error


# -- bounds ----------------------------------------------------------------------------------


def test_source_length_is_bounded() -> None:
    text = "+".join(["1"] * 5000)  # 9,999 characters
    assert evaluate(text, {}) == 5000
    with pytest.raises(ExpressionError, match="longer than 10000 characters at position 10000"):
        compile_expression(text + "+1")


@pytest.mark.parametrize(
    "build",
    [
        lambda d: "(" * d + "1" + ")" * d,
        lambda d: "-" * d + "1",
        lambda d: "not " * d + "true",
        lambda d: "!" * d + "true",
        lambda d: "@L[" * d + "0" + "]" * d,
        # every level holds every operator, so the tree is as deep as it can get
        lambda d: "(@F or (@T and (1 == (1 + (1 * " * (d // 5) + "1" + ")))))" * (d // 5),
    ],
)
def test_nesting_depth_is_bounded(build: Callable[[int], str]) -> None:
    expression = compile_expression(build(60))
    params = {"F": False, "T": True, "L": [0]}
    # the layered case fails on its way out (1 * false), after walking down every level
    result = outcome(lambda: expression.evaluate(params))
    assert not isinstance(result, ExpressionError) or "cannot apply '*'" in str(result)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression(build(70))
    with pytest.raises(ExpressionError):
        compile_expression(build(3000))


def test_deep_expressions_never_raise_recursion_error() -> None:
    """Even with most of the stack used up, deep input gives ExpressionError, not a crash."""
    text = "(" * 64 + "1" + ")" * 64

    def descend(n: int) -> object:
        if n > 0:
            return descend(n - 1)
        return outcome(lambda: compile_expression(text).evaluate({}))

    frame, used = sys._getframe(), 0
    while frame is not None:
        frame, used = frame.f_back, used + 1  # type: ignore[assignment]
    room = sys.getrecursionlimit() - used
    outcomes = {type(descend(room - margin)) for margin in (20, 60, 150, 400)}
    assert outcomes <= {int, ExpressionError}


def test_string_results_are_bounded() -> None:
    half = "x" * 50_000
    assert len(evaluate("@S + @S", {"S": half})) == 100_000
    with pytest.raises(ExpressionError, match="string result longer than 100000 characters"):
        evaluate("@S + @S + 'y'", {"S": half})


def test_integers_are_bounded() -> None:
    assert evaluate("@N * 2", {"N": 2**4000}) == 2**4001
    with pytest.raises(ExpressionError, match="number too large"):
        evaluate("@N * @N", {"N": 2**4000})
    with pytest.raises(ExpressionError, match="not a finite number"):
        evaluate("@F * @F", {"F": 1e300})
    with pytest.raises(ExpressionError, match="number too large"):
        evaluate("@S + 1", {"S": "9" * 5000})


def test_long_flat_chains_are_linear() -> None:
    start = time.perf_counter()
    assert evaluate(" + ".join(["@A"] * 1900), {"A": 1}) == 1900
    assert evaluate(" or ".join(["@A"] * 1500), {"A": 0}) is False
    assert evaluate(" and ".join(["@A == 1"] * 700), {"A": 1}) is True
    assert time.perf_counter() - start < 2


# -- safety ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch /tmp/flowkeeper-pwned')",
        "().__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "eval('1')",
        "exec('x = 1')",
        "open('/etc/passwd')",
        "lambda: 1",
        "[x for x in ()]",
        "@A.__class__()",
        "@A.pop(0)",
        "@A; 1",
        "1 if True else 2",
        "{}",
        "f'{1}'",
        "@A.__class__.__mro__[1].__subclasses__()",
    ],
)
def test_code_is_never_run(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an expression reached a dangerous builtin")

    monkeypatch.setattr(os, "system", refuse)
    with pytest.raises(ExpressionError):
        evaluate(text, {"A": [1, 2]})


@pytest.mark.parametrize(
    "text",
    [
        "@A.__class__",
        "@A.__dict__",
        "@A.__class__.__mro__",
        "@A.__init__.__globals__",
        '@A["__class__"]',
        "@O.__class__",
        "@O.__dict__",
        "@S.upper",
        "@S.__len__",
        "@L.pop",
        "@L.__class__",
    ],
)
def test_dunder_names_are_only_keys(text: str) -> None:
    params = {"A": {"x": 1}, "O": object(), "S": "text", "L": [1]}
    assert evaluate(text, params) is None


def test_dunder_keys_are_ordinary_keys() -> None:
    assert evaluate("@A.__class__ + 1", {"A": {"__class__": 4}}) == 5
    assert evaluate('@A["__dict__"]', {"A": {"__dict__": "d"}}) == "d"


def test_module_never_calls_eval_exec_or_getattr() -> None:
    source = Path(expressions.__file__).read_text()
    forbidden = {"eval", "exec", "compile", "getattr", "__import__", "literal_eval", "setattr"}
    called = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            called.add(ast.unparse(node.func))
    assert called.isdisjoint(forbidden)
    assert "re.compile" in called  # the walk does see attribute calls
    assert not {name for name in called if name.split(".")[-1] in forbidden} - {"re.compile"}


# -- properties ------------------------------------------------------------------------------

TOKENS = [
    "@A", "@B", "@A.x", "@L.0", "@L[", "]", "1", "0", "2.5", "'s'", '"5"', "true", "null", "(",
    ")", "+", "-", "*", "/", "%", "==", "=", "!=", "<>", "<", "<=", ">", ">=", "and", "OR",
    "not", "!", "&&", "||", " ", ".", "@", "'", "\\", "[", "x",
]  # fmt: skip
RANDOM_PARAMS = {"A": 3, "B": "7", "L": [1, "a", None], "C": {"x": [True]}}


def quick_outcome(text: str) -> object:
    start = time.perf_counter()
    result = outcome(lambda: evaluate(text, RANDOM_PARAMS))
    assert time.perf_counter() - start < 1.0
    return result


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_gives_a_value_or_expression_error(text: str) -> None:
    quick_outcome(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.sampled_from(["", " "]))
def test_token_soup_gives_a_value_or_expression_error(tokens: list[str], glue: str) -> None:
    quick_outcome(glue.join(tokens))


# Well-formed expressions: a tree, rendered with the fewest parentheses the documented
# precedence allows, evaluated by the parser and by a reference walk of the same tree.


@dataclass(frozen=True)
class Node:
    op: str  # "lit", "param", "neg", "not", or a binary operator
    args: tuple[Any, ...]


PREC = {"or": 1, "and": 2, "not": 3, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4}
PREC |= {"+": 5, "-": 5, "*": 6, "/": 6, "%": 6, "neg": 7, "lit": 8, "param": 8}
SPELLINGS = {"or": ["or", "OR", "||"], "and": ["and", "And", "&&"], "!=": ["!=", "<>"]}
SPELLINGS |= {"==": ["==", "="], "not": ["not ", "NOT ", "!"]}


def numbers(depth: int) -> st.SearchStrategy[Node]:
    leaf = st.one_of(
        st.integers(0, 60).map(lambda n: Node("lit", (n,))),
        st.sampled_from(["N0", "N1", "N2"]).map(lambda name: Node("param", (name,))),
    )
    if depth == 0:
        return leaf
    inner = numbers(depth - 1)
    return st.one_of(
        leaf,
        inner.map(lambda a: Node("neg", (a,))),
        st.tuples(st.sampled_from("+-*/%"), inner, inner).map(lambda t: Node(t[0], t[1:])),
    )


def booleans(depth: int) -> st.SearchStrategy[Node]:
    compare = st.tuples(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), numbers(2), numbers(2))
    leaf = st.one_of(
        st.booleans().map(lambda b: Node("lit", (b,))),
        st.just(Node("param", ("B0",))),
        compare.map(lambda t: Node(t[0], t[1:])),
    )
    if depth == 0:
        return leaf
    inner = booleans(depth - 1)
    return st.one_of(
        leaf,
        inner.map(lambda a: Node("not", (a,))),
        st.tuples(st.sampled_from(["and", "or", "==", "!="]), inner, inner).map(
            lambda t: Node(t[0], t[1:])
        ),
    )


def render(node: Node, draw: Callable[[list[str]], str]) -> str:
    if node.op == "lit":
        value = node.args[0]
        if isinstance(value, bool):
            return draw(["true", "True"] if value else ["false", "FALSE"])
        return str(value)
    if node.op == "param":
        return "@" + str(node.args[0])
    if node.op in ("neg", "not"):
        (operand,) = node.args
        text = render(operand, draw)
        if PREC[operand.op] < 8:
            text = f"({text})"
        return ("-" if node.op == "neg" else draw(SPELLINGS["not"])) + text
    left, right = node.args
    prec = PREC[node.op]
    left_text, right_text = render(left, draw), render(right, draw)
    if PREC[left.op] < prec or (prec == 4 and PREC[left.op] == 4):
        left_text = f"({left_text})"
    if PREC[right.op] <= prec:
        right_text = f"({right_text})"
    return f"{left_text} {draw(SPELLINGS.get(node.op, [node.op]))} {right_text}"


def reference(node: Node, params: dict[str, Any]) -> Any:
    """The documented semantics, for ints, floats and booleans only."""
    if node.op == "lit":
        return node.args[0]
    if node.op == "param":
        return params[node.args[0]]
    if node.op == "neg":
        return -reference(node.args[0], params)
    if node.op == "not":
        return not reference(node.args[0], params)
    if node.op in ("and", "or"):
        first = reference(node.args[0], params)
        if first is (node.op == "or"):
            return first
        return reference(node.args[1], params)
    a, b = (reference(arg, params) for arg in node.args)
    if node.op in "/%" and b == 0:
        raise ZeroDivisionError
    if node.op == "%":
        if isinstance(a, int) and isinstance(b, int):
            return abs(a) % abs(b) * (1 if a >= 0 else -1)
        return math.fmod(a, b)
    ops: dict[str, Callable[[Any, Any], Any]] = {
        "+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
        "/": lambda x, y: x / y, "==": lambda x, y: x == y, "!=": lambda x, y: x != y,
        "<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y,
    }  # fmt: skip
    return ops[node.op](a, b)


@settings(max_examples=400, deadline=None)
@given(
    tree=st.one_of(numbers(4), booleans(3)),
    params=st.fixed_dictionaries(
        {"N0": st.integers(-20, 20), "N1": st.integers(0, 5), "N2": st.integers(-3, 100)}
    ).map(lambda p: {**p, "B0": p["N1"] > 2}),
    data=st.data(),
)
def test_well_formed_expressions_match_the_reference(
    tree: Node, params: dict[str, Any], data: st.DataObject
) -> None:
    text = render(tree, lambda options: data.draw(st.sampled_from(options)))
    try:
        expected: Any = reference(tree, params)
    except ZeroDivisionError:
        with pytest.raises(ExpressionError, match="division by zero"):
            evaluate(text, params)
        return
    if isinstance(expected, float) and not math.isfinite(expected):
        with pytest.raises(ExpressionError):
            evaluate(text, params)
        return
    assert evaluate(text, params) == expected, text
