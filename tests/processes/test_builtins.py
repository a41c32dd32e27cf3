"""The OptimaJet built-ins (BasicPlugin parameters, LoopsPlugin loops), called directly."""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager
from typing import Any

import pytest

from flowkeeper.errors import InvalidArgument
from flowkeeper.processes.builtins import BUILTIN_ACTIONS, BUILTIN_CONDITIONS
from flowkeeper.processes.context import ActionContext, LiveProcess
from flowkeeper.processes.model import Scheme
from flowkeeper.processes.records import ProcessStatus

# ActionParameters exactly as the compat schemes in tests/processes/compat/ write them.
LOOP_FOR_INT = (
    '{"LoopName":"Loop","LoopStateParameterName":"LoopState","LoopCounterValueParameterName":'
    '"LoopCounterValue","CounterType":"Int","StepType":"Increment","StartValue":"1",'
    '"EndValue":"10","Step":"1","IncludeLastValue":true}'
)
LOOP_FOREACH = (
    '{"LoopName":"Loop","LoopStateParameterName":"LoopState","LoopCounterValueParameterName":'
    '"LoopCounterValue","Separator":",","Values":"one, two, three, four, five",'
    '"ValuesFromParameter":false,"ValuesParameterName":""}'
)
LOOP_FOREACH_FROM_PARAMETER = (
    '{"LoopName":"Loop","LoopStateParameterName":"LoopState","LoopCounterValueParameterName":'
    '"LoopCounterValue","Separator":",","Values":"one, two, three, four, five",'
    '"ValuesFromParameter":false,"ValuesParameterName":"","Reverse":false,'
    '"ParameterName":"ValuesForLoop"}'
)
SET_VALUES_FOR_LOOP = (
    '{"ParameterName":"ValuesForLoop","Value":"one, two, three, four, five","ForRootProcess":false}'
)
CHECK_EQUAL_25 = (
    '{"CompareType":"Equal","Separator":",","ParameterName":"TestParameter","Value":"25",'
    '"ForRootProcess":false}'
)
FIVE = ["one", "two", "three", "four", "five"]


def make_ctx(**parameters: Any) -> ActionContext:
    process = LiveProcess(
        id="p",
        scheme=Scheme("s"),
        scheme_version=1,
        activity="A",
        state="A",
        status=ProcessStatus.RUNNING,
        parameters=parameters,
    )
    return ActionContext(
        process=process,
        identity=None,
        command=None,
        connection=None,  # type: ignore[arg-type]
        engine=None,
    )


def raises(message: str) -> AbstractContextManager[Any]:
    """Expect an InvalidArgument whose message starts with ``message``."""
    return pytest.raises(InvalidArgument, match="^" + re.escape(message))


def act(ctx: ActionContext, name: str, parameter: Any) -> None:
    BUILTIN_ACTIONS[name](ctx, parameter)


def holds(ctx: ActionContext, name: str, parameter: Any) -> bool:
    return BUILTIN_CONDITIONS[name](ctx, parameter)


def check(actual: Any, compare: str, value: Any, **extra: Any) -> bool:
    ctx = make_ctx() if actual is None else make_ctx(P=actual)
    return holds(
        ctx,
        "CheckParameter",
        {"ParameterName": "P", "CompareType": compare, "Value": value, **extra},
    )


def run_loop(
    ctx: ActionContext,
    start: str,
    parameter: Any,
    loop: str = "Loop",
    counter: str = "LoopCounterValue",
) -> list[Any]:
    """Drive a loop as a scheme does: enter the start activity, follow the loop body while
    LoopIsNotCompletedAndBroken holds, and return the counter values the body saw."""
    seen: list[Any] = []
    for _ in range(1000):
        act(ctx, start, parameter)
        if not holds(ctx, "LoopIsNotCompletedAndBroken", {"LoopName": loop}):
            return seen
        seen.append(ctx.process.parameters[counter])
    raise AssertionError("the loop never ended")


def loop_for(**fields: Any) -> dict[str, Any]:
    return {
        "LoopName": "Loop",
        "CounterType": "Int",
        "StepType": "Increment",
        "StartValue": "1",
        "EndValue": "3",
        "Step": "1",
        "IncludeLastValue": True,
        **fields,
    }


def states_of(ctx: ActionContext, loop: str = "Loop") -> set[str]:
    return {
        name
        for name in BUILTIN_CONDITIONS
        if name.startswith("Loop")
        if holds(ctx, name, {"LoopName": loop})
    }


