"""Schemes as plain data for JSON and YAML: snake_case keys, defaults left out.

The shape, with every key a scheme can have (all but the names and the marked ones may be
left out; an omitted key takes the value shown or the model's default)::

    {"name": "VacationRequest",
     "activities": [{"name": "Draft", "state": "Draft", "initial": true, "final": false,
                     "for_set_state": true, "auto_scheme_update": false,
                     "actions": [{"name": "SetParameter", "order": 1, "parameter": "..."}],
                     "pre_execution_actions": [...],
                     "annotations": [{"name": "...", "value": "..."}],
                     "designer": {...}, "extra_attributes": {...}, "extra_elements": [...]}],
     "transitions": [{"name": "Draft_Done_1", "from": "Draft", "to": "Done",   # required
                      "trigger": {"type": "Command", "name": "Approve"},       # required
                      "classifier": "Direct",
                      "conditions": [{"type": "Expression", "expression": "@Sum > 100",
                                      "name": null, "inversion": false, "parameter": null,
                                      "result_on_pre_execution": null}],
                      "restrictions": [{"type": "Allow", "actor": "Manager"}],
                      "allow_concatenation": "And", "restrict_concatenation": "And",
                      "conditions_concatenation": "And", "fork": false,
                      "merge_via_set_state": false, "disable_parent_state_control": false,
                      "designer": {...}, "extra_attributes": {...}, "extra_elements": [...]}],
     "commands": [{"name": "Approve", "inputs": [{"name": "Comment", "parameter": "Comment",
                                                  "required": false, "default": null}]}],
     "actors": [{"name": "Manager", "rule": "CheckRole", "value": "Manager"}],
     "parameters": [{"name": "Comment", "type": "String", "purpose": "Temporary",
                     "initial_value": null}],
     "timers": [{"name": "Escalate", "type": "Interval", "value": "1h",      # all required
                 "not_override_if_exists": false}],
     "localization": [{"type": "State", "object_name": "Draft", "value": "Draft",
                       "culture": "en-US", "default": false}],
     "comments": [{"name": "Note", "value": "...", "designer": {...}}],
     "code_actions": [{"name": "...", "type": "Action", "code": "...", "usings": null,
                       "global": false, "async": false}],
     "designer": {"x": 10.0, "y": 20.0, "color": "#27AE60", "hidden": false},
     "extra_attributes": {"Tags": ""}, "extra_elements": ["<Raw />"]}

Enums are written as OptimaJet spells them. An action's ``order`` defaults to its position in
its list (1, 2, …); an input's ``parameter`` to its ``name``; ``conditions`` to one Always
condition. ``extra_attributes`` (a mapping, in order) and ``extra_elements`` (raw XML text)
are what the XML format keeps of what the model does not know.
"""

from __future__ import annotations

from collections.abc import Mapping

