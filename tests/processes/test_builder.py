"""SchemeBuilder: a scheme written in Python reads like its diagram."""

from __future__ import annotations

import pytest

from flowkeeper.errors import SchemeError
from flowkeeper.processes.builder import SchemeBuilder
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
    Transition,
    Trigger,
    TriggerType,
)


def vacation() -> SchemeBuilder:
    b = SchemeBuilder("VacationRequest")
    b.actor("Manager", rule="CheckRole", value="Manager")
    b.parameter("Comment", type="String", purpose="Temporary")
    b.parameter("Sum", type="Decimal", purpose="Persistence", initial_value="0")
    b.command("Approve", inputs={"Comment": "Comment"})
    b.timer("SendToBigBoss", "Interval", "10minutes")
    b.activity("Draft", initial=True, actions=["NotifyAuthor"])
    b.activity("Review")
    b.activity("Escalated")
    b.activity("Done", final=True)
    b.on_command(
        "Approve", "Draft", "Done", allow=["Manager"], classifier="Direct", expression="@Sum > 100"
    )
    b.on_command("Approve", "Draft", "Review", allow=["Manager"], otherwise=True)
    b.auto("Review", "Done", condition="IsBigAmount", otherwise=False)
    b.on_timer("SendToBigBoss", "Review", "Escalated")
    return b


def test_the_builder_makes_the_scheme_the_diagram_shows() -> None:
    scheme = vacation().build()
    assert scheme.name == "VacationRequest"
    assert scheme.actors == (Actor("Manager", "CheckRole", "Manager"),)
    assert scheme.parameters == (
        Parameter("Comment"),
        Parameter("Sum", "Decimal", ParameterPurpose.PERSISTENCE, "0"),
    )
    assert scheme.commands == (Command("Approve", (CommandInput("Comment", "Comment"),)),)
    assert scheme.timers == (Timer("SendToBigBoss", TimerType.INTERVAL, "10minutes"),)
    assert scheme.activities[0] == Activity(
        "Draft", is_initial=True, implementation=(ActionRef("NotifyAuthor", 1),)
    )
    assert scheme.activities[3] == Activity("Done", is_final=True)
    manager = (Restriction(RestrictionType.ALLOW, "Manager"),)
    assert scheme.transitions == (
        Transition(
            "Draft_Done_1",
            "Draft",
            "Done",
            Trigger(TriggerType.COMMAND, "Approve"),
            classifier=Classifier.DIRECT,
            conditions=(Condition(ConditionType.EXPRESSION, expression="@Sum > 100"),),
            restrictions=manager,
        ),
        Transition(
            "Draft_Review_1",
            "Draft",
            "Review",
            Trigger(TriggerType.COMMAND, "Approve"),
            conditions=(Condition(ConditionType.OTHERWISE),),
            restrictions=manager,
        ),
        Transition(
            "Review_Done_1",
            "Review",
            "Done",
            Trigger(TriggerType.AUTO),
            conditions=(Condition(ConditionType.ACTION, "IsBigAmount"),),
        ),
        Transition(
            "Review_Escalated_1", "Review", "Escalated", Trigger(TriggerType.TIMER, "SendToBigBoss")
        ),
    )


def test_a_built_scheme_round_trips_through_both_formats() -> None:
    scheme = vacation().build()
    assert Scheme.from_xml(scheme.to_xml()) == scheme
    assert Scheme.from_dict(scheme.to_dict()) == scheme


def test_calls_chain_and_generated_names_count_up() -> None:
    scheme = (
        SchemeBuilder("Loop")
        .activity("A", initial=True)
        .activity("B", final=True)
        .auto("A", "B", expression="@n > 1")
        .auto("A", "B", otherwise=True)
        .auto("A", "B", name="A_B_3")
        .auto("A", "B", condition=["IsX", Condition(ConditionType.ACTION, "IsY", inversion=True)])
        .build(validate=False)
    )
    assert [t.name for t in scheme.transitions] == ["A_B_1", "A_B_2", "A_B_3", "A_B_4"]
    assert scheme.transitions[3].conditions == (
        Condition(ConditionType.ACTION, "IsX"),
        Condition(ConditionType.ACTION, "IsY", inversion=True),
    )