def test_the_tables_name_optimajets_builtins() -> None:
    assert set(BUILTIN_ACTIONS) == {
        "SetParameter",
        "RemoveParameter",
        "StartLoopFor",
        "StartLoopForeach",
        "StartLoopForeachFromParameter",
        "SetLoopState",
    }
    assert set(BUILTIN_CONDITIONS) == {
        "CheckParameter",
        "LoopIsNotCompletedAndBroken",
        "LoopIsCompleted",
        "LoopIsBroken",
        "LoopIsCompletedOrBroken",
        "LoopIsDefault",
        "LoopIsNotDefault",
    }
    assert all(
        function.__doc__ for function in [*BUILTIN_ACTIONS.values(), *BUILTIN_CONDITIONS.values()]
    )


def test_the_registry_falls_back_to_the_builtins() -> None:
    from flowkeeper.processes.registry import ProcessRegistry

    registry = ProcessRegistry()
    assert registry.get_action("StartLoopFor") is BUILTIN_ACTIONS["StartLoopFor"]
    assert registry.get_condition("CheckParameter") is BUILTIN_CONDITIONS["CheckParameter"]


# -- SetParameter / RemoveParameter -------------------------------------------------------------


def test_set_parameter_keeps_the_value_as_given() -> None:
    ctx = make_ctx()
    act(ctx, "SetParameter", '{"ParameterName":"TestParameter","Value":"5","ForRootProcess":false}')
    act(ctx, "SetParameter", {"ParameterName": "Other", "Value": [1, {"a": None}]})
    assert ctx.process.parameters["TestParameter"] == "5"
    assert ctx.process.parameters["Other"] == [1, {"a": None}]


def test_set_parameter_for_root_process_sets_this_process() -> None:
    ctx = make_ctx(TestParameter="old")
    act(
        ctx,
        "SetParameter",
        {"ParameterName": "TestParameter", "Value": "new", "ForRootProcess": "true"},
    )
    assert ctx.process.parameters["TestParameter"] == "new"


def test_set_then_check_parameter_as_in_the_compat_schemes() -> None:
    ctx = make_ctx()
    assert not holds(ctx, "CheckParameter", CHECK_EQUAL_25)
    act(
        ctx, "SetParameter", '{"ParameterName":"TestParameter","Value":"25","ForRootProcess":false}'
    )
    assert holds(ctx, "CheckParameter", CHECK_EQUAL_25)


def test_remove_parameter() -> None:
    ctx = make_ctx(Gone="x", Kept=1)
    act(ctx, "RemoveParameter", '{"ParameterName":"Gone","ForRootProcess":false}')
    act(ctx, "RemoveParameter", {"ParameterName": "NeverSet"})
    assert dict(ctx.process.parameters) == {"Kept": 1}


@pytest.mark.parametrize(
    ("name", "parameter", "message"),
    [
        ("SetParameter", {"Value": "1"}, "SetParameter: 'ParameterName' is required"),
        (
            "SetParameter",
            {"ParameterName": "", "Value": "1"},
            "SetParameter: 'ParameterName' is required",
        ),
        (
            "SetParameter",
            {"ParameterName": 5, "Value": "1"},
            "SetParameter: 'ParameterName' must be a non-empty string, not 5",
        ),
        ("SetParameter", {"ParameterName": "P"}, "SetParameter: 'Value' is required"),
        (
            "SetParameter",
            {"ParameterName": "ProcessId", "Value": "x"},
            "SetParameter: parameter 'ProcessId' is a system parameter",
        ),
        (
            "SetParameter",
            {"ParameterName": "P", "Value": "1", "ForRootProcess": "maybe"},
            "SetParameter: 'ForRootProcess' must be true or false, not 'maybe'",
        ),
        ("SetParameter", "not json", "SetParameter: the parameter must be a JSON object"),
        ("SetParameter", "[1, 2]", "SetParameter: the parameter must be a JSON object"),
        ("RemoveParameter", {}, "RemoveParameter: 'ParameterName' is required"),
        (
            "RemoveParameter",
            {"ParameterName": "CurrentActivity"},
            "RemoveParameter: parameter 'CurrentActivity' is a system parameter",
        ),
    ],
)
def test_parameter_action_errors(name: str, parameter: Any, message: str) -> None:
    with raises(message):
        act(make_ctx(), name, parameter)