from flowkeeper.errors import SchemeError
from flowkeeper.processes.dict_reading import DictObject, each
from flowkeeper.processes.dict_writer import scheme_to_dict
from flowkeeper.processes.model import (
    ActionRef,
    Activity,
    Actor,
    Annotation,
    Classifier,
    CodeAction,
    Command,
    CommandInput,
    Comment,
    Concatenation,
    Condition,
    ConditionType,
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

__all__ = ["scheme_from_dict", "scheme_to_dict"]


def scheme_from_dict(data: Mapping[str, object], *, validate: bool = True) -> Scheme:
    """Read a scheme from its JSON/YAML shape (as :func:`scheme_to_dict` writes it).

    Raises :class:`~flowkeeper.errors.SchemeError` listing every wrong type, unknown key
    and missing name, each with its path (``activities[2].name: expected a string``), and,
    with ``validate``, every problem :meth:`Scheme.problems` finds.
    """
    errors: list[str] = []
    scheme = _scheme(DictObject(data, "", errors))
    where = repr(scheme.name) if scheme.name else None
    if errors:
        raise SchemeError(errors, source=where)
    if validate:
        found = scheme.problems()
        if found:
            raise SchemeError(found, source=where)
    return scheme


def _scheme(o: DictObject) -> Scheme:
    return o.done(
        Scheme(
            name=o.required(),
            activities=each(o, "activities", _activity),
            transitions=each(o, "transitions", _transition),
            commands=each(o, "commands", _command),
            actors=each(o, "actors", _actor),
            parameters=each(o, "parameters", _parameter),
            timers=each(o, "timers", _timer),
            localization=each(o, "localization", _localize),
            comments=each(o, "comments", _comment),
            code_actions=each(o, "code_actions", _code_action),
            designer=o.designer(),
            extra_attributes=o.attributes(),
            extra_elements=o.elements(),
        )
    )


def _actions(o: DictObject, key: str) -> tuple[ActionRef, ...]:
    return tuple(
        item.done(
            ActionRef(
                item.required(), item.integer("order", i), item.text("parameter"), item.attributes()
            )
        )
        for i, item in enumerate(o.objects(key), 1)
    )


def _activity(o: DictObject) -> Activity:
    return Activity(
        name=o.required(),
        state=o.text("state"),
        is_initial=o.boolean("initial", False),
        is_final=o.boolean("final", False),
        is_for_set_state=o.boolean("for_set_state", True),
        is_auto_scheme_update=o.boolean("auto_scheme_update", False),
        implementation=_actions(o, "actions"),
        pre_execution=_actions(o, "pre_execution_actions"),
        annotations=each(
            o, "annotations", lambda a: Annotation(a.required(), a.string("value", ""))
        ),
        designer=o.designer(),
        extra_attributes=o.attributes(),
        extra_elements=o.elements(),
    )


def _condition(o: DictObject) -> Condition:
    return Condition(
        type=o.choice("type", ConditionType),
        name=o.text("name"),
        expression=o.text("expression"),
        inversion=o.boolean("inversion", False),
        parameter=o.text("parameter"),
        result_on_pre_execution=o.flag("result_on_pre_execution"),
    )


def _trigger(o: DictObject) -> Trigger:
    found = o.object("trigger")
    if found is None:
        o.fail(o.at("trigger"), "missing")
        return Trigger(TriggerType.AUTO)
    return found.done(Trigger(found.choice("type", TriggerType), found.text("name")))


def _transition(o: DictObject) -> Transition:
    conditions = each(o, "conditions", _condition)
    return Transition(
        name=o.required(),
        from_activity=o.required("from"),
        to_activity=o.required("to"),
        trigger=_trigger(o),
        classifier=o.choice("classifier", Classifier, Classifier.NOT_SPECIFIED),
        conditions=Transition.conditions if o.data.get("conditions") is None else conditions,
        restrictions=each(
            o,
            "restrictions",
            lambda r: Restriction(r.choice("type", RestrictionType), r.required("actor")),
        ),
        allow_concatenation=o.choice("allow_concatenation", Concatenation, Concatenation.AND),
        restrict_concatenation=o.choice("restrict_concatenation", Concatenation, Concatenation.AND),
        conditions_concatenation=o.choice(
            "conditions_concatenation", Concatenation, Concatenation.AND
        ),
        is_fork=o.boolean("fork", False),
        merge_via_set_state=o.boolean("merge_via_set_state", False),
        disable_parent_state_control=o.boolean("disable_parent_state_control", False),
        designer=o.designer(),
        extra_attributes=o.attributes(),
        extra_elements=o.elements(),
    )


def _command_input(o: DictObject) -> CommandInput:
    name = o.required()
    return CommandInput(
        name=name,
        parameter=o.string("parameter", name),
        required=o.boolean("required", False),
        default=o.text("default"),
    )


def _command(o: DictObject) -> Command:
    return Command(o.required(), each(o, "inputs", _command_input), o.attributes())


def _actor(o: DictObject) -> Actor:
    return Actor(o.required(), o.string("rule", ""), o.text("value"), o.attributes())


def _parameter(o: DictObject) -> Parameter:
    return Parameter(
        name=o.required(),
        type=o.string("type", "String"),
        purpose=o.choice("purpose", ParameterPurpose, ParameterPurpose.TEMPORARY),
        initial_value=o.text("initial_value"),
        extra_attributes=o.attributes(),
    )


def _timer(o: DictObject) -> Timer:
    return Timer(
        name=o.required(),
        type=o.choice("type", TimerType),
        value=o.required("value"),
        not_override_if_exists=o.boolean("not_override_if_exists", False),
    )


def _localize(o: DictObject) -> Localize:
    return Localize(
        type=o.required("type"),
        object_name=o.required("object_name"),
        value=o.required("value"),
        culture=o.string("culture", "en-US"),
        is_default=o.boolean("default", False),
    )


def _comment(o: DictObject) -> Comment:
    return Comment(o.required(), o.string("value", ""), o.designer(), o.attributes())


def _code_action(o: DictObject) -> CodeAction:
    return CodeAction(
        name=o.required(),
        type=o.string("type", "Action"),
        code=o.string("code", ""),
        usings=o.text("usings"),
        is_global=o.boolean("global", False),
        is_async=o.boolean("async", False),
        extra_attributes=o.attributes(),
        extra_elements=o.elements(),
    )
