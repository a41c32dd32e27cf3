"""Scheme versions on every database: saving makes a version, running processes keep theirs,
update_scheme and automatic updates move them."""

from __future__ import annotations

import dataclasses

import pytest

import flowkeeper as fk
from flowkeeper.processes.model import Activity, Command, Scheme, Transition, Trigger, TriggerType
from tests.apps.pingpong import ping_pong_scheme
from tests.processes.test_runtime import snapshot


def with_activity_c(scheme: Scheme, *, auto_update: bool = False) -> Scheme:
    """The ping-pong scheme plus C: ``Jump`` moves B to C (final)."""
    activities = tuple(
        dataclasses.replace(a, is_auto_scheme_update=auto_update) for a in scheme.activities
    )
    return dataclasses.replace(
        scheme,
        activities=(*activities, Activity("C", state="C", is_final=True)),
        transitions=(
            *scheme.transitions,
            Transition("B_C", "B", "C", Trigger(TriggerType.COMMAND, "Jump")),
        ),
        commands=(*scheme.commands, Command("Jump")),
    )


def test_saving_makes_versions_and_old_ones_obsolete(engine: fk.Engine) -> None:
    first = ping_pong_scheme()
    assert engine.schemes.save(first) == 1
    assert engine.schemes.save(with_activity_c(first)) == 2
    assert engine.schemes.get("PingPong", 1) == first
    assert engine.schemes.get("PingPong") == with_activity_c(first)
    assert engine.schemes.newest_version("PingPong") == 2
    versions = engine.schemes.versions("PingPong")
    assert [(v.version, v.obsolete) for v in versions] == [(1, True), (2, False)]
    assert [(s.code, s.version) for s in engine.schemes.list()] == [("PingPong", 2)]
    with pytest.raises(fk.SchemeNotFound, match="no version 7"):
        engine.schemes.get("PingPong", 7)


def test_tenants_have_their_own_schemes(engine: fk.Engine) -> None:
    engine.schemes.save(ping_pong_scheme(), tenant_id="acme")
    assert engine.schemes.list() == []
    assert [s.tenant_id for s in engine.schemes.list(tenant_id="acme")] == ["acme"]
    with pytest.raises(fk.SchemeNotFound, match="PingPong"):
        engine.processes.create("PingPong")
    pid = engine.processes.create("PingPong", tenant_id="acme")
    assert engine.processes.get(pid).tenant_id == "acme"


def test_an_invalid_scheme_is_not_saved(engine: fk.Engine) -> None:
    broken = dataclasses.replace(ping_pong_scheme(), activities=())
    with pytest.raises(fk.SchemeError, match="initial"):
        engine.schemes.save(broken)
    assert engine.schemes.list() == []
    with pytest.raises(fk.InvalidArgument, match="from_xml"):
        engine.schemes.save("<Process/>")  # type: ignore[arg-type]


def test_running_processes_keep_their_version_until_updated(engine: fk.Engine) -> None:
    engine.schemes.save(ping_pong_scheme())
    old = engine.processes.create("PingPong")
    engine.processes.execute(old, "Go")
    engine.schemes.save(with_activity_c(ping_pong_scheme()))
    new = engine.processes.create("PingPong")
    assert engine.processes.get(new).scheme_version == 2
    assert engine.processes.get(old).scheme_version == 1
    assert [c.name for c in engine.processes.commands(old)] == ["Back"]

    updated = engine.processes.update_scheme(old)
    assert (updated.scheme_version, updated.activity) == (2, "B")
    assert [c.name for c in engine.processes.commands(old)] == ["Back", "Jump"]
    assert len(engine.processes.history(old)) == 1  # nothing it did is rewritten
    assert engine.processes.update_scheme(old) == engine.processes.get(old)  # already newest


def test_update_refused_when_the_activity_is_gone(engine: fk.Engine) -> None:
    engine.schemes.save(with_activity_c(ping_pong_scheme()))
    pid = engine.processes.create("PingPong")
    engine.processes.execute(pid, "Go")
    engine.processes.execute(pid, "Jump")
    engine.schemes.save(ping_pong_scheme())  # version 2 has no C
    before = snapshot(engine)
    with pytest.raises(fk.SchemeUpdateError, match=r"activity 'C'.*version 2"):
        engine.processes.update_scheme(pid)
    assert snapshot(engine) == before


def marked_for_auto_update(scheme: Scheme) -> Scheme:
    activities = tuple(
        dataclasses.replace(a, is_auto_scheme_update=True) for a in scheme.activities
    )
    return dataclasses.replace(scheme, activities=activities)