# -- CheckParameter -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "compare", "value", "expected"),
    [
        ("25", "Equal", "25", True),
        ("25", "Equal", "26", False),
        (25, "Equal", "25.0", True),
        ("abc", "Equal", "ABC", False),
        (True, "Equal", "True", True),
        ({"a": 1}, "Equal", '{"a": 1}', True),
        ("25", "NotEqual", "26", True),
        ("25", "NotEqual", " 25 ", False),
        ("yummy", "Contains", "umm", True),
        ("yummy", "Contains", "yy", False),
        (["a", 2], "Contains", "2", True),
        (["a", 2], "Contains", "b", False),
        ("yummy", "NotContains", "yy", True),
        ("yummy", "NotContains", "umm", False),
        ("yummy", "StartWith", "yu", True),
        ("yummy", "StartWith", "my", False),
        ("yummy", "EndWith", "my", True),
        ("yummy", "EndWith", "yu", False),
        ("yummy", "NotStartWith", "my", True),
        ("yummy", "NotStartWith", "yu", False),
        ("yummy", "NotEndWith", "yu", True),
        ("yummy", "NotEndWith", "my", False),
        ("yummy", "StartAndEndWith", "y", True),
        ("yummy", "StartAndEndWith", "yu", False),
        ("yummy", "NotStartAndEndWith", "mm", True),
        ("yummy", "NotStartAndEndWith", "y", False),
        ("10", "Greater", "9", True),
        ("9", "Greater", "10", False),
        ("10", "Less", "9", False),
        (9, "Less", "10", True),
        ("10", "GreaterOrEqual", "10.0", True),
        ("9.5", "GreaterOrEqual", "10", False),
        ("10", "LessOrEqual", "10", True),
        ("11", "LessOrEqual", "10", False),
        ("5", "In", "1,2,3,4,5", True),
        ("6", "In", "1,2,3,4,5", False),
        ("6", "NotIn", "1,2,3,4,5", True),
        ("5", "NotIn", "1, 2, 5", False),
    ],
)
def test_every_compare_type(actual: Any, compare: str, value: Any, expected: bool) -> None:
    assert check(actual, compare, value) is expected


def test_numbers_and_numeric_strings_compare_as_numbers_else_as_text() -> None:
    assert check("10", "Greater", "9")  # as text, "10" < "9"
    assert check("1e2", "Equal", "100")
    assert check(0.1, "Equal", "0.1")
    assert not check("10", "Greater", "9a")  # "9a" is not a number: text order
    assert check("b", "Greater", "a")
    assert check("apple", "Less", "banana")
    assert check("NaN", "Equal", "NaN")  # not a number, so equal as text
    assert check("NaN", "Greater", 1)  # as text, "N" > "1"
    assert check(False, "Equal", "false")
    assert not check(True, "Equal", "1")


def test_a_missing_parameter_is_null() -> None:
    assert check(None, "Equal", "")
    assert check(None, "Equal", None)
    assert not check(None, "Equal", "25")
    assert check(None, "NotEqual", "25")
    assert not check(None, "In", "a, b")
    assert check(None, "NotIn", "a, b")
    for ordering in ("Greater", "Less", "GreaterOrEqual", "LessOrEqual"):
        assert not check(None, ordering, "0")
        assert not check("0", ordering, None)


def test_in_uses_the_separator_and_trims() -> None:
    assert check("b", "In", " a ; b ;c", Separator=";")
    assert check("a,b", "In", "a,b", Separator=";")
    assert check("3", "In", [1, 2, 3])
    assert not check("", "In", "a,,b")  # empty items are dropped


def test_compare_type_spellings() -> None:
    assert check("yummy", "startswith", "yu")
    assert check("yummy", "NotEndsWith", "yu")
    assert check("5", "notin", "1,2")
    assert check("5", "GREATER", "4")


