"""The scheme model: immutable, comparable values that describe a business process.

The names follow OptimaJet Workflow Engine's scheme format, which is Flowkeeper's
interchange format. Every value is a frozen dataclass made of strings, numbers, booleans,
enums and tuples, so two schemes compare equal exactly when they describe the same process
(designer coordinates and comments included), and a scheme can be shared between threads.

Attributes and child elements of the XML format that this model does not know are kept in
``extra_attributes`` (name, value pairs) and ``extra_elements`` (raw XML text) of the element
they were found on, so that an export writes them back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar


class Classifier(StrEnum):
    """Direction of a transition, as shown to users (approve is Direct, reject is Reverse)."""

    DIRECT = "Direct"
    REVERSE = "Reverse"
    NOT_SPECIFIED = "NotSpecified"


class TriggerType(StrEnum):
    """What moves a process along a transition."""

    COMMAND = "Command"
    AUTO = "Auto"
    TIMER = "Timer"


class ConditionType(StrEnum):
    """How a transition decides whether it fires once triggered."""

    ALWAYS = "Always"
    OTHERWISE = "Otherwise"
    ACTION = "Action"
    EXPRESSION = "Expression"


class RestrictionType(StrEnum):
    """Whether an actor is required (Allow) or excluded (Restrict) from a command."""

    ALLOW = "Allow"
    RESTRICT = "Restrict"


class Concatenation(StrEnum):
    """How several conditions or restrictions of one transition combine."""

    AND = "And"
    OR = "Or"


class ParameterPurpose(StrEnum):
    """Lifetime of a process parameter."""

    TEMPORARY = "Temporary"
    PERSISTENCE = "Persistence"
    SYSTEM = "System"


class TimerType(StrEnum):
    """How a timer's value is read (see ``flowkeeper.processes.timer_values``)."""

    INTERVAL = "Interval"
    TIME = "Time"
    DATE = "Date"
    DATE_AND_TIME = "DateAndTime"
    EXPRESSION = "Expression"


Attributes = tuple[tuple[str, str], ...]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Designer:
    """Where the designer draws an element; ``None`` when the file does not say."""

    x: float | None = None
    y: float | None = None
    color: str | None = None
    hidden: bool | None = None
    extra_attributes: Attributes = ()


@dataclass(frozen=True)
class ActionRef:
    """A call of a named action, in ``order``, with its ActionParameter text."""

    name: str
    order: int = 1
    parameter: str | None = None
    extra_attributes: Attributes = ()


@dataclass(frozen=True)
class Annotation:
    """A named piece of data attached to an activity (its value is kept as text)."""

    name: str
    value: str = ""


