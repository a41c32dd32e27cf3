"""Scheme validation: each rule with a scheme that breaks it, and all problems at once."""

from __future__ import annotations

import dataclasses

import pytest

from flowkeeper.errors import SchemeError
from flowkeeper.processes.model import (
    Activity,
    Actor,
    Command,
    CommandInput,
    Condition,
    ConditionType,
    Parameter,
    ParameterPurpose,
    Restriction,
    RestrictionType,
    Scheme,
    Timer,
    TimerType,
    Transition,
    Trigger,
    TriggerType,
)
from flowkeeper.processes.validation import scheme_problems

ALWAYS = Condition(ConditionType.ALWAYS)
OTHERWISE = Condition(ConditionType.OTHERWISE)


def good() -> Scheme:
    """A small valid scheme that each test breaks in one way."""
    return Scheme(
        name="Doc",
        activities=(Activity("A", is_initial=True), Activity("B", is_final=True)),
        transitions=(
            Transition(
                "A_B",
                "A",
                "B",
                Trigger(TriggerType.COMMAND, "Go"),
                restrictions=(Restriction(RestrictionType.ALLOW, "Boss"),),
            ),
            Transition("A_B_timer", "A", "B", Trigger(TriggerType.TIMER, "Soon")),
        ),
        commands=(Command("Go", (CommandInput("Comment", "Comment"),)),),
        actors=(Actor("Boss", "CheckRole", "Boss"),),
        parameters=(Parameter("Comment"),),
        timers=(Timer("Soon", TimerType.INTERVAL, "1h"),),
    )


def changed(**changes: object) -> Scheme:
    return dataclasses.replace(good(), **changes)  # type: ignore[arg-type]


def transition(**changes: object) -> Scheme:
    base = good().transitions[0]
    return changed(transitions=(dataclasses.replace(base, **changes),))  # type: ignore[arg-type]


def test_a_good_scheme_has_no_problems() -> None:
    scheme = good()
    assert scheme_problems(scheme) == []
    assert scheme.validate() is scheme


def test_a_restriction_naming_no_declared_actor_is_a_rule_used_directly() -> None:
    scheme = transition(restrictions=(Restriction(RestrictionType.RESTRICT, "CheckRole"),))
    assert scheme.problems() == []


def test_a_command_input_may_fill_an_undeclared_parameter() -> None:
    assert changed(commands=(Command("Go", (CommandInput("Note", "Note"),)),)).problems() == []