def test_check_parameter_reads_system_parameters() -> None:
    ctx = make_ctx()
    assert holds(
        ctx, "CheckParameter", {"ParameterName": "ProcessId", "CompareType": "Equal", "Value": "p"}
    )


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        ({"CompareType": "Equal", "Value": "1"}, "CheckParameter: 'ParameterName' is required"),
        ({"ParameterName": "P", "Value": "1"}, "CheckParameter: 'CompareType' is required"),
        (
            {"ParameterName": "P", "CompareType": "Like", "Value": "1"},
            "CheckParameter: 'CompareType' must be one of Equal, NotEqual, Contains, ",
        ),
        (
            {"ParameterName": "P", "CompareType": "Equal", "Separator": 1},
            "CheckParameter: 'Separator' must be a string, not 1",
        ),
        (
            {"ParameterName": "P", "CompareType": "In", "Value": {"a": 1}},
            "CheckParameter: 'Value' must be a list or a separated string",
        ),
        (
            {"ParameterName": "P", "CompareType": "Equal", "ForRootProcess": 2},
            "CheckParameter: 'ForRootProcess' must be true or false, not 2",
        ),
        ("42", "CheckParameter: the parameter must be a JSON object, not '42'"),
    ],
)
def test_check_parameter_errors(parameter: Any, message: str) -> None:
    with raises(message):
        holds(make_ctx(P="1"), "CheckParameter", parameter)


def test_unknown_compare_type_is_named() -> None:
    with pytest.raises(InvalidArgument, match=r"; not 'Like'$"):
        check("1", "Like", "1")


# -- StartLoopFor -------------------------------------------------------------------------------


def test_loop_for_int_runs_ten_times() -> None:
    ctx = make_ctx()
    assert run_loop(ctx, "StartLoopFor", LOOP_FOR_INT) == list(range(1, 11))
    assert states_of(ctx) == {"LoopIsCompleted", "LoopIsCompletedOrBroken", "LoopIsNotDefault"}
    assert ctx.process.parameters["LoopCounterValue"] == 10  # the last value stays
    entry = ctx.process.parameters["LoopState"]["Loop"]
    assert entry["State"] == "Complete"
    assert entry["Finished"] is True
    json.dumps(ctx.process.parameters.stored())


def test_loop_for_without_the_last_value() -> None:
    assert run_loop(make_ctx(), "StartLoopFor", loop_for(IncludeLastValue=False)) == [1, 2]
    assert run_loop(make_ctx(), "StartLoopFor", loop_for(IncludeLastValue=None)) == [1, 2]


def test_loop_for_decrement() -> None:
    down = loop_for(StepType="Decrement", StartValue="10", EndValue="1", Step="3")
    assert run_loop(make_ctx(), "StartLoopFor", down) == [10, 7, 4, 1]
    down["IncludeLastValue"] = False
    assert run_loop(make_ctx(), "StartLoopFor", down) == [10, 7, 4]
    assert run_loop(make_ctx(), "StartLoopFor", {**down, "EndValue": "0"}) == [10, 7, 4, 1]


def test_loop_for_decimal_step_has_no_drift() -> None:
    tenths = loop_for(CounterType="Decimal", StartValue="0", EndValue="0.3", Step="0.1")
    assert run_loop(make_ctx(), "StartLoopFor", tenths) == [0.0, 0.1, 0.2, 0.3]
    quarters = loop_for(
        CounterType="Decimal", StartValue=1, EndValue=0, Step=0.25, StepType="Decrement"
    )
    assert run_loop(make_ctx(), "StartLoopFor", quarters) == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_loop_for_empty_range_completes_at_once() -> None:
    ctx = make_ctx(LoopCounterValue="left over")
    assert run_loop(ctx, "StartLoopFor", loop_for(StartValue="5", EndValue="1")) == []
    assert ctx.process.parameters["LoopCounterValue"] is None
    assert holds(ctx, "LoopIsCompleted", {"LoopName": "Loop"})
    assert (
        run_loop(
            ctx, "StartLoopFor", loop_for(StartValue="5", EndValue="5", IncludeLastValue=False)
        )
        == []
    )
    assert run_loop(ctx, "StartLoopFor", loop_for(StartValue="5", EndValue="5")) == [5]


def test_loop_for_dates() -> None:
    months = loop_for(
        CounterType="DateTime",
        StartValue="2024-01-31 00:00:00.000",
        EndValue="2024-04-30",
        Step="1mm",
    )
    assert run_loop(make_ctx(), "StartLoopFor", months) == [
        "2024-01-31 00:00:00.000",
        "2024-02-29 00:00:00.000",
        "2024-03-31 00:00:00.000",
        "2024-04-30 00:00:00.000",
    ]
    back = loop_for(
        CounterType="Date",
        StartValue="2024-01-02 12:00",
        EndValue="2024-01-01",
        Step="1 day 6h",
        StepType="Decrement",
    )
    assert run_loop(make_ctx(), "StartLoopFor", back) == [
        "2024-01-02 12:00:00.000",
        "2024-01-01 06:00:00.000",
    ]
    yearly = loop_for(
        CounterType="DateTime", StartValue="9998-06-01", EndValue="9999-12-31", Step="1y"
    )
    assert len(run_loop(make_ctx(), "StartLoopFor", yearly)) == 2  # the third is past year 9999


