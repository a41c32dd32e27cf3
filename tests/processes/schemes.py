"""Small schemes the runtime tests share, built from the model's values."""

from __future__ import annotations

from flowkeeper.processes.model import (
    ActionRef,
    Activity,
    Actor,
    Classifier,
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


def on_command(
    name: str,
    source: str,
    target: str,
    command: str,
    *,
    allow: tuple[str, ...] = (),
    restrict: tuple[str, ...] = (),
    expression: str | None = None,
    otherwise: bool = False,
    classifier: Classifier = Classifier.DIRECT,
) -> Transition:
    conditions = (Condition(ConditionType.ALWAYS),)
    if expression is not None:
        conditions = (Condition(ConditionType.EXPRESSION, expression=expression),)
    if otherwise:
        conditions = (Condition(ConditionType.OTHERWISE),)
    restrictions = tuple(Restriction(RestrictionType.ALLOW, a) for a in allow) + tuple(
        Restriction(RestrictionType.RESTRICT, r) for r in restrict
    )
    return Transition(
        name,
        source,
        target,
        Trigger(TriggerType.COMMAND, command),
        classifier=classifier,
        conditions=conditions,
        restrictions=restrictions,
    )


def auto(
    name: str, source: str, target: str, *, expression: str | None = None, otherwise: bool = False
) -> Transition:
    conditions = (Condition(ConditionType.ALWAYS),)
    if expression is not None:
        conditions = (Condition(ConditionType.EXPRESSION, expression=expression),)
    if otherwise:
        conditions = (Condition(ConditionType.OTHERWISE),)
    return Transition(name, source, target, Trigger(TriggerType.AUTO), conditions=conditions)


def document_scheme(name: str = "Document", *, final_action: str | None = None) -> Scheme:
    """Draft → (Submit by the author) → Review → (Approve by a manager) → Approved (final),
    or BigAmount when ``@Amount > 100``; Reject goes back to Draft."""
    approved_actions = (ActionRef(final_action),) if final_action else ()
    return Scheme(
        name,
        activities=(
            Activity("Draft", state="Draft", is_initial=True),
            Activity("Review", state="Review"),
            Activity("BigAmount", state="BigAmount"),
            Activity("Approved", state="Approved", is_final=True, implementation=approved_actions),
        ),
        transitions=(
            on_command("Draft_Review", "Draft", "Review", "Submit", allow=("Author",)),
            on_command(
                "Review_Big",
                "Review",
                "BigAmount",
                "Approve",
                allow=("Manager",),
                expression="@Amount > 100",
            ),
            on_command(
                "Review_Approved",
                "Review",
                "Approved",
                "Approve",
                allow=("Manager",),
                otherwise=True,
            ),
            on_command(
                "Review_Draft",
                "Review",
                "Draft",
                "Reject",
                allow=("Manager",),
                classifier=Classifier.REVERSE,
            ),
            on_command("Big_Approved", "BigAmount", "Approved", "Approve", allow=("Boss",)),
        ),
        commands=(
            Command("Submit"),
            Command(
                "Approve",
                input_parameters=(CommandInput("Comment", "Comment", default=""),),
            ),
            Command("Reject", input_parameters=(CommandInput("Reason", "Reason", required=True),)),
        ),
        actors=(
            Actor("Manager", "CheckRole", "Manager"),
            Actor("Boss", "CheckRole", "Boss"),
        ),
        parameters=(
            Parameter("Amount", "Decimal", ParameterPurpose.PERSISTENCE),
            Parameter("Comment", "String", ParameterPurpose.TEMPORARY),
            Parameter("Reason", "String", ParameterPurpose.PERSISTENCE),
        ),
    )


ROLES = {"bob": {"Manager"}, "carol": {"Boss"}, "dave": {"Manager", "Boss"}}


def register_rules(engine: object) -> None:
    """``CheckRole`` from :data:`ROLES` and ``Author`` = the process's ``Author`` parameter."""

    @engine.rule("CheckRole")  # type: ignore[attr-defined]
    class CheckRole:
        def check(self, process: object, identity: str | None, parameter: str | None) -> bool:
            return parameter in ROLES.get(identity or "", set())

        def identities(self, process: object, parameter: str | None) -> list[str]:
            return sorted(i for i, roles in ROLES.items() if parameter in roles)

    @engine.rule("Author")  # type: ignore[attr-defined]
    def author(process: object, identity: str | None, parameter: str | None) -> bool:
        return identity is not None and identity == process.parameters.get("Author")  # type: ignore[attr-defined]


def timer_scheme(value: str = "1", *, not_override: bool = False) -> Scheme:
    """Waiting → (timer) → Escalated, or (Approve) → Done."""
    return Scheme(
        "Escalation",
        activities=(
            Activity("Waiting", state="Waiting", is_initial=True),
            Activity("Escalated", state="Escalated"),
            Activity("Done", state="Done", is_final=True),
        ),
        transitions=(
            Transition("Wait_Escalate", "Waiting", "Escalated", Trigger(TriggerType.TIMER, "Late")),
            on_command("Wait_Done", "Waiting", "Done", "Approve"),
            on_command("Escalated_Done", "Escalated", "Done", "Approve"),
            on_command("Escalated_Wait", "Escalated", "Waiting", "Retry"),
        ),
        commands=(Command("Approve"), Command("Retry")),
        timers=(Timer("Late", TimerType.INTERVAL, value, not_override),),
    )
