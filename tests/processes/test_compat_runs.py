"""Every OptimaJet compat scheme runs, on every database, to the outcome its diagram shows.

The files are copies of real OptimaJet Workflow Engine schemes (``tests/processes/compat``).
Their C# code actions are replaced by Python ones of the same name where a file needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import flowkeeper as fk
from flowkeeper.processes.store import TIMER_STEP
from tests.processes.vacation import register_rules

COMPAT = Path(__file__).parent / "compat"


def load(engine: fk.Engine, file: str) -> str:
    """Save the file's scheme; return its name (the code ``create`` takes)."""
    scheme = fk.Scheme.from_xml(COMPAT / file)
    engine.schemes.save(scheme)
    return scheme.name


def path_of(engine: fk.Engine, pid: str) -> list[str]:
    """The activities the process went through, from its history."""
    history = engine.processes.history(pid)
    return [history[0].from_activity, *(h.to_activity for h in history)] if history else []


def finished_at(engine: fk.Engine, pid: str, activity: str) -> None:
    process = engine.processes.get(pid)
    assert (process.activity, process.status) == (activity, fk.ProcessStatus.FINALIZED)


def test_auto_transitions_run_through_to_the_end(engine: fk.Engine) -> None:
    pid = engine.processes.create(load(engine, "AutoTransitions.xml"))
    finished_at(engine, pid, "Activity_3")
    assert path_of(engine, pid) == ["Activity_1", "Activity_2", "Activity_3"]


def test_direct_transitions_with_approval(engine: fk.Engine) -> None:
    pid = engine.processes.create(load(engine, "DirectTransitionsWithApproval.xml"))
    assert engine.processes.get(pid).activity == "PendingApproval"  # the auto move at once
    assert [c.name for c in engine.processes.commands(pid, identity="anyone")] == ["Approve"]
    engine.processes.execute(pid, "Approve", identity="anyone")
    finished_at(engine, pid, "Approved")


def test_direct_and_reverse_transitions_with_approval_and_deny(engine: fk.Engine) -> None:
    name = load(engine, "DirectAndReverseTransitionsWithApprovalAndDeny.xml")
    pid = engine.processes.create(name)
    engine.processes.execute(pid, "Start", identity="u")
    commands = engine.processes.commands(pid, identity="u")
    assert {(c.name, c.classifier) for c in commands} == {
        ("Deny", fk.Classifier.REVERSE),
        ("Approve", fk.Classifier.DIRECT),
    }
    engine.processes.execute(pid, "Deny", identity="u")
    assert engine.processes.get(pid).activity == "Created"
    engine.processes.execute(pid, "Start", identity="u")
    engine.processes.execute(pid, "Approve", identity="u")
    finished_at(engine, pid, "Approved")
    assert path_of(engine, pid) == ["Created", "PendingApproval", "Created", "PendingApproval",
                                    "Approved"]  # fmt: skip


def test_expression_beats_otherwise(engine: fk.Engine) -> None:
    pid = engine.processes.create(load(engine, "ExpressionOtherwise.xml"))
    finished_at(engine, pid, "AfterExpression")


def test_expression_first_in_order_beats_condition_and_otherwise(engine: fk.Engine) -> None:
    pid = engine.processes.create(load(engine, "ExpressionConditionOtherwise.xml"))
    finished_at(engine, pid, "AfterExpression")


def test_parameter_expression_otherwise(engine: fk.Engine) -> None:
    pid = engine.processes.create(load(engine, "ParameterExpressionOtherwise.xml"))
    finished_at(engine, pid, "AfterExpression")  # SetParameter 25, then @TestParameter > 20
    assert engine.processes.get(pid).parameters["TestParameter"] == "25"


def test_parameter_expression_condition_otherwise(engine: fk.Engine) -> None:
    pid = engine.processes.create(load(engine, "ParameterExpressionConditionOtherwise.xml"))
    finished_at(engine, pid, "AfterExpression")


@pytest.mark.parametrize(
    ("file", "values"),
    [
        ("LoopForInt.xml", list(range(1, 11))),
        ("LoopForeach.xml", ["one", "two", "three", "four", "five"]),
        ("LoopForeachFromParameter.xml", ["one", "two", "three", "four", "five"]),
    ],
)
def test_loops_visit_their_body_once_per_value(
    engine: fk.Engine, file: str, values: list[Any]
) -> None:
    seen: list[Any] = []
    name = load(engine, file)

    # The loop body has no action of its own; watch it through a condition the engine
    # evaluates each time the body is entered (the auto transition out of ActivityInLoop_1).
    original = engine._process_registry.get_condition("LoopIsNotCompletedAndBroken")

    @engine.condition("LoopIsNotCompletedAndBroken")
    def watched(ctx: fk.ActionContext, parameter: Any) -> bool:
        running = original(ctx, parameter)
        if running:
            seen.append(ctx.process.parameters["LoopCounterValue"])
        return running

    pid = engine.processes.create(name)
    finished_at(engine, pid, "ActivityAfterLoop")
    assert [str(v) for v in seen] == [str(v) for v in values]
    assert path_of(engine, pid).count("ActivityInLoop_1") == len(values)


