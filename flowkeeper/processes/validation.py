"""Every problem that makes a scheme unusable, each naming its element.

:func:`scheme_problems` does not stop at the first problem: a scheme author fixes them all
in one go. Each message reads ``<element kind> '<name>': <reason>``, e.g.
``transition 'A_B': unknown activity 'C'``.

What is *not* a problem, following OptimaJet: a restriction naming no declared actor (the
name is a rule used directly), and a command input filling an undeclared parameter (the
engine creates it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from flowkeeper.errors import ExpressionError
from flowkeeper.processes.expressions import compile_expression
from flowkeeper.processes.model import ConditionType, Scheme, Transition, TriggerType
from flowkeeper.processes.parameters import SYSTEM_PARAMETERS
from flowkeeper.processes.timer_values import check_timer_value

__all__ = ["scheme_problems"]


def scheme_problems(scheme: Scheme) -> list[str]:
    """Every problem of ``scheme``, in a stable order (empty when the scheme is usable)."""
    found = [
        *_scheme(scheme),
        *_names(scheme),
        *_actors(scheme),
        *_commands(scheme),
        *_parameters(scheme),
        *_timers(scheme),
    ]
    for transition in scheme.transitions:
        found += _transition(scheme, transition)
    return list(dict.fromkeys(found))  # the same problem twice is said once


def _scheme(scheme: Scheme) -> Iterator[str]:
    where = f"scheme {scheme.name!r}"
    if not scheme.name:
        yield f"{where}: has no name"
    initial = [a.name for a in scheme.activities if a.is_initial]
    if not initial:
        yield f"{where}: no initial activity"
    elif len(initial) > 1:
        listed = ", ".join(repr(name) for name in initial)
        yield f"{where}: several initial activities: {listed}"


def _names(scheme: Scheme) -> Iterator[str]:
    groups: list[tuple[str, Iterable[str]]] = [
        ("activity", (a.name for a in scheme.activities)),
        ("transition", (t.name for t in scheme.transitions)),
        ("command", (c.name for c in scheme.commands)),
        ("actor", (a.name for a in scheme.actors)),
        ("parameter", (p.name for p in scheme.parameters)),
        ("timer", (t.name for t in scheme.timers)),
        ("code action", (c.name for c in scheme.code_actions)),
    ]
    for kind, names in groups:
        listed = list(names)
        for index, name in enumerate(listed, 1):
            if not name:
                yield f"{kind} #{index}: has no name"
        for name, count in Counter(listed).items():
            if name and count > 1:
                yield f"{kind} {name!r}: declared {count} times"


def _actors(scheme: Scheme) -> Iterator[str]:
    for actor in scheme.actors:
        if not actor.rule:
            yield f"actor {actor.name!r}: has no rule"


def _commands(scheme: Scheme) -> Iterator[str]:
    for command in scheme.commands:
        for index, item in enumerate(command.input_parameters, 1):
            if not item.name:
                yield f"command {command.name!r}: input parameter #{index} has no name"
            elif not item.parameter:
                yield f"command {command.name!r}: input parameter {item.name!r} fills no parameter"


def _parameters(scheme: Scheme) -> Iterator[str]:
    for parameter in scheme.parameters:
        if parameter.name in SYSTEM_PARAMETERS:
            yield (
                f"parameter {parameter.name!r}: the name is reserved for a system parameter "
                "that the engine fills in"
            )


def _timers(scheme: Scheme) -> Iterator[str]:
    for timer in scheme.timers:
        reason = check_timer_value(timer.type.value, timer.value)
        if reason is not None:
            yield f"timer {timer.name!r}: {reason}"


def _transition(scheme: Scheme, transition: Transition) -> Iterator[str]:
    where = f"transition {transition.name!r}"
    for activity in (transition.from_activity, transition.to_activity):
        if scheme.activity(activity) is None:
            yield f"{where}: unknown activity {activity!r}"
    trigger = transition.trigger
    if trigger.type is TriggerType.COMMAND:
        if not trigger.name:
            yield f"{where}: its Command trigger names no command"
        elif scheme.command(trigger.name) is None:
            yield f"{where}: unknown command {trigger.name!r}"
    elif trigger.type is TriggerType.TIMER:
        if not trigger.name:
            yield f"{where}: its Timer trigger names no timer"
        elif scheme.timer(trigger.name) is None:
            yield f"{where}: unknown timer {trigger.name!r}"
    for index, restriction in enumerate(transition.restrictions, 1):
        if not restriction.actor:
            yield f"{where}: restriction #{index} names no actor"
    yield from _conditions(where, transition)


def _conditions(where: str, transition: Transition) -> Iterator[str]:
    conditions = transition.conditions
    for kind in (ConditionType.ALWAYS, ConditionType.OTHERWISE):
        if len(conditions) > 1 and any(c.type is kind for c in conditions):
            yield f"{where}: an {kind.value} condition must be its transition's only condition"
    for index, condition in enumerate(conditions, 1):
        if condition.type is ConditionType.ACTION and not condition.name:
            yield f"{where}: Action condition #{index} names no action"
        elif condition.type is ConditionType.EXPRESSION:
            if not condition.expression or not condition.expression.strip():
                yield f"{where}: Expression condition #{index} has no expression"
                continue
            try:
                compile_expression(condition.expression)
            except ExpressionError as err:
                yield f"{where}: {err}"
