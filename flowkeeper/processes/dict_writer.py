"""Write a scheme as plain JSON-compatible data (the shape is described in
:mod:`flowkeeper.processes.dict_format`)."""

from __future__ import annotations

from collections.abc import Mapping

from flowkeeper.processes.model import (
    ActionRef,
    Activity,
    Actor,
    Attributes,
    Classifier,
    CodeAction,
    Command,
    Comment,
    Condition,
    ConditionType,
    Designer,
    Localize,
    Parameter,
    ParameterPurpose,
    Scheme,
    Timer,
    Transition,
)

__all__ = ["scheme_to_dict"]

_DEFAULT_CONDITIONS = (Condition(ConditionType.ALWAYS),)


def scheme_to_dict(scheme: Scheme) -> dict[str, object]:
    """The scheme as JSON-compatible data; ``scheme_from_dict(scheme_to_dict(s)) == s``."""
    return _pruned(
        {
            "name": scheme.name,
            "activities": [_activity(a) for a in scheme.activities],
            "transitions": [_transition(t) for t in scheme.transitions],
            "commands": [_command(c) for c in scheme.commands],
            "actors": [_actor(a) for a in scheme.actors],
            "parameters": [_parameter(p) for p in scheme.parameters],
            "timers": [_timer(t) for t in scheme.timers],
            "localization": [_localize(item) for item in scheme.localization],
            "comments": [_comment(c) for c in scheme.comments],
            "code_actions": [_code_action(c) for c in scheme.code_actions],
            "designer": _designer(scheme.designer),
            "extra_attributes": _attributes(scheme.extra_attributes),
            "extra_elements": list(scheme.extra_elements),
        }
    )


def _pruned(data: Mapping[str, object], **defaults: object) -> dict[str, object]:
    """``data`` without ``None``, empty lists and the given defaults."""
    return {
        key: value
        for key, value in data.items()
        if value is not None and value != [] and not (key in defaults and value == defaults[key])
    }


def _attributes(extra: Attributes) -> dict[str, str] | None:
    return dict(extra) if extra else None


def _designer(designer: Designer | None) -> dict[str, object] | None:
    if designer is None:
        return None
    data: dict[str, object] = {
        "x": designer.x,
        "y": designer.y,
        "color": designer.color,
        "hidden": designer.hidden,
        "extra_attributes": _attributes(designer.extra_attributes),
    }
    return _pruned(data)


def _activity(activity: Activity) -> dict[str, object]:
    def actions(refs: tuple[ActionRef, ...]) -> list[dict[str, object]]:
        return [
            _pruned(
                {
                    "name": ref.name,
                    "order": ref.order,
                    "parameter": ref.parameter,
                    "extra_attributes": _attributes(ref.extra_attributes),
                },
                order=position,
            )
            for position, ref in enumerate(refs, 1)
        ]

    data = {
        "name": activity.name,
        "state": activity.state,
        "initial": activity.is_initial,
        "final": activity.is_final,
        "for_set_state": activity.is_for_set_state,
        "auto_scheme_update": activity.is_auto_scheme_update,
        "actions": actions(activity.implementation),
        "pre_execution_actions": actions(activity.pre_execution),
        "annotations": [{"name": n.name, "value": n.value} for n in activity.annotations],
        "designer": _designer(activity.designer),
        "extra_attributes": _attributes(activity.extra_attributes),
        "extra_elements": list(activity.extra_elements),
    }
    return _pruned(data, initial=False, final=False, for_set_state=True, auto_scheme_update=False)


def _condition(condition: Condition) -> dict[str, object]:
    data: dict[str, object] = {
        "type": condition.type.value,
        "name": condition.name,
        "expression": condition.expression,
        "inversion": condition.inversion,
        "parameter": condition.parameter,
        "result_on_pre_execution": condition.result_on_pre_execution,
    }
    return _pruned(data, inversion=False)


