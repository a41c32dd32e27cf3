"""The JSON/YAML shape: readable output, defaults, errors with paths, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from flowkeeper.errors import SchemeError
from flowkeeper.processes.model import (
    ActionRef,
    Activity,
    Condition,
    ConditionType,
    Designer,
    Scheme,
    Transition,
    Trigger,
    TriggerType,
)
from tests.processes.scheme_strategies import schemes
from tests.processes.test_xml_format import COMPAT, FILES


def errors_of(data: dict[str, object], *, validate: bool = False) -> list[str]:
    with pytest.raises(SchemeError) as caught:
        Scheme.from_dict(data, validate=validate)
    return caught.value.errors


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_compat_file_round_trips_through_json(path: Path) -> None:
    scheme = Scheme.from_xml(path)
    data = json.loads(json.dumps(scheme.to_dict()))
    assert Scheme.from_dict(data) == scheme
    assert Scheme.from_dict(data).to_dict() == data


def test_the_shape_is_readable_and_leaves_defaults_out() -> None:
    data = Scheme.from_xml(COMPAT / "VacationRequest.xml").to_dict()
    assert list(data)[:3] == ["name", "activities", "transitions"]
    assert data["activities"][0] == {  # type: ignore[index]
        "name": "VacationRequestCreated",
        "state": "VacationRequestCreated",
        "initial": True,
        "auto_scheme_update": True,
        "designer": {"x": 320.0, "y": 220.0, "color": "#27AE60", "hidden": False},
    }
    assert data["transitions"][3] == {  # type: ignore[index]
        "name": "ManagerSigning_BigBossSigning_1",
        "from": "ManagerSigning",
        "to": "BigBossSigning",
        "trigger": {"type": "Command", "name": "Approve"},
        "classifier": "Direct",
        "conditions": [{"type": "Expression", "expression": "@Sum > 100"}],
        "restrictions": [{"type": "Allow", "actor": "Manager"}],
        "designer": {"x": 905.0, "y": 238.0, "hidden": False},
    }
    assert data["actors"] == [
        {"name": "BigBoss", "rule": "CheckRole", "value": "Big Boss"},
        {"name": "Accountant", "rule": "CheckRole", "value": "Accountant"},
    ]
    assert data["timers"] == [{"name": "SendToBigBoss", "type": "Interval", "value": "10minutes"}]
    assert data["commands"][0] == {  # type: ignore[index]
        "name": "StartSigning",
        "inputs": [{"name": "Comment", "default": ""}],
    }
    assert data["extra_attributes"] == {"CanBeInlined": "false", "Tags": "", "LogEnabled": "false"}
    assert data["designer"] == {"x": -110.0, "y": -60.0}


def test_code_actions_and_extra_elements_are_plain_strings() -> None:
    data = Scheme.from_xml(COMPAT / "ParametersAndExpressions.xml").to_dict()
    (action,) = data["code_actions"]  # type: ignore[misc]
    assert action["code"].startswith("Dictionary<string, string>")
    assert action["extra_elements"][0].startswith("<Parameters>")
    assert action["extra_attributes"]["WasInlined"] == "true"


def test_omitted_keys_take_the_defaults() -> None:
    scheme = Scheme.from_dict(
        {
            "name": "P",
            "activities": [
                {"name": "A", "initial": True, "actions": [{"name": "Go"}]},
                {"name": "B", "final": True, "actions": [{"name": "X"}, {"name": "Y", "order": 7}]},
            ],
            "transitions": [{"name": "A_B", "from": "A", "to": "B", "trigger": {"type": "Auto"}}],
        }
    )
    assert scheme.activities == (
        Activity("A", is_initial=True, implementation=(ActionRef("Go", 1),)),
        Activity("B", is_final=True, implementation=(ActionRef("X", 1), ActionRef("Y", 7))),
    )
    assert scheme.transitions == (Transition("A_B", "A", "B", Trigger(TriggerType.AUTO)),)
    assert scheme.transitions[0].conditions == (Condition(ConditionType.ALWAYS),)


def test_no_conditions_and_an_empty_designer_are_kept_apart_from_the_defaults() -> None:
    scheme = Scheme(
        "P",
        transitions=(Transition("t", "A", "B", Trigger(TriggerType.AUTO), conditions=()),),
        designer=Designer(),
    )
    data = scheme.to_dict()
    assert data["designer"] == {}
    assert data["transitions"][0]["conditions"] == []  # type: ignore[index]
    assert Scheme.from_dict(data, validate=False) == scheme


def test_wrong_types_unknown_keys_and_missing_names_are_all_reported_with_paths() -> None:
    data: dict[str, object] = {
        "name": "P",
        "colour": "red",
        "activities": [
            {"name": "A", "initial": "yes"},
            {"name": "B", "designer": {"x": "left", "y": float("nan")}},
            {"state": "C"},
            "D",
        ],
        "transitions": [
            {"name": "A_B", "from": "A", "to": 3, "classifier": "Sideways"},
            {"name": "B_A", "from": "B", "to": "A", "trigger": {"type": "Command", "nmae": "Go"}},
        ],
        "actors": {"Boss": "CheckRole"},
        "timers": [{"name": "T", "type": "Interval"}],
        "extra_attributes": {"Tags": 1},
        "extra_elements": ["<open>", 5],
    }
    assert errors_of(data) == [
        "activities[0].initial: expected true or false",
        "activities[1].designer.x: expected a number",
        "activities[1].designer.y: expected a finite number",
        "activities[2].name: missing",
        "activities[3]: expected an object",
        "transitions[0].to: expected a string",
        "transitions[0].trigger: missing",
        "transitions[0].classifier: 'Sideways' is not one of Direct, Reverse, NotSpecified",
        "transitions[1].trigger.nmae: unknown key",
        "actors: expected a list",
        "timers[0].value: missing",
        "extra_attributes.Tags: expected a string",
        "extra_elements[0]: not well-formed XML: no element found: line 1, column 6",
        "extra_elements[1]: expected a string",
        "colour: unknown key",
    ]


def test_errors_name_the_path_of_list_items_exactly() -> None:
    data: dict[str, object] = {"name": "P", "activities": [{"name": "A"}, {"name": "B"}, {}]}
    assert errors_of(data) == ["activities[2].name: missing"]
    assert errors_of({"name": 5}) == ["name: expected a string"]
    assert errors_of([]) == ["scheme: expected an object"]  # type: ignore[arg-type]


def test_validation_runs_unless_switched_off() -> None:
    data: dict[str, object] = {"name": "P", "activities": [{"name": "A"}]}
    assert Scheme.from_dict(data, validate=False).activities == (Activity("A"),)
    assert errors_of(data, validate=True) == ["scheme 'P': no initial activity"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemes)
def test_any_scheme_round_trips_through_json(scheme: Scheme) -> None:
    data = json.loads(json.dumps(scheme.to_dict()))
    assert Scheme.from_dict(data, validate=False) == scheme