def test_loop_for_runs_again_after_completing() -> None:
    ctx = make_ctx()
    assert run_loop(ctx, "StartLoopFor", loop_for()) == [1, 2, 3]
    assert run_loop(ctx, "StartLoopFor", loop_for()) == [1, 2, 3]


def test_loop_for_with_other_parameter_names() -> None:
    ctx = make_ctx()
    parameter = loop_for(
        LoopName="Outer", LoopStateParameterName="Loops", LoopCounterValueParameterName="I"
    )
    assert run_loop(ctx, "StartLoopFor", parameter, loop="Outer", counter="I") == [1, 2, 3]
    assert "LoopState" not in ctx.process.parameters
    assert ctx.process.parameters["Loops"]["Outer"]["State"] == "Complete"
    assert holds(ctx, "LoopIsCompleted", {"LoopName": "Outer"})  # found without the name


def test_two_loops_share_the_state_parameter() -> None:
    ctx = make_ctx()
    act(ctx, "StartLoopFor", loop_for(LoopName="Outer", LoopCounterValueParameterName="I"))
    inner = loop_for(LoopName="Inner", LoopCounterValueParameterName="J", EndValue="2")
    assert run_loop(ctx, "StartLoopFor", inner, loop="Inner", counter="J") == [1, 2]
    assert set(ctx.process.parameters["LoopState"]) == {"Outer", "Inner"}
    assert states_of(ctx, "Outer") == {"LoopIsNotCompletedAndBroken", "LoopIsDefault"}
    act(ctx, "StartLoopFor", loop_for(LoopName="Outer", LoopCounterValueParameterName="I"))
    assert ctx.process.parameters["I"] == 2


def test_defaults_when_the_parameter_is_empty() -> None:
    ctx = make_ctx()
    act(ctx, "StartLoopFor", '{"StartValue": 1, "EndValue": 2, "Step": 1}')
    assert ctx.process.parameters["LoopCounterValue"] == 1
    assert holds(ctx, "LoopIsDefault", None)
    assert holds(ctx, "LoopIsDefault", "")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"EndValue": "ten"}, "StartLoopFor: 'EndValue' must be a number, not 'ten'"),
        ({"StartValue": None}, "StartLoopFor: 'StartValue' is required"),
        ({"StartValue": "1.5"}, "StartLoopFor: 'StartValue' must be an integer, not '1.5'"),
        ({"Step": ""}, "StartLoopFor: 'Step' is required"),
        ({"Step": "0"}, "StartLoopFor: 'Step' must be greater than zero, not '0'"),
        ({"Step": "-1"}, "StartLoopFor: 'Step' must be greater than zero, not '-1'"),
        ({"Step": "NaN"}, "StartLoopFor: 'Step' must be a number, not 'NaN'"),
        ({"Step": True}, "StartLoopFor: 'Step' must be a number, not True"),
        ({"CounterType": "Char"}, "StartLoopFor: 'CounterType' must be Int, Decimal or DateTime"),
        (
            {"StepType": "Sideways"},
            "StartLoopFor: 'StepType' must be Increment or Decrement, not 'Sideways'",
        ),
        ({"IncludeLastValue": "yes"}, "StartLoopFor: 'IncludeLastValue' must be true or false"),
        ({"LoopName": 3}, "StartLoopFor: 'LoopName' must be a non-empty string, not 3"),
        (
            {"CounterType": "DateTime", "StartValue": "tomorrow", "EndValue": "2024-01-01"},
            "StartLoopFor: 'StartValue' must be a date such as '2024-01-31 09:30:00.000'",
        ),
        (
            {
                "CounterType": "DateTime",
                "StartValue": "2024-01-01",
                "EndValue": "2024-02-01",
                "Step": "1 fortnight",
            },
            "StartLoopFor: 'Step' must be a date step such as '1d'",
        ),
        (
            {
                "CounterType": "DateTime",
                "StartValue": "2024-01-01",
                "EndValue": "2024-02-01",
                "Step": "2",
            },
            "StartLoopFor: 'Step' must be a date step",
        ),
        (
            {
                "CounterType": "DateTime",
                "StartValue": "2024-01-01",
                "EndValue": "2024-02-01",
                "Step": "0d",
            },
            "StartLoopFor: 'Step' must not be zero, not '0d'",
        ),
        (
            {
                "CounterType": "DateTime",
                "StartValue": "2024-01-01T00:00:00+00:00",
                "EndValue": "2024-02-01",
                "Step": "1d",
            },
            "StartLoopFor: 'StartValue' and 'EndValue' must both have a time zone",
        ),
    ],
)
def test_loop_for_errors(fields: dict[str, Any], message: str) -> None:
    with raises(message):
        act(make_ctx(), "StartLoopFor", loop_for(**fields))


