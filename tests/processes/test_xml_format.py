"""OptimaJet XML: the real compatibility files, what is kept, what is refused, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

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
    Trigger,
    TriggerType,
)
from tests.processes.scheme_strategies import schemes

COMPAT = Path(__file__).parent / "compat"
FILES = sorted(COMPAT.glob("*.xml"))


def load(name: str) -> Scheme:
    return Scheme.from_xml(str(COMPAT / name))


def errors_of(text: str, *, validate: bool = False) -> list[str]:
    with pytest.raises(SchemeError) as caught:
        Scheme.from_xml(text, validate=validate)
    return caught.value.errors


# The compatibility files.


def test_the_copy_holds_all_seventeen_files() -> None:
    assert len(FILES) == 17


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_compat_file_loads_validates_and_round_trips(path: Path) -> None:
    scheme = Scheme.from_xml(path)  # a Path, validated
    assert scheme.activities
    assert scheme.transitions
    text = scheme.to_xml()
    again = Scheme.from_xml(text)
    assert again == scheme
    assert again.to_xml() == text


def test_vacation_request_keeps_what_the_diagram_says() -> None:
    scheme = load("VacationRequest.xml")
    assert scheme.name == "SimpleWF"
    assert [a.name for a in scheme.activities] == [
        "VacationRequestCreated",
        "ManagerSigning",
        "BigBossSigning",
        "AccountingReview",
        "RequestApproved",
    ]
    assert scheme.initial_activity is not None
    assert scheme.initial_activity.name == "VacationRequestCreated"
    assert [a.name for a in scheme.activities if a.is_final] == ["RequestApproved"]
    assert scheme.actors == (
        Actor("BigBoss", "CheckRole", "Big Boss"),
        Actor("Accountant", "CheckRole", "Accountant"),
    )
    assert scheme.timers == (Timer("SendToBigBoss", TimerType.INTERVAL, "10minutes"),)
    big = next(t for t in scheme.transitions if t.name == "ManagerSigning_BigBossSigning_1")
    assert big.conditions == (Condition(ConditionType.EXPRESSION, expression="@Sum > 100"),)
    assert big.restrictions == (Restriction(RestrictionType.ALLOW, "Manager"),)
    assert big.classifier is Classifier.DIRECT
    timer = next(t for t in scheme.transitions if t.name == "ManagerSigning_BigBossSigning_2")
    assert timer.trigger == Trigger(TriggerType.TIMER, "SendToBigBoss")
    assert scheme.commands[0] == Command(
        "StartSigning", (CommandInput("Comment", "Comment", False, ""),)
    )
    assert scheme.parameters == (Parameter("Comment", "String", ParameterPurpose.TEMPORARY),)
    assert scheme.localized("State", "ManagerSigning") == "Manager signing"
    assert scheme.localized("Command", "StartSigning") == "Start signing"
    assert len(scheme.localization) == 6
    assert scheme.localization[0] == Localize(
        "State", "ManagerSigning", "Manager signing", "en-US", True
    )
    assert scheme.extra_attributes == (
        ("CanBeInlined", "false"),
        ("Tags", ""),
        ("LogEnabled", "false"),
    )
    assert scheme.designer == Designer(x=-110, y=-60)


def test_vacation_request_keeps_comments_and_designer_coordinates() -> None:
    scheme = load("VacationRequest.xml")
    assert len(scheme.comments) == 4
    first = scheme.comments[0]
    assert first.name == "Comment"
    assert first.value.startswith("↑\n\nThis is the Activity")
    assert first.designer == Designer(330, 290, "#020930", False)
    assert first.extra_attributes[:3] == (
        ("Alignment", "left"),
        ("Rotation", "0"),
        ("Width", "168"),
    )
    created = scheme.activity("VacationRequestCreated")
    assert created is not None
    assert created.designer == Designer(320, 220, "#27AE60", False)
    unplaced = next(t for t in scheme.transitions if t.name == "BigBossSigning_Activity_1_1")
    assert unplaced.designer == Designer(hidden=False)
    text = scheme.to_xml()
    assert 'Value="↑&#10;&#10;This is the Activity' in text
    assert '<Designer X="330" Y="290" Color="#020930" Hidden="false" />' in text


def test_parameters_and_expressions_keeps_code_actions_and_their_extras() -> None:
    scheme = load("ParametersAndExpressions.xml")
    (action,) = scheme.code_actions
    assert action.name == "AddNumberToParameter"
    assert action.code.startswith("Dictionary<string, string> parameters = JsonConvert")
    assert action.code.endswith(
        "processInstance.SetParameter(parameter,(value + number).ToString());"
    )
    assert action.code.count("\n") == 4
    assert action.usings is not None
    assert action.usings.startswith("System.Collections.Generic;")
    assert action.extra_attributes[0] == ("WasInlined", "true")
    (parameters,) = action.extra_elements
    assert parameters.startswith("<Parameters>")
    assert 'name="Number"' in parameters
    first = scheme.activities[0]
    assert first.implementation == (
        ActionRef(
            "SetParameter",
            1,
            '{"ParameterName":"TestParameter","Value":"5","ForRootProcess":false}',
        ),
    )
    assert ("OriginalSchemeCode", "ParametersAndExpressions") in first.extra_attributes
    text = scheme.to_xml()
    assert "<ActionCode><![CDATA[Dictionary<string, string> parameters" in text
    assert '<Parameter name="ParameterName" type="Text" isRequired="true" />' in text


def test_sources_text_with_white_space_a_path_string_and_a_path() -> None:
    text = (COMPAT / "Timer.xml").read_text(encoding="utf-8")
    expected = Scheme.from_xml(COMPAT / "Timer.xml")
    assert Scheme.from_xml("\n  \ufeff" + text) == expected
    assert Scheme.from_xml(str(COMPAT / "Timer.xml")) == expected


def test_a_missing_file_or_empty_text_is_a_scheme_error(tmp_path: Path) -> None:
    assert "neither XML text nor a readable file" in errors_of(str(tmp_path / "nope.xml"))[0]
    assert errors_of("   ") == ["no XML given (the text is empty)"]


def test_validation_runs_unless_switched_off() -> None:
    text = '<Process Name="P"><Activities><Activity Name="A" /></Activities></Process>'
    assert Scheme.from_xml(text, validate=False).activities == (Activity("A"),)
    assert errors_of(text, validate=True) == ["scheme 'P': no initial activity"]


# What the model does not know is kept.

UNKNOWN = """
<Process Name="P" Version="7" Tags="a">
  <Activities>
    <Activity Name="A" IsInitial="TRUE" ExecutionTimeout="5m" UserComment="x &amp; y">
      <Implementation>
        <ActionRef Order="2" NameRef="Go" Async="true">
          <ActionParameter><![CDATA[p]]></ActionParameter>
        </ActionRef>
      </Implementation>
      <Annotations><Annotation Name="Priority"><![CDATA[{"level": 1}]]></Annotation></Annotations>
      <Designer X="1.5" Y="-2" Width="40" />
      <Timeouts Kind="Idle"><Timeout Value="1h" /></Timeouts>
    </Activity>
  </Activities>
  <Transitions>
    <Transition Name="A_A" From="A" To="A" SubprocessStartupType="SameThread">
      <Triggers><Trigger Type="Auto" /></Triggers>
      <Conditions />
      <Note>keep me</Note>
    </Transition>
  </Transitions>
  <CodeActions>
    <CodeAction Name="Go" Extra="1">
      <ActionCode><![CDATA[x]]></ActionCode><Parameters />
    </CodeAction>
  </CodeActions>
  <Forms><Form Name="F" /></Forms>