def _transition(transition: Transition) -> dict[str, object]:
    trigger = {"type": transition.trigger.type.value, "name": transition.trigger.name}
    conditions = None
    if transition.conditions != _DEFAULT_CONDITIONS:
        conditions = [_condition(c) for c in transition.conditions]
    data: dict[str, object] = {
        "name": transition.name,
        "from": transition.from_activity,
        "to": transition.to_activity,
        "trigger": _pruned(trigger),
        "classifier": transition.classifier.value,
        "conditions": conditions,
        "restrictions": [{"type": r.type.value, "actor": r.actor} for r in transition.restrictions],
        "allow_concatenation": transition.allow_concatenation.value,
        "restrict_concatenation": transition.restrict_concatenation.value,
        "conditions_concatenation": transition.conditions_concatenation.value,
        "fork": transition.is_fork,
        "merge_via_set_state": transition.merge_via_set_state,
        "disable_parent_state_control": transition.disable_parent_state_control,
        "designer": _designer(transition.designer),
        "extra_attributes": _attributes(transition.extra_attributes),
        "extra_elements": list(transition.extra_elements),
    }
    pruned = _pruned(
        data,
        classifier=Classifier.NOT_SPECIFIED.value,
        allow_concatenation="And",
        restrict_concatenation="And",
        conditions_concatenation="And",
        fork=False,
        merge_via_set_state=False,
        disable_parent_state_control=False,
    )
    if conditions == []:
        pruned["conditions"] = []  # no condition at all differs from the default
    return pruned


def _command(command: Command) -> dict[str, object]:
    inputs = [
        _pruned(
            {
                "name": item.name,
                "parameter": item.parameter,
                "required": item.required,
                "default": item.default,
            },
            parameter=item.name,
            required=False,
        )
        for item in command.input_parameters
    ]
    data = {
        "name": command.name,
        "inputs": inputs,
        "extra_attributes": _attributes(command.extra_attributes),
    }
    return _pruned(data)


def _actor(actor: Actor) -> dict[str, object]:
    data = {
        "name": actor.name,
        "rule": actor.rule,
        "value": actor.value,
        "extra_attributes": _attributes(actor.extra_attributes),
    }
    return _pruned(data)


def _parameter(parameter: Parameter) -> dict[str, object]:
    data: dict[str, object] = {
        "name": parameter.name,
        "type": parameter.type,
        "purpose": parameter.purpose.value,
        "initial_value": parameter.initial_value,
        "extra_attributes": _attributes(parameter.extra_attributes),
    }
    return _pruned(data, type="String", purpose=ParameterPurpose.TEMPORARY.value)


def _timer(timer: Timer) -> dict[str, object]:
    data: dict[str, object] = {
        "name": timer.name,
        "type": timer.type.value,
        "value": timer.value,
        "not_override_if_exists": timer.not_override_if_exists,
    }
    return _pruned(data, not_override_if_exists=False)


def _localize(item: Localize) -> dict[str, object]:
    data: dict[str, object] = {
        "type": item.type,
        "object_name": item.object_name,
        "value": item.value,
        "culture": item.culture,
        "default": item.is_default,
    }
    return _pruned(data, culture="en-US", default=False)


def _comment(comment: Comment) -> dict[str, object]:
    data: dict[str, object] = {
        "name": comment.name,
        "value": comment.value,
        "designer": _designer(comment.designer),
        "extra_attributes": _attributes(comment.extra_attributes),
    }
    return _pruned(data, value="")


def _code_action(action: CodeAction) -> dict[str, object]:
    data: dict[str, object] = {
        "name": action.name,
        "type": action.type,
        "code": action.code,
        "usings": action.usings,
        "global": action.is_global,
        "async": action.is_async,
        "extra_attributes": _attributes(action.extra_attributes),
        "extra_elements": list(action.extra_elements),
    }
    return _pruned(data, type="Action", code="", **{"global": False, "async": False})
