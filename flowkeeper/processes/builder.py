"""A fluent Python builder for schemes that reads like the diagram.

>>> b = SchemeBuilder("VacationRequest")
>>> _ = b.actor("Manager", rule="CheckRole", value="Manager")
>>> _ = b.command("Approve", inputs={"Comment": "Comment"})
>>> _ = b.activity("Draft", initial=True, actions=["NotifyAuthor"])
>>> _ = b.activity("Done", final=True)
>>> _ = b.on_command("Approve", "Draft", "Done", allow=["Manager"], classifier="Direct")
>>> scheme = b.build()
>>> scheme.transitions[0].name
'Draft_Done_1'

Every method returns the builder, so calls may also be chained. Nothing is checked until
:meth:`SchemeBuilder.build`, which raises one :class:`~flowkeeper.errors.SchemeError` listing
every problem (a misspelt enum value here as well as everything
:func:`~flowkeeper.processes.validation.scheme_problems` finds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import TypeVar

from flowkeeper.errors import SchemeError
from flowkeeper.processes.model import (
    ActionRef,
    Activity,
    Actor,
    Annotation,
    Classifier,
    CodeAction,
    Command,
    CommandInput,
    Concatenation,
    Condition,
    ConditionType,
    Designer,
    Localize,
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

__all__ = ["ActionSpec", "ConditionSpec", "SchemeBuilder"]

_E = TypeVar("_E", bound=StrEnum)

ActionSpec = str | ActionRef | tuple[str, str]
"""An action of an activity: its name, ``(name, parameter)``, or an :class:`ActionRef`."""

ConditionSpec = str | Condition
"""A condition: the name of a condition action, or a :class:`Condition`."""


class SchemeBuilder:
    """Collects the parts of a scheme in diagram order; :meth:`build` makes the scheme.

    Strings are accepted wherever the model has an enum (``classifier="Direct"``,
    ``purpose="Persistence"``, ``type="Interval"``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._activities: list[Activity] = []
        self._transitions: list[Transition] = []
        self._commands: list[Command] = []
        self._actors: list[Actor] = []
        self._parameters: list[Parameter] = []
        self._timers: list[Timer] = []
        self._localization: list[Localize] = []
        self._code_actions: list[CodeAction] = []
        self._problems: list[str] = []

    def _enum(self, kind: type[_E], value: _E | str, default: _E, where: str) -> _E:
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            self._problems.append(f"{where} {value!r} is not one of {allowed}")
            return default

    # Declarations.

    def actor(self, name: str, rule: str, value: str | None = None) -> SchemeBuilder:
        """Declare an actor: a rule (``CheckRole``) and the value given to it (``Manager``)."""
        self._actors.append(Actor(name, rule, value))
        return self

    def parameter(
        self,
        name: str,
        type: str = "String",
        purpose: ParameterPurpose | str = ParameterPurpose.TEMPORARY,
        initial_value: str | None = None,
    ) -> SchemeBuilder:
        """Declare a process parameter (``purpose``: Temporary, Persistence or System)."""
        kind = self._enum(
            ParameterPurpose, purpose, ParameterPurpose.TEMPORARY, f"parameter {name!r}: purpose"
        )
        self._parameters.append(Parameter(name, type, kind, initial_value))
        return self

    def command(
        self, name: str, inputs: Mapping[str, str] | Iterable[str | CommandInput] = ()
    ) -> SchemeBuilder:
        """Declare a command; ``inputs`` maps each input's name to the parameter it fills
        (``{"Comment": "Comment"}``), or lists names (same parameter) or
        :class:`CommandInput` values."""
        if isinstance(inputs, Mapping):
            items = [CommandInput(key, parameter) for key, parameter in inputs.items()]
        else:
            items = [CommandInput(i, i) if isinstance(i, str) else i for i in inputs]
        self._commands.append(Command(name, tuple(items)))
        return self

    def timer(
        self,
        name: str,
        type: TimerType | str,
        value: str,
        *,
        not_override_if_exists: bool = False,
    ) -> SchemeBuilder:
        """Declare a timer (``type``: Interval, Time, Date, DateAndTime or Expression)."""
        kind = self._enum(TimerType, type, TimerType.INTERVAL, f"timer {name!r}: type")
        self._timers.append(Timer(name, kind, value, not_override_if_exists))
        return self

    def localize(
        self,
        kind: str,
        object_name: str,
        value: str,
        *,
        culture: str = "en-US",
        default: bool = True,
    ) -> SchemeBuilder:
        """Add a caption of a state, command or parameter (``kind``: State, Command, …)."""
        self._localization.append(Localize(kind, object_name, value, culture, default))
        return self

    def code_action(
        self, name: str, code: str, *, type: str = "Action", usings: str | None = None
    ) -> SchemeBuilder:
        """Keep the source of an OptimaJet code action (never run; see :class:`CodeAction`)."""
        self._code_actions.append(CodeAction(name, type, code, usings))
        return self

    def activity(
        self,
        name: str,
        *,
        state: str | None = None,
        initial: bool = False,
        final: bool = False,
        for_set_state: bool = True,
        auto_scheme_update: bool = False,
        actions: Iterable[ActionSpec] = (),
        pre_execution: Iterable[ActionSpec] = (),
        annotations: Mapping[str, str] | None = None,
        designer: Designer | None = None,
    ) -> SchemeBuilder:
        """Add an activity; ``actions`` run on entering it, in the order given."""
        self._activities.append(
            Activity(
                name=name,
                state=state,
                is_initial=initial,
                is_final=final,
                is_for_set_state=for_set_state,
                is_auto_scheme_update=auto_scheme_update,
                implementation=_actions(actions),
                pre_execution=_actions(pre_execution),
                annotations=tuple(Annotation(k, v) for k, v in (annotations or {}).items()),
                designer=designer,
            )
        )
        return self

    # Transitions.

    def on_command(
        self,
        command: str,
        from_activity: str,
        to_activity: str,
        *,
        allow: Iterable[str] = (),
        restrict: Iterable[str] = (),
        name: str | None = None,
        classifier: Classifier | str = Classifier.NOT_SPECIFIED,
        condition: ConditionSpec | Sequence[ConditionSpec] | None = None,
        expression: str | None = None,
        otherwise: bool = False,
        designer: Designer | None = None,
    ) -> SchemeBuilder:
        """Add a transition that ``command`` fires, for the actors in ``allow`` (and none in
        ``restrict``); see :meth:`transition` for the conditions."""
        restrictions = [Restriction(RestrictionType.ALLOW, actor) for actor in allow]
        restrictions += [Restriction(RestrictionType.RESTRICT, actor) for actor in restrict]
        trigger = Trigger(TriggerType.COMMAND, command)
        return self.transition(
            from_activity, to_activity, trigger, name=name, classifier=classifier,
            condition=condition, expression=expression, otherwise=otherwise,
            restrictions=restrictions, designer=designer,
        )  # fmt: skip

    def auto(
        self,
        from_activity: str,
        to_activity: str,
        *,
        name: str | None = None,
        classifier: Classifier | str = Classifier.NOT_SPECIFIED,
        condition: ConditionSpec | Sequence[ConditionSpec] | None = None,
        expression: str | None = None,
        otherwise: bool = False,
        designer: Designer | None = None,
    ) -> SchemeBuilder:
        """Add an automatic transition (followed as soon as its conditions hold)."""
        return self.transition(
            from_activity, to_activity, Trigger(TriggerType.AUTO), name=name,
            classifier=classifier, condition=condition, expression=expression,
            otherwise=otherwise, designer=designer,
        )  # fmt: skip

    def on_timer(
        self,
        timer: str,
        from_activity: str,
        to_activity: str,
        *,
        name: str | None = None,
        classifier: Classifier | str = Classifier.NOT_SPECIFIED,
        condition: ConditionSpec | Sequence[ConditionSpec] | None = None,
        expression: str | None = None,
        otherwise: bool = False,
        designer: Designer | None = None,
    ) -> SchemeBuilder:
        """Add a transition that ``timer`` fires."""
        return self.transition(
            from_activity, to_activity, Trigger(TriggerType.TIMER, timer), name=name,
            classifier=classifier, condition=condition, expression=expression,
            otherwise=otherwise, designer=designer,
        )  # fmt: skip

    def transition(
        self,
        from_activity: str,
        to_activity: str,
        trigger: Trigger,
        *,
        name: str | None = None,
        classifier: Classifier | str = Classifier.NOT_SPECIFIED,
        condition: ConditionSpec | Sequence[ConditionSpec] | None = None,
        expression: str | None = None,
        otherwise: bool = False,
        restrictions: Iterable[Restriction] = (),
        conditions_concatenation: Concatenation | str = Concatenation.AND,
        allow_concatenation: Concatenation | str = Concatenation.AND,
        restrict_concatenation: Concatenation | str = Concatenation.AND,
        designer: Designer | None = None,
    ) -> SchemeBuilder:
        """Add a transition with any trigger.

        Conditions: ``condition`` names condition actions (or gives :class:`Condition`
        values), ``expression`` adds an Expression condition, ``otherwise=True`` makes this
        the transition taken when no sibling's conditions hold; with none of them the
        transition always fires. ``name`` defaults to ``From_To_1`` (``_2``, … if taken).
        """
        name = name or self._free_name(from_activity, to_activity)
        where = f"transition {name!r}:"
        join = Concatenation.AND
        self._transitions.append(
            Transition(
                name=name,
                from_activity=from_activity,
                to_activity=to_activity,
                trigger=trigger,
                classifier=self._enum(
                    Classifier, classifier, Classifier.NOT_SPECIFIED, f"{where} classifier"
                ),
                conditions=_conditions(condition, expression, otherwise),
                restrictions=tuple(restrictions),
                allow_concatenation=self._enum(
                    Concatenation, allow_concatenation, join, f"{where} allow_concatenation"
                ),
                restrict_concatenation=self._enum(
                    Concatenation, restrict_concatenation, join, f"{where} restrict_concatenation"
                ),
                conditions_concatenation=self._enum(
                    Concatenation,
                    conditions_concatenation,
                    join,
                    f"{where} conditions_concatenation",
                ),
                designer=designer,
            )
        )
        return self

    def _free_name(self, from_activity: str, to_activity: str) -> str:
        taken = {t.name for t in self._transitions}
        number = 1
        while f"{from_activity}_{to_activity}_{number}" in taken:
            number += 1
        return f"{from_activity}_{to_activity}_{number}"

    # The result.

    def build(self, *, validate: bool = True) -> Scheme:
        """The scheme; raises :class:`~flowkeeper.errors.SchemeError` listing every problem
        (with ``validate=False`` only the builder's own, such as a misspelt classifier)."""
        scheme = Scheme(
            name=self.name,
            activities=tuple(self._activities),
            transitions=tuple(self._transitions),
            commands=tuple(self._commands),
            actors=tuple(self._actors),
            parameters=tuple(self._parameters),
            timers=tuple(self._timers),
            localization=tuple(self._localization),
            code_actions=tuple(self._code_actions),
        )
        found = [*self._problems, *(scheme.problems() if validate else ())]
        if found:
            raise SchemeError(found, source=repr(self.name))
        return scheme


def _actions(specs: Iterable[ActionSpec]) -> tuple[ActionRef, ...]:
    refs = []
    for order, spec in enumerate(specs, 1):
        if isinstance(spec, ActionRef):
            refs.append(spec)
        elif isinstance(spec, str):
            refs.append(ActionRef(spec, order))
        else:
            refs.append(ActionRef(spec[0], order, spec[1]))
    return tuple(refs)


def _conditions(
    condition: ConditionSpec | Sequence[ConditionSpec] | None,
    expression: str | None,
    otherwise: bool,
) -> tuple[Condition, ...]:
    if condition is None:
        specs: list[ConditionSpec] = []
    elif isinstance(condition, str | Condition):
        specs = [condition]
    else:
        specs = list(condition)
    found = [Condition(ConditionType.ACTION, c) if isinstance(c, str) else c for c in specs]
    if expression is not None:
        found.append(Condition(ConditionType.EXPRESSION, expression=expression))
    if otherwise:
        found.append(Condition(ConditionType.OTHERWISE))
    return tuple(found) or (Condition(ConditionType.ALWAYS),)