</Process>
"""


def test_unknown_attributes_and_elements_are_kept_and_written_back() -> None:
    scheme = Scheme.from_xml(UNKNOWN)
    assert scheme.extra_attributes == (("Version", "7"), ("Tags", "a"))
    assert scheme.extra_elements == ('<Forms><Form Name="F" /></Forms>',)
    (activity,) = scheme.activities
    assert activity.is_initial
    assert activity.extra_attributes == (("ExecutionTimeout", "5m"), ("UserComment", "x & y"))
    assert activity.extra_elements == ('<Timeouts Kind="Idle"><Timeout Value="1h" /></Timeouts>',)
    assert activity.implementation == (ActionRef("Go", 2, "p", (("Async", "true"),)),)
    assert activity.annotations == (Annotation("Priority", '{"level": 1}'),)
    assert activity.designer == Designer(1.5, -2.0, extra_attributes=(("Width", "40"),))
    (transition,) = scheme.transitions
    assert transition.extra_attributes == (("SubprocessStartupType", "SameThread"),)
    assert transition.extra_elements == ("<Note>keep me</Note>",)
    assert transition.conditions == ()  # an empty <Conditions /> is not the default
    (code,) = scheme.code_actions
    assert code.extra_attributes == (("Extra", "1"),)
    assert code.extra_elements == ("<Parameters />",)
    text = scheme.to_xml()
    for piece in (
        'Version="7" Tags="a"',
        'ExecutionTimeout="5m" UserComment="x &amp; y"',
        '<Timeouts Kind="Idle"><Timeout Value="1h" /></Timeouts>',
        '<ActionRef Order="2" NameRef="Go" Async="true">',
        "<Note>keep me</Note>",
        "<Conditions />",
        '<Forms><Form Name="F" /></Forms>',
    ):
        assert piece in text
    assert Scheme.from_xml(text) == scheme


@pytest.mark.parametrize(
    ("fragment", "message"),
    [
        ("<Actors><Foo /></Actors>", "process 'P': unexpected element <Foo> in <Actors>"),
        (
            "<Commands><Command Name='C'><Foo /></Command></Commands>",
            "command 'C': unexpected element <Foo> in <Command>",
        ),
        (
            "<Timers><Timer Name='T' Type='Interval' Value='1' Foo='1' /></Timers>",
            "timer 'T': unknown attribute 'Foo' on <Timer>",
        ),
        (
            "<Transitions><Transition Name='A_B' From='A' To='A'><Triggers><Trigger Type='Auto'>"
            "<Foo /></Trigger></Triggers></Transition></Transitions>",
            "transition 'A_B': unexpected element <Foo> in <Trigger>",
        ),
        (
            "<Transitions><Transition Name='A_B' From='A' To='A'><Triggers><Trigger Type='Auto'/>"
            "</Triggers><Conditions><Condition Type='Always'><Foo/></Condition></Conditions>"
            "</Transition></Transitions>",
            "transition 'A_B': unexpected element <Foo> in <Condition>",
        ),
        ("<Activities>stray</Activities>", "process 'P': unexpected text 'stray' in <Activities>"),
    ],
)
def test_an_unknown_element_where_nothing_can_keep_it_is_reported(
    fragment: str, message: str
) -> None:
    assert errors_of(f"<Process Name='P'>{fragment}</Process>") == [message]


def test_structural_errors_are_all_collected_with_their_element() -> None:
    text = """<Process Name="P">
      <Designer X="left" />
      <Activities>
        <Activity Name="A" IsInitial="yes">
          <Implementation><ActionRef NameRef="Go" Order="first" /></Implementation>
        </Activity>
        <Activity State="S" />
      </Activities>
      <Transitions>
        <Transition Name="A_B" From="A" To="B" Classifier="Sideways" AllowConcatenationType="Xor">
          <Triggers><Trigger Type="Command" NameRef="Go" /></Triggers>
          <Conditions><Condition Type="Sometimes" /></Conditions>
        </Transition>
        <Transition Name="No_Trigger" From="A" />
      </Transitions>
      <Timers><Timer Name="T" Type="Weekly" /></Timers>
    </Process>"""
    assert errors_of(text) == [
        "process 'P': Designer X 'left' is not a number",
        "activity 'A': IsInitial 'yes' is not true or false",
        "activity 'A': ActionRef 'Go' Order 'first' is not an integer",
        "activity #2: missing Name",
        "transition 'A_B': AllowConcatenationType 'Xor' is not one of And, Or",
        "transition 'A_B': Condition Type 'Sometimes' is not one of Always, Otherwise, Action, "
        "Expression",
        "transition 'A_B': Classifier 'Sideways' is not one of Direct, Reverse, NotSpecified",
        "transition 'No_Trigger': has 0 triggers, needs exactly one <Trigger>",
        "transition 'No_Trigger': missing To",
        "timer 'T': Type 'Weekly' is not one of Interval, Time, Date, DateAndTime, Expression",
        "timer 'T': missing Value",
    ]


def test_a_root_other_than_process_and_text_that_is_not_xml() -> None:
    assert errors_of("<Scheme Name='P' />") == ["the root element is <Scheme>, not <Process>"]
    assert errors_of("<Process Name='P'>")[0].startswith("not well-formed XML: no element found")
    assert errors_of("<Process/>") == ["process: missing Name"]


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<Process Name="&lol4;" />"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Process Name="&secret;" />"""