def test_a_state_parameter_that_is_not_loop_states_is_refused() -> None:
    ctx = make_ctx(LoopState="Default")
    with raises("StartLoopFor: parameter 'LoopState' holds 'Default', not loop states"):
        act(ctx, "StartLoopFor", loop_for())
    with raises("LoopIsCompleted: parameter 'LoopState' holds"):
        holds(ctx, "LoopIsCompleted", {"LoopName": "Loop"})


# -- StartLoopForeach / StartLoopForeachFromParameter ------------------------------------------


def test_loop_foreach_runs_five_times() -> None:
    ctx = make_ctx()
    assert run_loop(ctx, "StartLoopForeach", LOOP_FOREACH) == FIVE
    assert ctx.process.parameters["LoopCounterValue"] == "five"
    assert holds(ctx, "LoopIsCompleted", '{"LoopName":"Loop"}')


def test_loop_foreach_reverse_lists_and_empties() -> None:
    reverse = {**json.loads(LOOP_FOREACH), "Reverse": True}
    assert run_loop(make_ctx(), "StartLoopForeach", reverse) == FIVE[::-1]
    listed = {"Values": [3, "x", None]}
    assert run_loop(make_ctx(), "StartLoopForeach", listed) == [3, "x", None]
    empties: list[Any] = ["", " , ,", [], None]
    for empty in empties:
        ctx = make_ctx()
        assert run_loop(ctx, "StartLoopForeach", {"Values": empty}) == []
        assert holds(ctx, "LoopIsCompleted", {})


def test_loop_foreach_values_from_a_parameter() -> None:
    from_parameter = {
        "ValuesFromParameter": "True",
        "ValuesParameterName": "Items",
        "Separator": ";",
        "Values": "ignored",
    }
    assert run_loop(make_ctx(Items="a; b;c"), "StartLoopForeach", from_parameter) == ["a", "b", "c"]
    assert run_loop(make_ctx(Items=[1, 2]), "StartLoopForeach", from_parameter) == [1, 2]
    assert run_loop(make_ctx(), "StartLoopForeach", from_parameter) == []
    assert run_loop(make_ctx(Items=7), "StartLoopForeach", from_parameter) == [7]


def test_loop_foreach_from_parameter_as_in_the_compat_scheme() -> None:
    ctx = make_ctx()
    act(ctx, "SetParameter", SET_VALUES_FOR_LOOP)
    assert run_loop(ctx, "StartLoopForeachFromParameter", LOOP_FOREACH_FROM_PARAMETER) == FIVE
    reverse = {**json.loads(LOOP_FOREACH_FROM_PARAMETER), "Reverse": "true"}
    assert run_loop(ctx, "StartLoopForeachFromParameter", reverse) == FIVE[::-1]
    ctx.process.parameters["ValuesForLoop"] = ["x", "y"]
    assert run_loop(ctx, "StartLoopForeachFromParameter", reverse) == ["y", "x"]


def test_loop_foreach_values_are_fixed_when_it_starts() -> None:
    ctx = make_ctx(ValuesForLoop="a,b,c")
    act(ctx, "StartLoopForeachFromParameter", LOOP_FOREACH_FROM_PARAMETER)
    ctx.process.parameters["ValuesForLoop"] = "changed"
    seen = [ctx.process.parameters["LoopCounterValue"]]
    seen += run_loop(ctx, "StartLoopForeachFromParameter", LOOP_FOREACH_FROM_PARAMETER)
    assert seen == ["a", "b", "c"]
    assert run_loop(ctx, "StartLoopForeachFromParameter", LOOP_FOREACH_FROM_PARAMETER) == [
        "changed"
    ]