def test_actions_may_be_names_pairs_or_action_refs() -> None:
    scheme = (
        SchemeBuilder("P")
        .activity(
            "A",
            initial=True,
            actions=["First", ("Second", '{"to": "x"}'), ActionRef("Third", 9)],
            pre_execution=["Before"],
            annotations={"Priority": "high"},
            designer=Designer(10, 20),
            state="Open",
            for_set_state=False,
            auto_scheme_update=True,
        )
        .build()
    )
    assert scheme.activities == (
        Activity(
            "A",
            state="Open",
            is_initial=True,
            is_for_set_state=False,
            is_auto_scheme_update=True,
            implementation=(
                ActionRef("First", 1),
                ActionRef("Second", 2, '{"to": "x"}'),
                ActionRef("Third", 9),
            ),
            pre_execution=(ActionRef("Before", 1),),
            annotations=(Annotation("Priority", "high"),),
            designer=Designer(10, 20),
        ),
    )


def test_commands_take_a_mapping_names_or_command_inputs() -> None:
    scheme = (
        SchemeBuilder("P")
        .activity("A", initial=True)
        .command("Plain")
        .command("Named", inputs=["Comment"])
        .command("Full", inputs=[CommandInput("Why", "Reason", required=True, default="-")])
        .build()
    )
    assert scheme.commands == (
        Command("Plain"),
        Command("Named", (CommandInput("Comment", "Comment"),)),
        Command("Full", (CommandInput("Why", "Reason", True, "-"),)),
    )


def test_restrict_joins_localization_and_code_actions() -> None:
    scheme = (
        SchemeBuilder("P")
        .actor("Boss", "CheckRole", "Boss")
        .command("Go")
        .activity("A", initial=True)
        .activity("B")
        .on_command(
            "Go", "A", "B", allow=["Boss"], restrict=["Intern"], classifier=Classifier.REVERSE
        )
        .transition(
            "B",
            "A",
            Trigger(TriggerType.COMMAND, "Go"),
            restrictions=[Restriction(RestrictionType.ALLOW, "Boss")],
            allow_concatenation="Or",
            conditions_concatenation="Or",
            condition=["IsA", "IsB"],
        )
        .localize("State", "A", "Start")
        .code_action("IsA", "return true;", type="Condition")
        .build()
    )
    first, second = scheme.transitions
    assert first.restrictions == (
        Restriction(RestrictionType.ALLOW, "Boss"),
        Restriction(RestrictionType.RESTRICT, "Intern"),
    )
    assert first.classifier is Classifier.REVERSE
    assert second.allow_concatenation.value == "Or"
    assert second.conditions_concatenation.value == "Or"
    assert scheme.localization == (Localize("State", "A", "Start", "en-US", True),)
    assert scheme.code_actions == (CodeAction("IsA", "Condition", "return true;"),)
    assert scheme.localized("State", "A") == "Start"


def test_build_lists_every_problem_at_once() -> None:
    b = SchemeBuilder("Broken")
    b.parameter("P", purpose="Forever")
    b.timer("T", "Weekly", "1")
    b.activity("A")
    b.on_command("Go", "A", "B", classifier="Sideways", expression="@x >")
    with pytest.raises(SchemeError) as caught:
        b.build()
    assert caught.value.errors == [
        "parameter 'P': purpose 'Forever' is not one of Temporary, Persistence, System",
        "timer 'T': type 'Weekly' is not one of Interval, Time, Date, DateAndTime, Expression",
        "transition 'A_B_1': classifier 'Sideways' is not one of Direct, Reverse, NotSpecified",
        "scheme 'Broken': no initial activity",
        "transition 'A_B_1': unknown activity 'B'",
        "transition 'A_B_1': unknown command 'Go'",
        "transition 'A_B_1': expression '@x >': expected a value after '>' at position 4",
    ]
    assert caught.value.source == "'Broken'"


def test_build_without_validation_still_reports_the_builders_own_problems() -> None:
    b = SchemeBuilder("P").activity("A")
    assert b.build(validate=False).activities == (Activity("A"),)
    b.auto("A", "A", classifier="Up")
    with pytest.raises(SchemeError, match="classifier 'Up'"):
        b.build(validate=False)