@pytest.mark.parametrize(
    "text",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        '<!DOCTYPE Process SYSTEM "http://example.invalid/p.dtd"><Process Name="P" />',
        '<!DOCTYPE p [<!ENTITY % e SYSTEM "file:///etc/passwd"> %e;]><Process Name="P" />',
    ],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity"],
)
def test_hostile_xml_is_refused(text: str) -> None:
    (error,) = errors_of(text)
    assert "not allowed in a scheme (refused for safety)" in error


def test_cdata_end_markers_carriage_returns_and_attribute_specials_survive() -> None:
    tricky = "a]]>b\r\nc]]]]>\r \"<&'\t"
    scheme = Scheme(
        name=tricky,
        activities=(
            Activity(tricky, is_initial=True, implementation=(ActionRef("x", 1, tricky),)),
        ),
        code_actions=(CodeAction("c", code=tricky, usings=""),),
    )
    text = scheme.to_xml()
    assert "]]]]><![CDATA[>" in text
    assert "&#13;" in text
    assert Scheme.from_xml(text) == scheme


def test_what_xml_cannot_carry_is_refused_on_writing() -> None:
    with pytest.raises(SchemeError, match="U\\+0001, which XML cannot carry"):
        Scheme("bad\x01name").to_xml()
    clash = Scheme("P", activities=(Activity("A", extra_attributes=(("Name", "B"),)),))
    with pytest.raises(SchemeError, match="extra attribute 'Name' clashes"):
        clash.to_xml()
    raw = Scheme("P", extra_elements=("<open>",))
    with pytest.raises(SchemeError, match="extra element '<open>'"):
        raw.to_xml()
    with pytest.raises(SchemeError, match="not finite"):
        Scheme("P", designer=Designer(x=float("inf"))).to_xml()


def test_booleans_are_read_in_any_case_and_written_in_lower_case() -> None:
    scheme = Scheme.from_xml(
        '<Process Name="P"><Activities><Activity Name="A" IsInitial="True" IsFinal="FALSE"'
        ' IsForSetState="false" /></Activities></Process>'
    )
    assert scheme.activities == (Activity("A", is_initial=True, is_for_set_state=False),)
    assert 'IsInitial="true" IsFinal="false" IsForSetState="false"' in scheme.to_xml()


# Any scheme the model can hold round-trips (Hypothesis).


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemes)
def test_any_scheme_round_trips_through_xml(scheme: Scheme) -> None:
    text = scheme.to_xml()
    assert Scheme.from_xml(text, validate=False) == scheme