@pytest.mark.parametrize(
    ("name", "parameter", "message"),
    [
        (
            "StartLoopForeach",
            {"ValuesFromParameter": True},
            "StartLoopForeach: 'ValuesParameterName' is required",
        ),
        (
            "StartLoopForeach",
            {"Values": {"a": 1}},
            "StartLoopForeach: 'Values' must be a list or a separated string",
        ),
        (
            "StartLoopForeach",
            {"Values": "a", "Reverse": "no"},
            "StartLoopForeach: 'Reverse' must be true or false, not 'no'",
        ),
        (
            "StartLoopForeachFromParameter",
            {"Separator": ","},
            "StartLoopForeachFromParameter: 'ParameterName' is required",
        ),
        (
            "StartLoopForeachFromParameter",
            {"ParameterName": "Map"},
            "StartLoopForeachFromParameter: 'Values' must be a list or a separated string",
        ),
    ],
)
def test_loop_foreach_errors(name: str, parameter: Any, message: str) -> None:
    with raises(message):
        act(make_ctx(Map={"a": 1}), name, parameter)


# -- SetLoopState and the loop conditions -------------------------------------------------------


def test_break_ends_the_loop_at_the_next_entry_then_it_can_run_again() -> None:
    ctx = make_ctx()
    for _ in range(3):
        act(ctx, "StartLoopFor", LOOP_FOR_INT)
    act(ctx, "SetLoopState", {"LoopName": "Loop", "LoopState": "Break"})
    assert states_of(ctx) == {"LoopIsBroken", "LoopIsCompletedOrBroken", "LoopIsNotDefault"}
    act(ctx, "StartLoopFor", LOOP_FOR_INT)  # back to the start activity: leaves the loop
    assert states_of(ctx) == {"LoopIsBroken", "LoopIsCompletedOrBroken", "LoopIsNotDefault"}
    assert ctx.process.parameters["LoopCounterValue"] == 3
    assert run_loop(ctx, "StartLoopFor", LOOP_FOR_INT) == list(range(1, 11))


def test_continue_goes_on_to_the_next_value() -> None:
    ctx = make_ctx()
    act(ctx, "StartLoopForeach", LOOP_FOREACH)
    act(ctx, "SetLoopState", '{"LoopName":"Loop","LoopState":"continue"}')
    assert states_of(ctx) == {"LoopIsNotCompletedAndBroken", "LoopIsNotDefault"}
    act(ctx, "StartLoopForeach", LOOP_FOREACH)
    assert ctx.process.parameters["LoopCounterValue"] == "two"
    assert states_of(ctx) == {"LoopIsNotCompletedAndBroken", "LoopIsDefault"}


def test_set_loop_state_finds_a_renamed_state_parameter() -> None:
    ctx = make_ctx()
    act(ctx, "StartLoopFor", loop_for(LoopStateParameterName="MyLoops"))
    act(ctx, "SetLoopState", {"LoopName": "Loop", "LoopState": "Break"})
    assert ctx.process.parameters["MyLoops"]["Loop"]["State"] == "Break"
    assert holds(ctx, "LoopIsBroken", {"LoopName": "Loop"})
    assert not holds(ctx, "LoopIsBroken", {"LoopName": "Loop", "LoopStateParameterName": "X"})


def test_a_loop_never_started_is_in_no_state() -> None:
    ctx = make_ctx(Unrelated={"Loop": "x"})
    assert states_of(ctx) == set()


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        ({"LoopName": "Loop"}, "SetLoopState: 'LoopState' is required"),
        (
            {"LoopName": "Loop", "LoopState": "Stop"},
            "SetLoopState: 'LoopState' must be Break or Continue, not 'Stop'",
        ),
        (
            {"LoopName": "Other", "LoopState": "Break"},
            "SetLoopState: no loop named 'Other' has been started",
        ),
        (
            {"LoopName": "Done", "LoopState": "Break"},
            "SetLoopState: loop 'Done' has already ended (Complete)",
        ),
    ],
)
def test_set_loop_state_errors(parameter: Any, message: str) -> None:
    ctx = make_ctx()
    act(ctx, "StartLoopFor", loop_for())
    run_loop(ctx, "StartLoopFor", loop_for(LoopName="Done"), loop="Done")
    with raises(message):
        act(ctx, "SetLoopState", parameter)
