"""Process timers on every database: armed as steps, cancelled on leaving, fired by workers."""

from __future__ import annotations

from datetime import timedelta

import flowkeeper as fk
from flowkeeper.clock import utcnow
from flowkeeper.processes.model import (
    Activity,
    Command,
    Scheme,
    Timer,
    TimerType,
    Transition,
    Trigger,
    TriggerType,
)
from flowkeeper.processes.store import TIMER_STEP
from tests.processes.schemes import on_command, timer_scheme


def timer_steps(engine: fk.Engine, pid: str, queue: str = "ready") -> list[fk.StepRecord]:
    found = engine.search(fk.Search(name=TIMER_STEP, search_key=pid), queues=[queue])
    return found[queue]


def drain(engine: fk.Engine) -> None:
    engine.run(workers=2, until_idle=True, handle_signals=False, max_poll_interval=0.05)


def test_timer_is_armed_when_the_process_rests(engine: fk.Engine) -> None:
    engine.schemes.save(timer_scheme("2d 5h"))
    before = utcnow()
    pid = engine.processes.create("Escalation")
    [step] = timer_steps(engine, pid)
    assert step.correlation_id == "Late"
    assert step.state == {"process_id": pid, "timer": "Late", "activity": "Waiting"}
    expected = before + timedelta(days=2, hours=5)
    assert expected <= step.run_at <= utcnow() + timedelta(days=2, hours=5)


def test_leaving_the_activity_cancels_its_timer(engine: fk.Engine) -> None:
    engine.schemes.save(timer_scheme("10minutes"))
    pid = engine.processes.create("Escalation")
    assert len(timer_steps(engine, pid)) == 1
    engine.processes.execute(pid, "Approve")
    assert timer_steps(engine, pid) == []
    assert engine.processes.get(pid).status == fk.ProcessStatus.FINALIZED


def test_worker_fires_the_timer_transition(engine: fk.Engine) -> None:
    engine.schemes.save(timer_scheme("1"))  # one millisecond
    pid = engine.processes.create("Escalation")
    drain(engine)
    process = engine.processes.get(pid)
    assert process.activity == "Escalated"
    [record] = engine.processes.history(pid)
    assert (record.trigger, record.transition, record.identity) == ("Timer", "Wait_Escalate", None)
    assert len(timer_steps(engine, pid, "done")) == 1
    assert timer_steps(engine, pid) == []
    # Back to Waiting arms the timer again, and it fires again.
    engine.processes.execute(pid, "Retry")
    assert len(timer_steps(engine, pid)) == 1
    drain(engine)
    assert engine.processes.get(pid).activity == "Escalated"
    assert [h.trigger for h in engine.processes.history(pid)] == ["Timer", "Command", "Timer"]


def test_a_timer_for_a_process_that_moved_on_does_nothing(engine: fk.Engine) -> None:
    engine.schemes.save(timer_scheme("1h"))
    pid = engine.processes.create("Escalation")
    engine.processes.execute(pid, "Approve")
    stale = {"process_id": pid, "timer": "Late", "activity": "Waiting"}
    engine.add_step(fk.Step(TIMER_STEP, stale, search_key=pid))
    engine.add_step(fk.Step(TIMER_STEP, {**stale, "process_id": "deleted"}))
    drain(engine)
    assert engine.processes.get(pid).activity == "Done"
    assert len(engine.processes.history(pid)) == 1
    assert engine.count(fk.Search(name=TIMER_STEP))["done"] == 2


def test_delete_and_set_state_cancel_timers(engine: fk.Engine) -> None:
    engine.schemes.save(timer_scheme("1h"))
    first = engine.processes.create("Escalation")
    second = engine.processes.create("Escalation")
    engine.processes.delete(first)
    assert timer_steps(engine, first) == []
    engine.processes.set_state(second, "Escalated")
    assert timer_steps(engine, second) == []
    engine.processes.set_state(second, "Waiting")
    assert len(timer_steps(engine, second)) == 1


def two_waits(not_override: bool) -> Scheme:
    late = Trigger(TriggerType.TIMER, "Late")
    return Scheme(
        "TwoWaits",
        activities=(
            Activity("First", is_initial=True),
            Activity("Second"),
            Activity("Out", is_final=True),
        ),
        transitions=(
            on_command("First_Second", "First", "Second", "Next"),
            Transition("First_Out", "First", "Out", late),
            Transition("Second_Out", "Second", "Out", late),
        ),
        commands=(Command("Next"),),
        timers=(Timer("Late", TimerType.INTERVAL, "1h", not_override),),
    )


def test_not_override_if_exists_keeps_the_running_timer(engine: fk.Engine) -> None:
    engine.schemes.save(two_waits(not_override=True))
    pid = engine.processes.create("TwoWaits")
    [armed] = timer_steps(engine, pid)
    engine.processes.execute(pid, "Next")
    [kept] = timer_steps(engine, pid)
    assert (kept.id, kept.run_at) == (armed.id, armed.run_at)


def test_a_timer_is_rearmed_by_default(engine: fk.Engine) -> None:
    engine.schemes.save(two_waits(not_override=False))
    pid = engine.processes.create("TwoWaits")
    [armed] = timer_steps(engine, pid)
    engine.processes.execute(pid, "Next")
    [rearmed] = timer_steps(engine, pid)
    assert rearmed.id != armed.id
    assert rearmed.run_at >= armed.run_at


def test_expression_timer_reads_a_parameter(engine: fk.Engine) -> None:
    scheme = timer_scheme()
    scheme = Scheme(
        scheme.name,
        scheme.activities,
        scheme.transitions,
        scheme.commands,
        timers=(Timer("Late", TimerType.EXPRESSION, "@Due"),),
    )
    engine.schemes.save(scheme)
    due = utcnow() + timedelta(days=3)
    pid = engine.processes.create("Escalation", parameters={"Due": due.isoformat()})
    [step] = timer_steps(engine, pid)
    assert abs(step.run_at - due) < timedelta(milliseconds=1)


def test_timer_steps_belong_to_the_process_tenant(engine: fk.Engine) -> None:
    engine.schemes.save(timer_scheme("1h"), tenant_id="acme")
    pid = engine.processes.create("Escalation", tenant_id="acme")
    [step] = timer_steps(engine, pid)
    assert step.tenant_id == "acme"