@pytest.mark.parametrize("configured", [True, False])
def test_automatic_update_when_configured_and_marked(db_url: str, configured: bool) -> None:
    engine = fk.Engine(db_url, auto_scheme_update=configured)
    try:
        engine.schemes.save(marked_for_auto_update(ping_pong_scheme()))
        pid = engine.processes.create("PingPong")
        engine.schemes.save(with_activity_c(ping_pong_scheme(), auto_update=True))
        engine.processes.execute(pid, "Go")
        assert engine.processes.get(pid).scheme_version == (2 if configured else 1)
        expected = ["Back", "Jump"] if configured else ["Back"]
        assert [c.name for c in engine.processes.commands(pid)] == expected
    finally:
        engine.close()


def test_reads_show_what_a_command_would_meet_after_an_automatic_update(db_url: str) -> None:
    """``commands`` and ``states_to_set`` answer for the newest version, as ``execute`` would
    move there first, and write nothing."""
    engine = fk.Engine(db_url, auto_scheme_update=True)
    try:
        engine.schemes.save(marked_for_auto_update(ping_pong_scheme()))
        pid = engine.processes.create("PingPong")
        engine.processes.execute(pid, "Go")
        engine.schemes.save(with_activity_c(ping_pong_scheme(), auto_update=True))
        before = snapshot(engine)
        assert [c.name for c in engine.processes.commands(pid)] == ["Back", "Jump"]
        assert "C" in engine.processes.states_to_set(pid)
        assert snapshot(engine) == before
        assert engine.processes.get(pid).scheme_version == 1
        assert engine.processes.execute(pid, "Jump").process.activity == "C"
    finally:
        engine.close()


def test_no_automatic_update_unless_the_activity_is_marked(db_url: str) -> None:
    engine = fk.Engine(db_url, auto_scheme_update=True)
    try:
        engine.schemes.save(ping_pong_scheme())
        pid = engine.processes.create("PingPong")
        engine.schemes.save(with_activity_c(ping_pong_scheme()))
        engine.processes.execute(pid, "Go")
        assert engine.processes.get(pid).scheme_version == 1
    finally:
        engine.close()


def test_a_save_rolled_back_by_the_caller_is_never_used(engine: fk.Engine) -> None:
    with engine.database.connect() as conn, conn.begin() as transaction:
        engine.schemes.save(with_activity_c(ping_pong_scheme()), connection=conn)
        transaction.rollback()
    other = fk.Engine(engine.url)
    try:
        other.schemes.save(ping_pong_scheme())  # the real version 1
    finally:
        other.close()
    assert engine.schemes.get("PingPong", 1) == ping_pong_scheme()


def test_a_timer_firing_on_an_updated_scheme_completes(db_url: str) -> None:
    from tests.processes.schemes import timer_scheme

    engine = fk.Engine(db_url, auto_scheme_update=True)
    try:
        engine.schemes.save(marked_for_auto_update(timer_scheme("1")))
        pid = engine.processes.create("Escalation")
        without_timer = dataclasses.replace(
            marked_for_auto_update(timer_scheme("1")),
            transitions=tuple(
                t for t in timer_scheme().transitions if t.trigger.type is not TriggerType.TIMER
            ),
            timers=(),
        )
        engine.schemes.save(without_timer)
        engine.run(workers=1, until_idle=True, handle_signals=False, max_poll_interval=0.05)
        process = engine.processes.get(pid)
        assert (process.activity, process.scheme_version) == ("Waiting", 2)
        assert engine.count(fk.Search(name="flowkeeper/process-timer")) == {
            "ready": 0,
            "done": 1,
            "failed": 0,
        }
    finally:
        engine.close()


def test_an_execute_that_does_not_move_keeps_no_inputs_after_an_update(db_url: str) -> None:
    from flowkeeper.processes.model import CommandInput, Condition, ConditionType

    gated = dataclasses.replace(
        marked_for_auto_update(ping_pong_scheme()),
        transitions=tuple(
            dataclasses.replace(
                t, conditions=(Condition(ConditionType.EXPRESSION, expression="@Open"),)
            )
            for t in ping_pong_scheme().transitions
        ),
        commands=(Command("Go", (CommandInput("Note", "Note"),)), Command("Back")),
    )
    engine = fk.Engine(db_url, auto_scheme_update=True)
    try:
        engine.schemes.save(marked_for_auto_update(ping_pong_scheme()))
        pid = engine.processes.create("PingPong")
        engine.schemes.save(gated)
        result = engine.processes.execute(pid, "Go", parameters={"Note": "hello"})
        assert not result.executed
        assert result.process.scheme_version == 2
        assert engine.processes.get(pid).parameters == {}
    finally:
        engine.close()