def test_parameters_and_expressions_with_a_python_action(engine: fk.Engine) -> None:
    @engine.action("AddNumberToParameter")
    def add_number(ctx: fk.ActionContext, parameter: dict[str, Any]) -> None:
        name = parameter["ParameterName"]
        value = int(ctx.process.parameters[name]) + int(parameter["Number"])
        ctx.process.parameters[name] = str(value)

    pid = engine.processes.create(load(engine, "ParametersAndExpressions.xml"))
    finished_at(engine, pid, "ParameterEqual")
    assert engine.processes.get(pid).parameters["TestParameter"] == "10"
    assert path_of(engine, pid) == [
        "SetParameter",
        "CheckParameter",
        *["AddNumberToParameter", "CheckParameter"] * 5,
        "ParameterEqual",
    ]


def test_timer_fires_through_a_worker(engine: fk.Engine) -> None:
    pid = engine.processes.create(load(engine, "Timer.xml"))
    [timer] = engine.search(fk.Search(name=TIMER_STEP, search_key=pid), queues=["ready"])["ready"]
    assert 55 <= (timer.run_at - engine.processes.get(pid).updated_at).total_seconds() <= 61
    assert engine.activate(timer.id)  # "a minute later", now
    engine.run(workers=1, until_idle=True, handle_signals=False, max_poll_interval=0.05)
    finished_at(engine, pid, "AfterTimer")
    assert [h.trigger for h in engine.processes.history(pid)] == ["Timer"]


def vacation_engine(engine: fk.Engine) -> str:
    register_rules(engine)
    return load(engine, "VacationRequest.xml")


def test_vacation_request_small_sum_goes_to_accounting(engine: fk.Engine) -> None:
    name = vacation_engine(engine)
    pid = engine.processes.create(name, identity="alice", parameters={"Author": "alice", "Sum": 80})
    assert [c.name for c in engine.processes.commands(pid, identity="alice")] == ["StartSigning"]
    assert engine.processes.commands(pid, identity="mike") == []
    engine.processes.execute(pid, "StartSigning", identity="alice", parameters={"Comment": "pls"})
    assert {c.name for c in engine.processes.commands(pid, identity="mike")} == {
        "Reject",
        "Approve",
    }
    engine.processes.execute(pid, "Approve", identity="mike")
    assert engine.processes.get(pid).activity == "AccountingReview"
    with pytest.raises(fk.CommandNotAvailable):
        engine.processes.execute(pid, "Paid", identity="boss")
    engine.processes.execute(pid, "Paid", identity="accountant")
    finished_at(engine, pid, "RequestApproved")
    assert path_of(engine, pid) == [
        "VacationRequestCreated",
        "ManagerSigning",
        "AccountingReview",
        "RequestApproved",
    ]


def test_vacation_request_big_sum_needs_the_big_boss(engine: fk.Engine) -> None:
    name = vacation_engine(engine)
    pid = engine.processes.create(name, parameters={"Author": "alice", "Sum": 150})
    engine.processes.execute(pid, "StartSigning", identity="alice")
    engine.processes.execute(pid, "Approve", identity="mike")
    assert engine.processes.get(pid).activity == "BigBossSigning"
    engine.processes.execute(pid, "Reject", identity="boss")  # back to the manager
    engine.processes.execute(pid, "Approve", identity="mike")
    engine.processes.execute(pid, "Approve", identity="boss")
    engine.processes.execute(pid, "Reject", identity="accountant")  # back to the manager again
    assert engine.processes.get(pid).state == "ManagerSigning"
    assert [h.classifier for h in engine.processes.history(pid)][-1] == "Reverse"


def test_vacation_request_escalates_to_the_big_boss_after_ten_minutes(engine: fk.Engine) -> None:
    name = vacation_engine(engine)
    pid = engine.processes.create(name, parameters={"Author": "alice", "Sum": 10})
    engine.processes.execute(pid, "StartSigning", identity="alice")
    [timer] = engine.search(fk.Search(name=TIMER_STEP, search_key=pid), queues=["ready"])["ready"]
    assert timer.correlation_id == "SendToBigBoss"
    assert 599 <= (timer.run_at - engine.processes.get(pid).updated_at).total_seconds() <= 601
    engine.activate(timer.id)
    engine.run(workers=1, until_idle=True, handle_signals=False, max_poll_interval=0.05)
    assert engine.processes.get(pid).activity == "BigBossSigning"
    assert engine.processes.history(pid)[-1].trigger == "Timer"


@pytest.mark.parametrize(
    ("file", "missing"),
    [
        ("HTTPRequest.xml", "HTTPRequest"),
        ("ParallelApprovalWithoutBranches.xml", "FillApproversUsers"),
    ],
)
def test_files_for_later_features_load_and_name_what_they_need(
    engine: fk.Engine, file: str, missing: str
) -> None:
    name = load(engine, file)
    with pytest.raises(fk.ActionNotRegistered, match=repr(missing)):
        engine.processes.create(name)
    assert engine.processes.list() == []


@pytest.mark.parametrize(
    "file", ["ParallelProcessesWithWaiting.xml", "ParallelProcessesWithoutWaiting.xml"]
)
def test_parallel_subprocess_files_load_and_are_refused_clearly(
    engine: fk.Engine, file: str
) -> None:
    name = load(engine, file)
    with pytest.raises(fk.FeatureNotSupported, match=r"fork.*subprocess"):
        engine.processes.create(name)
    assert engine.processes.list() == []
