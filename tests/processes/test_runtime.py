"""The process runtime on every database: create, commands, execute, history, set_state,
delete, parameters, automatic transitions, and the errors of each."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

import flowkeeper as fk
from flowkeeper.processes.model import (
    ActionRef,
    Activity,
    Condition,
    ConditionType,
    Scheme,
    Transition,
    Trigger,
    TriggerType,
)
from flowkeeper.processes.model import Command as SchemeCommand
from tests.processes.schemes import auto, document_scheme, register_rules


@pytest.fixture
def docs(engine: fk.Engine) -> fk.Engine:
    """An engine with the document scheme saved and its rules registered."""
    register_rules(engine)
    engine.schemes.save(document_scheme())
    return engine


def snapshot(engine: fk.Engine) -> dict[str, list[Any]]:
    """Every process and history row, to show that a failed call wrote nothing."""
    with engine.database.connect() as conn:
        return {
            table: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))]
            for table in ("fk_processes", "fk_process_history", "fk_steps_ready")
        }


def test_create_rests_on_the_initial_activity(docs: fk.Engine) -> None:
    pid = docs.processes.create("Document", identity="alice", parameters={"Author": "alice"})
    process = docs.processes.get(pid)
    assert (process.activity, process.state, process.status) == ("Draft", "Draft", "Idled")
    assert process.scheme_code == "Document"
    assert process.scheme_version == 1
    assert process.parameters == {"Author": "alice"}
    assert process.created_at.tzinfo is not None
    assert process.row_version == 1
    assert docs.processes.history(pid) == []


def test_create_with_own_id_and_duplicate_id(docs: fk.Engine) -> None:
    assert docs.processes.create("Document", process_id="doc-1") == "doc-1"
    before = snapshot(docs)
    with pytest.raises(fk.ProcessExists, match="doc-1"):
        docs.processes.create("Document", process_id="doc-1")
    assert snapshot(docs) == before


def test_create_unknown_scheme(engine: fk.Engine) -> None:
    with pytest.raises(fk.SchemeNotFound, match=r"'Nope'.*engine.schemes.save"):
        engine.processes.create("Nope")


def test_commands_follow_restrictions(docs: fk.Engine) -> None:
    pid = docs.processes.create("Document", parameters={"Author": "alice", "Amount": 50})
    assert [c.name for c in docs.processes.commands(pid, identity="alice")] == ["Submit"]
    assert docs.processes.commands(pid, identity="bob") == []
    docs.processes.execute(pid, "Submit", identity="alice")
    commands = docs.processes.commands(pid, identity="bob")
    assert [(c.name, c.classifier) for c in commands] == [
        ("Approve", fk.Classifier.DIRECT),
        ("Reject", fk.Classifier.REVERSE),
    ]
    assert [i.name for i in commands[0].input_parameters] == ["Comment"]
    assert docs.processes.commands(pid, identity="carol") == []
    assert docs.processes.commands(pid, identity=None) == []


def test_execute_moves_and_records_history(docs: fk.Engine) -> None:
    pid = docs.processes.create("Document", parameters={"Author": "alice", "Amount": 50})
    result = docs.processes.execute(pid, "Submit", identity="alice")
    assert result.executed
    assert result.process.activity == "Review"
    assert result.process == docs.processes.get(pid)
    result = docs.processes.execute(pid, "Approve", identity="bob", parameters={"Comment": "ok"})
    assert result.process.activity == "Approved"
    assert result.process.status == "Finalized"
    history = docs.processes.history(pid)
    assert [
        (h.seq, h.from_activity, h.to_activity, h.command, h.trigger, h.identity) for h in history
    ] == [
        (1, "Draft", "Review", "Submit", "Command", "alice"),
        (2, "Review", "Approved", "Approve", "Command", "bob"),
    ]
    assert history[1].transition == "Review_Approved"
    assert history[1].classifier == "Direct"
    assert history[0].at <= history[1].at
    assert result.transitions == (history[1],)
    assert "Comment" not in result.process.parameters  # Temporary: lives for the call only
    assert docs.processes.commands(pid, identity="bob") == []
    with pytest.raises(fk.CommandNotAvailable, match="Finalized"):
        docs.processes.execute(pid, "Approve", identity="bob")


def test_expression_condition_and_otherwise(docs: fk.Engine) -> None:
    pid = docs.processes.create("Document", parameters={"Author": "alice", "Amount": "250.5"})
    assert docs.processes.get(pid).parameters["Amount"] == 250.5  # coerced to Decimal's type
    docs.processes.execute(pid, "Submit", identity="alice")
    result = docs.processes.execute(pid, "Approve", identity="dave")
    assert result.process.activity == "BigAmount"
    assert [c.name for c in docs.processes.commands(pid, identity="carol")] == ["Approve"]
    assert docs.processes.execute(pid, "Approve", identity="carol").process.activity == "Approved"


def test_command_errors_write_nothing(docs: fk.Engine) -> None:
    pid = docs.processes.create("Document", parameters={"Author": "alice"})
    before = snapshot(docs)
    with pytest.raises(fk.CommandNotAvailable, match=r"may not execute 'Submit'"):
        docs.processes.execute(pid, "Submit", identity="bob")
    with pytest.raises(
        fk.CommandNotAvailable, match=r"not available in activity 'Draft'.*'Submit'"
    ):
        docs.processes.execute(pid, "Approve", identity="bob")
    with pytest.raises(fk.CommandNotAvailable, match="has no command 'Fly'"):
        docs.processes.execute(pid, "Fly", identity="bob")
    with pytest.raises(fk.ProcessNotFound, match="nope"):
        docs.processes.execute("nope", "Submit", identity="alice")
    with pytest.raises(fk.InvalidArgument, match="command must be"):
        docs.processes.execute(pid, "", identity="alice")
    assert snapshot(docs) == before


def test_command_input_parameters(docs: fk.Engine) -> None:
    pid = docs.processes.create("Document", parameters={"Author": "alice"})
    docs.processes.execute(pid, "Submit", identity="alice")
    before = snapshot(docs)
    with pytest.raises(fk.InvalidCommandParameters, match="requires the input parameter 'Reason'"):
        docs.processes.execute(pid, "Reject", identity="bob")
    with pytest.raises(fk.InvalidCommandParameters, match=r"no input parameter 'Color'.*'Reason'"):
        docs.processes.execute(
            pid, "Reject", identity="bob", parameters={"Reason": "x", "Color": 1}
        )
    with pytest.raises(fk.InvalidCommandParameters, match="'Reason' must be of type String"):
        docs.processes.execute(pid, "Reject", identity="bob", parameters={"Reason": {1, 2}})
    with pytest.raises(fk.InvalidArgument, match="'Tags' must be a JSON value"):
        docs.processes.set_state(pid, "Review", parameters={"Tags": {1, 2}})
    assert snapshot(docs) == before
    result = docs.processes.execute(pid, "Reject", identity="bob", parameters={"Reason": 42})
    assert result.process.parameters["Reason"] == "42"  # coerced to the declared String
    assert result.process.activity == "Draft"


def test_create_parameter_errors(docs: fk.Engine) -> None:
    with pytest.raises(fk.InvalidArgument, match=r"'Amount' must be of type Decimal"):
        docs.processes.create("Document", parameters={"Amount": "a lot"})
    with pytest.raises(fk.InvalidArgument, match="system parameter"):
        docs.processes.create("Document", parameters={"ProcessId": "x"})
    assert snapshot(docs)["fk_processes"] == []


def action_scheme(*actions: str, loop: bool = False) -> Scheme:
    transitions = [
        auto("Start_Middle", "Start", "Middle"),
        auto("Middle_End", "Middle", "End", expression="@Done == true"),
    ]
    if loop:
        transitions.append(auto("Middle_Start", "Middle", "Start", otherwise=True))
    return Scheme(
        "Actions",
        activities=(
            Activity("Start", state="Start", is_initial=True),
            Activity(
                "Middle",
                state="Middle",
                implementation=tuple(ActionRef(a, order=i) for i, a in enumerate(actions)),
            ),
            Activity("End", state="End", is_final=True),
        ),
        transitions=tuple(transitions),
    )


def test_actions_run_in_order_and_change_parameters(engine: fk.Engine) -> None:
    calls: list[tuple[str, Any]] = []

    @engine.action("First")
    def first(ctx: fk.ActionContext, parameter: Any) -> None:
        calls.append(("First", ctx.process.parameters["CurrentActivity"]))
        ctx.process.parameters["Count"] = 1

    @engine.action("Second")
    def second(ctx: fk.ActionContext, parameter: Any) -> None:
        calls.append(("Second", ctx.process.parameters["Count"]))
        ctx.process.parameters["Done"] = True

    engine.schemes.save(action_scheme("First", "Second"))
    pid = engine.processes.create("Actions", identity="alice")
    process = engine.processes.get(pid)
    assert calls == [("First", "Middle"), ("Second", 1)]
    assert (process.activity, process.status) == ("End", "Finalized")
    assert process.parameters == {"Count": 1, "Done": True}
    assert [(h.trigger, h.identity) for h in engine.processes.history(pid)] == [
        ("Auto", "alice"),
        ("Auto", "alice"),
    ]


def test_action_writes_commit_with_the_move_or_roll_back_with_it(engine: fk.Engine) -> None:
    with engine.database.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS fk_test_ledger (note VARCHAR(50))"))
        conn.execute(sa.text("DELETE FROM fk_test_ledger"))
    fail = {"now": True}

    @engine.action("Book")
    def book(ctx: fk.ActionContext, parameter: Any) -> None:
        ctx.connection.execute(sa.text("INSERT INTO fk_test_ledger VALUES ('booked')"))
        ctx.process.parameters["Done"] = True
        if fail["now"]:
            raise KeyError("the ledger is closed")

    engine.schemes.save(action_scheme("Book"))
    before = snapshot(engine)
    with pytest.raises(KeyError, match="ledger is closed"):  # the caller's exception, unchanged
        engine.processes.create("Actions")
    assert snapshot(engine) == before
    with engine.database.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM fk_test_ledger")).scalar() == 0
    fail["now"] = False
    engine.processes.create("Actions")
    with engine.database.begin() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM fk_test_ledger")).scalar() == 1
        conn.execute(sa.text("DROP TABLE fk_test_ledger"))


def test_missing_action_names_it_and_writes_nothing(engine: fk.Engine) -> None:
    engine.schemes.save(action_scheme("SendInvoice"))
    with pytest.raises(fk.ActionNotRegistered, match=r"'SendInvoice'.*@engine.action"):
        engine.processes.create("Actions")
    assert snapshot(engine)["fk_processes"] == []


def test_missing_rule_names_it(docs: fk.Engine) -> None:
    engine = fk.Engine(docs.url)  # the same database, no rules registered
    try:
        pid = engine.processes.create("Document")
        with pytest.raises(fk.ActionNotRegistered, match=r"rule 'Author'.*@engine.rule"):
            engine.processes.commands(pid, identity="alice")
    finally:
        engine.close()


def test_endless_automatic_loop_is_stopped_with_nothing_written(db_url: str) -> None:
    engine = fk.Engine(db_url, max_auto_transitions=50)
    try:
        engine.schemes.save(action_scheme(loop=True))
        with pytest.raises(fk.EndlessLoop, match=r"50 automatic transitions.*max_auto_transitions"):
            engine.processes.create("Actions")
        assert snapshot(engine)["fk_processes"] == []
        pid = engine.processes.create("Actions", parameters={"Done": True})
        assert engine.processes.get(pid).activity == "End"
    finally:
        engine.close()


def test_system_parameters_are_readable_and_not_writable(engine: fk.Engine) -> None:
    seen: dict[str, Any] = {}

    @engine.action("Look")
    def look(ctx: fk.ActionContext, parameter: Any) -> None:
        for name in (
            "ProcessId",
            "SchemeCode",
            "CurrentActivity",
            "PreviousActivity",
            "IdentityId",
        ):
            seen[name] = ctx.process.parameters[name]
        ctx.process.parameters["Done"] = True
        ctx.process.parameters["ProcessId"] = "stolen"

    engine.schemes.save(action_scheme("Look"))
    with pytest.raises(fk.InvalidArgument, match="'ProcessId' is a system parameter"):
        engine.processes.create("Actions", identity="zoe", process_id="p-1")
    assert seen == {
        "ProcessId": "p-1",
        "SchemeCode": "Actions",
        "CurrentActivity": "Middle",
        "PreviousActivity": "Start",
        "IdentityId": "zoe",
    }


def test_action_parameter_is_decoded(engine: fk.Engine) -> None:
    got: list[Any] = []

    @engine.action("Take")
    def take(ctx: fk.ActionContext, parameter: Any) -> None:
        got.append(parameter)

    scheme = Scheme(
        "Params",
        activities=(
            Activity(
                "A",
                is_initial=True,
                is_final=True,
                implementation=(
                    ActionRef("Take", 1, '{"Value": 5}'),
                    ActionRef("Take", 2, "plain text"),
                    ActionRef("Take", 3),
                ),
            ),
        ),
    )
    engine.schemes.save(scheme)
    engine.processes.create("Params")
    assert got == [{"Value": 5}, "plain text", None]


def test_condition_actions_and_inversion(engine: fk.Engine) -> None:
    @engine.condition("IsBig")
    def is_big(ctx: fk.ActionContext, parameter: Any) -> bool:
        return bool(ctx.process.parameters.get("Amount", 0) > parameter["limit"])

    scheme = Scheme(
        "Cond",
        activities=(
            Activity("A", is_initial=True),
            Activity("Small", is_final=True),
            Activity("Big", is_final=True),
        ),
        transitions=(
            Transition(
                "A_Small",
                "A",
                "Small",
                Trigger(TriggerType.AUTO),
                conditions=(
                    Condition(
                        ConditionType.ACTION, "IsBig", inversion=True, parameter='{"limit": 10}'
                    ),
                ),
            ),
            Transition(
                "A_Big",
                "A",
                "Big",
                Trigger(TriggerType.AUTO),
                conditions=(Condition(ConditionType.ACTION, "IsBig", parameter='{"limit": 10}'),),
            ),
        ),
    )
    engine.schemes.save(scheme)
    assert (
        engine.processes.get(engine.processes.create("Cond", parameters={"Amount": 5})).activity
        == "Small"
    )
    assert (
        engine.processes.get(engine.processes.create("Cond", parameters={"Amount": 50})).activity
        == "Big"
    )


def test_no_condition_holds_changes_nothing(engine: fk.Engine) -> None:
    scheme = Scheme(
        "Gate",
        activities=(Activity("A", is_initial=True), Activity("B", is_final=True)),
        transitions=(
            Transition(
                "A_B",
                "A",
                "B",
                Trigger(TriggerType.COMMAND, "Go"),
                conditions=(Condition(ConditionType.EXPRESSION, expression="@Open"),),
            ),
        ),
        commands=(SchemeCommand("Go"),),
    )
    engine.schemes.save(scheme)
    pid = engine.processes.create("Gate")
    before = snapshot(engine)
    result = engine.processes.execute(pid, "Go")
    assert not result.executed
    assert result.process.activity == "A"
    assert snapshot(engine) == before
    assert [c.name for c in engine.processes.commands(pid)] == ["Go"]
    assert engine.processes.commands(pid, check_conditions=True) == []


def test_set_state_and_states_to_set(docs: fk.Engine) -> None:
    pid = docs.processes.create("Document", parameters={"Author": "alice"})
    assert docs.processes.states_to_set(pid) == ["Draft", "Review", "BigAmount", "Approved"]
    process = docs.processes.set_state(pid, "BigAmount", identity="admin")
    assert process.activity == "BigAmount"
    assert process.status == "Idled"
    [record] = docs.processes.history(pid)
    assert (record.trigger, record.transition, record.identity) == ("SetState", None, "admin")
    before = snapshot(docs)
    with pytest.raises(fk.StateNotAvailable, match=r"'Nowhere'.*'Draft'"):
        docs.processes.set_state(pid, "Nowhere")
    assert snapshot(docs) == before


def test_delete(docs: fk.Engine) -> None:
    pid = docs.processes.create("Document", parameters={"Author": "alice"})
    docs.processes.execute(pid, "Submit", identity="alice")
    docs.processes.delete(pid)
    assert not docs.processes.exists(pid)
    with pytest.raises(fk.ProcessNotFound):
        docs.processes.get(pid)
    with pytest.raises(fk.ProcessNotFound):
        docs.processes.delete(pid)
    assert snapshot(docs)["fk_process_history"] == []


def test_list_filters_and_pages(docs: fk.Engine) -> None:
    ids = sorted(docs.processes.create("Document", parameters={"Author": "a"}) for _ in range(5))
    docs.processes.execute(ids[0], "Submit", identity="a")
    assert [p.id for p in docs.processes.list(limit=2)] == ids[:2]
    assert [p.id for p in docs.processes.list(after=ids[1], limit=2)] == ids[2:4]
    assert [p.id for p in docs.processes.list(activity="Review")] == ids[:1]
    assert len(docs.processes.list(status="Idled", scheme_code="Document")) == 5
    assert docs.processes.list(tenant_id="other") == []
    with pytest.raises(fk.InvalidArgument, match="limit"):
        docs.processes.list(limit=0)
    with pytest.raises(ValueError, match="Sleeping"):
        docs.processes.list(status="Sleeping")


@pytest.mark.parametrize("bad", ["", "x" * 256, 7, None])
def test_bad_process_ids(docs: fk.Engine, bad: Any) -> None:
    with pytest.raises(fk.InvalidArgument, match="process id"):
        docs.processes.get(bad)


def test_execute_in_the_callers_transaction(docs: fk.Engine) -> None:
    pid = docs.processes.create("Document", parameters={"Author": "alice"})
    with docs.database.connect() as conn:
        with conn.begin() as transaction:
            docs.processes.execute(pid, "Submit", identity="alice", connection=conn)
            assert docs.processes.get(pid, connection=conn).activity == "Review"
            transaction.rollback()
        assert docs.processes.get(pid).activity == "Draft"
        with conn.begin():
            docs.processes.execute(pid, "Submit", identity="alice", connection=conn)
    assert docs.processes.get(pid).activity == "Review"
    assert len(docs.processes.history(pid)) == 1


def test_an_expression_that_fails_at_run_time_names_its_transition(engine: fk.Engine) -> None:
    scheme = Scheme(
        "Bad",
        activities=(Activity("A", is_initial=True), Activity("B", is_final=True)),
        transitions=(
            Transition(
                "A_B",
                "A",
                "B",
                Trigger(TriggerType.AUTO),
                conditions=(Condition(ConditionType.EXPRESSION, expression="@X / 0 > 1"),),
            ),
        ),
    )
    engine.schemes.save(scheme)
    with pytest.raises(fk.ExpressionError, match=r"transition 'A_B'.*zero"):
        engine.processes.create("Bad", parameters={"X": 1})
    assert engine.processes.list() == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda e: e.processes.create("Document", parameters={"Note": "\ud800"}), "surrogate"),
        (lambda e: e.processes.create("Document", identity="a\x00b"), "identity"),
        (lambda e: e.processes.create("Document", process_id="p\x00"), "process id"),
        (lambda e: e.processes.create("Document", process_id="p\udc80"), "process id"),
    ],
)
def test_text_no_database_can_store_is_refused(docs: fk.Engine, call: Any, match: str) -> None:
    with pytest.raises(fk.InvalidArgument, match=match):
        call(docs)
    assert snapshot(docs)["fk_processes"] == []


def test_calls_with_a_tenant_see_only_that_tenants_processes(docs: fk.Engine) -> None:
    docs.schemes.save(document_scheme(), tenant_id="acme")
    theirs = docs.processes.create("Document", tenant_id="acme", parameters={"Author": "alice"})
    ours = docs.processes.create("Document", parameters={"Author": "alice"})
    before = snapshot(docs)
    others = {
        "get": lambda t: docs.processes.get(theirs, tenant_id=t),
        "history": lambda t: docs.processes.history(theirs, tenant_id=t),
        "commands": lambda t: docs.processes.commands(theirs, "alice", tenant_id=t),
        "states_to_set": lambda t: docs.processes.states_to_set(theirs, tenant_id=t),
        "execute": lambda t: docs.processes.execute(
            theirs, "Submit", identity="alice", tenant_id=t
        ),
        "set_state": lambda t: docs.processes.set_state(theirs, "Draft", tenant_id=t),
        "update_scheme": lambda t: docs.processes.update_scheme(theirs, tenant_id=t),
        "delete": lambda t: docs.processes.delete(theirs, tenant_id=t),
    }
    for name, call in others.items():
        for wrong in (None, "other", ""):
            with pytest.raises(fk.ProcessNotFound, match=theirs):
                call(wrong)
        assert snapshot(docs) == before, name
    assert docs.processes.exists(theirs, tenant_id="acme")
    assert not docs.processes.exists(theirs, tenant_id=None)
    assert docs.processes.exists(theirs)  # no tenant given: any tenant
    assert docs.processes.get(theirs, tenant_id="acme").tenant_id == "acme"
    assert docs.processes.get(ours, tenant_id=None).id == ours
    assert docs.processes.get(ours, tenant_id="").id == ours  # "" is the default tenant too
    result = docs.processes.execute(theirs, "Submit", identity="alice", tenant_id="acme")
    assert result.executed
    docs.processes.delete(theirs, tenant_id="acme")
    assert not docs.processes.exists(theirs)