@dataclass(frozen=True)
class Activity:
    """A place a process can rest in, with the actions run on entering it."""

    name: str
    state: str | None = None
    is_initial: bool = False
    is_final: bool = False
    is_for_set_state: bool = True
    is_auto_scheme_update: bool = False
    implementation: tuple[ActionRef, ...] = ()
    pre_execution: tuple[ActionRef, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    designer: Designer | None = None
    extra_attributes: Attributes = ()
    extra_elements: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trigger:
    """What fires a transition: a command or timer (by name) or nothing (Auto)."""

    type: TriggerType
    name: str | None = None


@dataclass(frozen=True)
class Condition:
    """One condition of a transition.

    ``name`` is the condition action for ``Action``; ``expression`` the text for
    ``Expression``; ``parameter`` is the ActionParameter given to the condition action.
    """

    type: ConditionType
    name: str | None = None
    expression: str | None = None
    inversion: bool = False
    parameter: str | None = None
    result_on_pre_execution: bool | None = None


@dataclass(frozen=True)
class Restriction:
    """An actor (or a rule used directly) that is allowed or restricted."""

    type: RestrictionType
    actor: str


@dataclass(frozen=True)
class Transition:
    """A directed edge between two activities with its trigger, conditions and restrictions."""

    name: str
    from_activity: str
    to_activity: str
    trigger: Trigger
    classifier: Classifier = Classifier.NOT_SPECIFIED
    conditions: tuple[Condition, ...] = (Condition(ConditionType.ALWAYS),)
    restrictions: tuple[Restriction, ...] = ()
    allow_concatenation: Concatenation = Concatenation.AND
    restrict_concatenation: Concatenation = Concatenation.AND
    conditions_concatenation: Concatenation = Concatenation.AND
    is_fork: bool = False
    merge_via_set_state: bool = False
    disable_parent_state_control: bool = False
    designer: Designer | None = None
    extra_attributes: Attributes = ()
    extra_elements: tuple[str, ...] = ()

    @property
    def is_otherwise(self) -> bool:
        """True when this transition fires only if no sibling for the same trigger does."""
        return any(c.type is ConditionType.OTHERWISE for c in self.conditions)

    @property
    def is_always(self) -> bool:
        """True when this transition needs no condition to hold."""
        return all(c.type is ConditionType.ALWAYS for c in self.conditions)


@dataclass(frozen=True)
class CommandInput:
    """An input parameter of a command: ``name`` as the caller passes it, ``parameter`` as
    the process parameter it fills (OptimaJet's ``NameRef``)."""

    name: str
    parameter: str
    required: bool = False
    default: str | None = None


@dataclass(frozen=True)
class Command:
    """A named command that identities execute to move a process."""

    name: str
    input_parameters: tuple[CommandInput, ...] = ()
    extra_attributes: Attributes = ()


@dataclass(frozen=True)
class Actor:
    """A role in the process: a rule plus the value given to it (``CheckRole`` + ``Manager``)."""

    name: str
    rule: str
    value: str | None = None
    extra_attributes: Attributes = ()


@dataclass(frozen=True)
class Parameter:
    """A declared process parameter; ``type`` is the .NET/OptimaJet type name as written."""

    name: str
    type: str = "String"
    purpose: ParameterPurpose = ParameterPurpose.TEMPORARY
    initial_value: str | None = None
    extra_attributes: Attributes = ()


@dataclass(frozen=True)
class Timer:
    """A named timer that fires the timer transitions that use it."""

    name: str
    type: TimerType
    value: str
    not_override_if_exists: bool = False


@dataclass(frozen=True)
class Localize:
    """A localised caption of a state, command or parameter."""

    type: str
    object_name: str
    value: str
    culture: str = "en-US"
    is_default: bool = False


@dataclass(frozen=True)
class Comment:
    """A free text note drawn on the diagram; its look is kept in ``extra_attributes``."""

    name: str
    value: str = ""
    designer: Designer | None = None
    extra_attributes: Attributes = ()


@dataclass(frozen=True)
class CodeAction:
    """Source code of an action, condition or rule as written for OptimaJet (C#).

    Flowkeeper never runs it: it is kept as text, and the scheme runs when Python code
    registers an action, condition or rule of the same name.
    """

    name: str
    type: str = "Action"
    code: str = ""
    usings: str | None = None
    is_global: bool = False
    is_async: bool = False
    extra_attributes: Attributes = ()
    extra_elements: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scheme:
    """A whole process scheme; ``name`` is the code that ``engine.processes.create`` takes.

    Build one with :meth:`from_xml`, :meth:`from_dict` or ``flowkeeper.SchemeBuilder``.
    """

    name: str
    activities: tuple[Activity, ...] = ()
    transitions: tuple[Transition, ...] = ()
    commands: tuple[Command, ...] = ()
    actors: tuple[Actor, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    timers: tuple[Timer, ...] = ()
    localization: tuple[Localize, ...] = ()
    comments: tuple[Comment, ...] = ()
    code_actions: tuple[CodeAction, ...] = ()
    designer: Designer | None = None
    extra_attributes: Attributes = ()
    extra_elements: tuple[str, ...] = ()
    _index: _SchemeIndex = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", _SchemeIndex(self))

    # Look-ups used by validation and the runtime; built once per scheme.

    @property
    def initial_activity(self) -> Activity | None:
        """The activity marked initial (the first, if a broken scheme marks several)."""
        return next((a for a in self.activities if a.is_initial), None)

    def activity(self, name: str) -> Activity | None:
        """The activity of that name, or ``None``."""
        return self._index.activities.get(name)

    def activity_of_state(self, state: str) -> Activity | None:
        """The first activity whose state is ``state``, or ``None``."""
        return self._index.states.get(state)

    def command(self, name: str) -> Command | None:
        """The command of that name, or ``None``."""
        return self._index.commands.get(name)

    def actor(self, name: str) -> Actor | None:
        """The actor of that name, or ``None``."""
        return self._index.actors.get(name)

    def parameter(self, name: str) -> Parameter | None:
        """The declared parameter of that name, or ``None``."""
        return self._index.parameters.get(name)

    def timer(self, name: str) -> Timer | None:
        """The timer of that name, or ``None``."""
        return self._index.timers.get(name)

    def transitions_from(self, activity: str) -> tuple[Transition, ...]:
        """The transitions leaving ``activity``, in scheme order."""
        return self._index.outgoing.get(activity, ())

    def timers_of(self, activity: str) -> tuple[Timer, ...]:
        """The timers of the timer transitions leaving ``activity`` (each once)."""
        return self._index.activity_timers.get(activity, ())

    def localized(self, kind: str, name: str, culture: str | None = None) -> str:
        """The caption of a state/command/parameter in ``culture`` (default culture if
        ``None``), falling back to ``name``."""
        for item in self.localization:
            wanted = item.is_default if culture is None else item.culture == culture
            if item.type == kind and item.object_name == name and wanted:
                return item.value
        return name

    # Formats live in their own modules; these are the documented entry points.

    @classmethod
    def from_xml(cls, source: str | os.PathLike[str], *, validate: bool = True) -> Scheme:
        """Read an OptimaJet scheme from XML text or a path to an ``.xml`` file."""
        from flowkeeper.processes.xml_format import scheme_from_xml

        return scheme_from_xml(source, validate=validate)

    def to_xml(self) -> str:
        """Write the scheme as OptimaJet XML (``from_xml(s.to_xml()) == s``)."""
        from flowkeeper.processes.xml_format import scheme_to_xml

        return scheme_to_xml(self)

    @classmethod
    def from_dict(cls, data: dict[str, object], *, validate: bool = True) -> Scheme:
        """Read a scheme from its JSON/YAML shape (as written by :meth:`to_dict`)."""
        from flowkeeper.processes.dict_format import scheme_from_dict

        return scheme_from_dict(data, validate=validate)

    def to_dict(self) -> dict[str, object]:
        """The scheme as plain JSON-compatible data (``from_dict(s.to_dict()) == s``)."""
        from flowkeeper.processes.dict_format import scheme_to_dict

        return scheme_to_dict(self)

    def problems(self) -> list[str]:
        """Every problem that makes this scheme unusable, each naming its element."""
        from flowkeeper.processes.validation import scheme_problems

        return scheme_problems(self)

    def validate(self) -> Scheme:
        """Raise :class:`flowkeeper.SchemeError` listing every problem; return ``self``."""
        from flowkeeper.errors import SchemeError

        found = self.problems()
        if found:
            raise SchemeError(found, source=repr(self.name))
        return self


class _SchemeIndex:
    """Name look-ups of one scheme; the first element of a duplicated name wins."""

    def __init__(self, scheme: Scheme) -> None:
        self.activities = _first_by_name((a.name, a) for a in scheme.activities)
        self.states = _first_by_name((a.state or a.name, a) for a in scheme.activities)
        self.commands = _first_by_name((c.name, c) for c in scheme.commands)
        self.actors = _first_by_name((a.name, a) for a in scheme.actors)
        self.parameters = _first_by_name((p.name, p) for p in scheme.parameters)
        self.timers = _first_by_name((t.name, t) for t in scheme.timers)
        outgoing: dict[str, list[Transition]] = {}
        for transition in scheme.transitions:
            outgoing.setdefault(transition.from_activity, []).append(transition)
        self.outgoing = {name: tuple(items) for name, items in outgoing.items()}
        self.activity_timers: dict[str, tuple[Timer, ...]] = {}
        for name, items in self.outgoing.items():
            timers = {
                t.trigger.name: self.timers[t.trigger.name]
                for t in items
                if t.trigger.type is TriggerType.TIMER and t.trigger.name in self.timers
            }
            if timers:
                self.activity_timers[name] = tuple(timers.values())


def _first_by_name(pairs: Iterable[tuple[str, _T]]) -> dict[str, _T]:
    result: dict[str, _T] = {}
    for name, item in pairs:
        result.setdefault(name, item)
    return result