@pytest.mark.parametrize(
    ("scheme", "problem"),
    [
        (changed(name=""), "scheme '': has no name"),
        (
            changed(activities=(Activity("A"), Activity("B"))),
            "scheme 'Doc': no initial activity",
        ),
        (
            changed(activities=(Activity("A", is_initial=True), Activity("B", is_initial=True))),
            "scheme 'Doc': several initial activities: 'A', 'B'",
        ),
        (
            changed(activities=(*good().activities, Activity("B"))),
            "activity 'B': declared 2 times",
        ),
        (
            changed(transitions=(good().transitions[0], good().transitions[0])),
            "transition 'A_B': declared 2 times",
        ),
        (changed(commands=(Command("Go"), Command("Go"))), "command 'Go': declared 2 times"),
        (
            changed(actors=(Actor("Boss", "R"), Actor("Boss", "R"))),
            "actor 'Boss': declared 2 times",
        ),
        (
            changed(parameters=(Parameter("Comment"), Parameter("Comment"))),
            "parameter 'Comment': declared 2 times",
        ),
        (
            changed(timers=(*good().timers, Timer("Soon", TimerType.INTERVAL, "2h"))),
            "timer 'Soon': declared 2 times",
        ),
        (
            changed(activities=(*good().activities, Activity(""))),
            "activity #3: has no name",
        ),
        (transition(from_activity="C"), "transition 'A_B': unknown activity 'C'"),
        (transition(to_activity="Z"), "transition 'A_B': unknown activity 'Z'"),
        (
            transition(trigger=Trigger(TriggerType.COMMAND, "Fly")),
            "transition 'A_B': unknown command 'Fly'",
        ),
        (
            transition(trigger=Trigger(TriggerType.TIMER, "Later")),
            "transition 'A_B': unknown timer 'Later'",
        ),
        (
            transition(trigger=Trigger(TriggerType.COMMAND)),
            "transition 'A_B': its Command trigger names no command",
        ),
        (
            transition(trigger=Trigger(TriggerType.TIMER, "")),
            "transition 'A_B': its Timer trigger names no timer",
        ),
        (
            transition(restrictions=(Restriction(RestrictionType.ALLOW, ""),)),
            "transition 'A_B': restriction #1 names no actor",
        ),
        (changed(actors=(Actor("Boss", ""),)), "actor 'Boss': has no rule"),
        (
            transition(conditions=(ALWAYS, Condition(ConditionType.ACTION, "IsBig"))),
            "transition 'A_B': an Always condition must be its transition's only condition",
        ),
        (
            transition(conditions=(Condition(ConditionType.ACTION, "IsBig"), OTHERWISE)),
            "transition 'A_B': an Otherwise condition must be its transition's only condition",
        ),
        (
            transition(conditions=(Condition(ConditionType.ACTION),)),
            "transition 'A_B': Action condition #1 names no action",
        ),
        (
            transition(conditions=(Condition(ConditionType.EXPRESSION, expression=" "),)),
            "transition 'A_B': Expression condition #1 has no expression",
        ),
        (
            transition(conditions=(Condition(ConditionType.EXPRESSION, expression="@Sum >"),)),
            "transition 'A_B': expression '@Sum >': expected a value after '>' at position 6",
        ),
        (
            changed(timers=(Timer("Soon", TimerType.INTERVAL, "soonish"),)),
            "timer 'Soon': invalid interval 'soonish': cannot read 'soonish'; write e.g. "
            "'30000' (milliseconds), '10minutes', '2d 5h 30m 10s' or '02:30:00'",
        ),
        (
            changed(commands=(Command("Go", (CommandInput("", "Comment"),)),)),
            "command 'Go': input parameter #1 has no name",
        ),
        (
            changed(commands=(Command("Go", (CommandInput("Comment", ""),)),)),
            "command 'Go': input parameter 'Comment' fills no parameter",
        ),
        (
            changed(parameters=(Parameter("ProcessId", purpose=ParameterPurpose.SYSTEM),)),
            "parameter 'ProcessId': the name is reserved for a system parameter that the engine "
            "fills in",
        ),
    ],
)
def test_each_rule_names_its_element_and_reason(scheme: Scheme, problem: str) -> None:
    assert scheme_problems(scheme) == [problem]
    with pytest.raises(SchemeError) as caught:
        scheme.validate()
    assert caught.value.errors == [problem]


def test_a_system_purpose_parameter_with_its_own_name_is_fine() -> None:
    scheme = changed(parameters=(Parameter("Audit", purpose=ParameterPurpose.SYSTEM),))
    assert scheme.problems() == []


def test_an_activity_used_from_and_to_is_named_once() -> None:
    scheme = transition(from_activity="C", to_activity="C")
    assert scheme.problems() == ["transition 'A_B': unknown activity 'C'"]


def test_many_problems_are_listed_together() -> None:
    scheme = Scheme(
        name="Broken",
        activities=(Activity("A"), Activity("A")),
        transitions=(
            Transition(
                "A_X",
                "A",
                "X",
                Trigger(TriggerType.COMMAND, "Fly"),
                conditions=(Condition(ConditionType.EXPRESSION, expression="@a +"), OTHERWISE),
            ),
            Transition("A_Y", "Y", "A", Trigger(TriggerType.TIMER, "Never")),
        ),
        actors=(Actor("Boss", ""),),
        timers=(Timer("Never", TimerType.INTERVAL, "x"),),
    )
    expected = [
        "scheme 'Broken': no initial activity",
        "activity 'A': declared 2 times",
        "actor 'Boss': has no rule",
        "timer 'Never': invalid interval 'x': cannot read 'x'; write e.g. '30000' "
        "(milliseconds), '10minutes', '2d 5h 30m 10s' or '02:30:00'",
        "transition 'A_X': unknown activity 'X'",
        "transition 'A_X': unknown command 'Fly'",
        "transition 'A_X': an Otherwise condition must be its transition's only condition",
        "transition 'A_X': expression '@a +': expected a value after '+' at position 4",
        "transition 'A_Y': unknown activity 'Y'",
    ]
    assert scheme.problems() == expected
    with pytest.raises(SchemeError) as caught:
        scheme.validate()
    assert caught.value.errors == expected
    assert "(9 problems)" in str(caught.value)
