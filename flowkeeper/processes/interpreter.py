"""How a process moves: permissions, conditions, actions and automatic transitions.

This module decides and runs; it does not read or write tables (the runtime does, around
it). One :class:`Mover` serves one call (create, execute, a timer, set_state) on one
process, inside that call's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from flowkeeper.clock import utcnow
from flowkeeper.errors import EndlessLoop, ExpressionError, FeatureNotSupported
from flowkeeper.processes.context import ActionContext, LiveProcess
from flowkeeper.processes.expressions import evaluate, is_true
from flowkeeper.processes.model import (
    Activity,
    Classifier,
    Concatenation,
    Condition,
    ConditionType,
    RestrictionType,
    Transition,
    TriggerType,
)
from flowkeeper.processes.records import HistoryRecord, ProcessStatus
from flowkeeper.processes.registry import ProcessRegistry, decode_parameter


class Mover:
    """Moves one live process for one call and records the moves it made."""

    def __init__(
        self,
        process: LiveProcess,
        registry: ProcessRegistry,
        connection: sa.Connection,
        engine: Any,
        *,
        identity: str | None,
        command: str | None = None,
        max_auto_transitions: int = 1000,
        history_length: int = 0,
    ) -> None:
        process.identity = identity
        process.command = command
        self.process = process
        self.registry = registry
        self.moves: list[HistoryRecord] = []
        """The transitions this call made, numbered on from ``history_length``."""
        self.history_length = history_length
        self.max_auto_transitions = max_auto_transitions
        self.context = ActionContext(
            process=process,
            identity=identity,
            command=command,
            connection=connection,
            engine=engine,
        )

    # -- permissions ---------------------------------------------------------------------------

    def permitted(self, transition: Transition, identity: str | None) -> bool:
        """Whether ``identity`` passes the transition's Allow and Restrict restrictions."""
        allow = [r.actor for r in transition.restrictions if r.type is RestrictionType.ALLOW]
        deny = [r.actor for r in transition.restrictions if r.type is RestrictionType.RESTRICT]
        if allow and not _combine(
            transition.allow_concatenation, (self._plays(a, identity) for a in allow)
        ):
            return False
        return not (
            deny
            and _combine(
                transition.restrict_concatenation, (self._plays(a, identity) for a in deny)
            )
        )

    def _plays(self, name: str, identity: str | None) -> bool:
        actor = self.process.scheme.actor(name)
        if actor is None:  # a name that is no declared actor is a rule used directly
            return self.registry.get_rule(name).check(self.process, identity, None)
        rule = self.registry.get_rule(actor.rule)
        return bool(rule.check(self.process, identity, actor.value))

    # -- conditions ----------------------------------------------------------------------------

    def holds(self, transition: Transition) -> bool:
        """Whether the transition's own conditions hold (Otherwise counts as not holding)."""
        if transition.is_otherwise:
            return False
        results = (self._condition(transition, c) for c in transition.conditions)
        return _combine(transition.conditions_concatenation, results)

    def _condition(self, transition: Transition, condition: Condition) -> bool:
        if condition.type is ConditionType.ALWAYS:
            return True
        if condition.type is ConditionType.EXPRESSION:
            try:
                value = is_true(evaluate(condition.expression or "", self.process.parameters))
            except ExpressionError as error:
                raise ExpressionError(f"transition {transition.name!r}: {error}") from None
        else:
            check = self.registry.get_condition(condition.name or "")
            value = bool(check(self.context, decode_parameter(condition.parameter)))
        return value != condition.inversion

    def choose(self, candidates: Sequence[Transition]) -> Transition | None:
        """The first candidate, in scheme order, whose conditions hold; else the first
        Otherwise candidate; else None."""
        for transition in candidates:
            if not transition.is_otherwise and self.holds(transition):
                return transition
        return next((t for t in candidates if t.is_otherwise), None)

    # -- moving --------------------------------------------------------------------------------

    def enter(self, activity: Activity) -> None:
        """Run the activity's actions in their ``Order``."""
        self.process.executed_activity = activity.name
        for ref in sorted(activity.implementation, key=lambda r: r.order):
            self.registry.get_action(ref.name)(self.context, decode_parameter(ref.parameter))

    def move(self, transition: Transition, trigger: str) -> None:
        """Follow ``transition``: record it, change activity and state, run the actions."""
        if transition.is_fork:
            raise FeatureNotSupported(
                f"transition {transition.name!r} is a fork that starts a parallel subprocess; "
                "subprocesses are not supported yet, so nothing was saved"
            )
        target = self.process.scheme.activity(transition.to_activity)
        assert target is not None  # validated schemes only reference known activities
        self._arrive(target, transition.name, trigger, transition.classifier)

    def jump(self, target: Activity, trigger: str) -> None:
        """Move to ``target`` without a transition (set_state)."""
        self._arrive(target, None, trigger, Classifier.NOT_SPECIFIED)

    def _arrive(
        self, target: Activity, transition: str | None, trigger: str, classifier: str
    ) -> None:
        process = self.process
        self.moves.append(
            HistoryRecord(
                seq=self.history_length + len(self.moves) + 1,
                transition=transition,
                from_activity=process.activity,
                to_activity=target.name,
                from_state=process.state,
                to_state=target.state,
                command=process.command if trigger == TriggerType.COMMAND.value else None,
                trigger=trigger,
                classifier=str(classifier),
                identity=process.identity,
                at=utcnow(),
            )
        )
        process.previous_activity, process.previous_state = process.activity, process.state
        process.activity = target.name
        if target.state is not None:
            process.state = target.state
        process.executed_transition = transition
        self.enter(target)

    def follow_automatic(self) -> None:
        """Follow automatic transitions until none fires (or the limit is passed)."""
        scheme = self.process.scheme
        for _ in range(self.max_auto_transitions + 1):
            automatic = [
                t
                for t in scheme.transitions_from(self.process.activity)
                if t.trigger.type is TriggerType.AUTO
            ]
            chosen = self.choose(automatic) if automatic else None
            if chosen is None:
                return
            if self._auto_count() >= self.max_auto_transitions:
                raise EndlessLoop(self._loop_message())
            self.move(chosen, TriggerType.AUTO.value)

    def _auto_count(self) -> int:
        return sum(1 for m in self.moves if m.trigger == TriggerType.AUTO.value)

    def _loop_message(self) -> str:
        recent = [m.to_activity for m in self.moves[-6:]]
        return (
            f"process {self.process.id!r} ({self.process.scheme.name}) made "
            f"{self.max_auto_transitions} automatic transitions in one call and would go on "
            f"(last activities: {' → '.join(recent)}); nothing was saved. Fix the scheme's "
            "conditions, or raise the engine's max_auto_transitions if the loop is meant"
        )

    def settle(self) -> None:
        """Set the status a process rests with: Finalized on a final activity, else Idled."""
        activity = self.process.scheme.activity(self.process.activity)
        final = activity is not None and activity.is_final
        self.process.status = ProcessStatus.FINALIZED if final else ProcessStatus.IDLED


def _combine(how: Concatenation, results: Any) -> bool:
    """And/Or over lazily computed results (stops at the first deciding one)."""
    return all(results) if how is Concatenation.AND else any(results)
