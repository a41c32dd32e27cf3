"""Step operations on every database: add, search, get, count, activate, re-execute, fail.

Every test runs on each database chosen with ``--databases``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

import flowkeeper as fk
from tests.concurrency import run_together

UNICODE_STATE = {
    "text": 'Grüße, 你好, 😀, "quoted" and \\ backslash',
    "nested": {"list": [1, 2.5, None, True, {"deep": ["x", {"y": -3}]}], "empty": {}},
    "big": 2**62,
}


def aware(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() == timedelta(0)


def only(found: dict[str, list[fk.StepRecord]], queue: str = "ready") -> list[fk.StepRecord]:
    """The records found in ``queue``, checking the other queues hold none."""
    for other, records in found.items():
        if other != queue:
            assert records == [], f"unexpected steps in {other}"
    return found[queue]


def ids_of(found: dict[str, list[fk.StepRecord]], queue: str = "ready") -> list[int]:
    return [r.id for r in found[queue]]


# -- adding ----------------------------------------------------------------------------------


def test_add_steps_returns_ids_in_order(engine: fk.Engine) -> None:
    ids = engine.add_steps(*(fk.Step("s", {"i": i}) for i in range(5)))
    assert len(set(ids)) == 5
    assert ids == sorted(ids)
    for i, step_id in enumerate(ids):
        assert engine.get_step(step_id).state == {"i": i}
    assert engine.add_steps() == []
    one = engine.add_step(fk.Step("s"))
    assert one > ids[-1]


def test_a_large_batch_of_steps_keeps_its_order_and_every_column(engine: fk.Engine) -> None:
    """More steps than one statement takes on SQLite, with every column that can vary."""
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    steps = [
        fk.Step(
            f"s{i % 3}",
            {"i": i, "text": 'quote " back\\slash ünï'},
            run_at=run_at if i % 2 else None,
            singleton=i == 7,
            correlation_id=f"c{i}" if i % 4 == 0 else None,
            search_key="k,{}" if i % 5 == 0 else None,
            description=f"line\n{i}" if i % 6 == 0 else None,
            tenant_id="t" if i % 7 == 0 else None,
        )
        for i in range(250)
    ]
    ids = engine.add_steps(*steps)
    assert ids == sorted(ids)
    assert len(set(ids)) == 250
    for step, step_id in zip(steps, ids, strict=True):
        record = engine.get_step(step_id)
        assert record.state == step.state
        assert (record.name, record.singleton) == (step.name, step.singleton)
        assert record.run_at == (step.run_at or record.created_at)
        assert record.correlation_id == step.correlation_id
        assert record.search_key == step.search_key
        assert record.description == step.description
        assert record.tenant_id == step.tenant_id
    with pytest.raises(fk.SingletonExists):
        engine.add_steps(*[fk.Step("x") for _ in range(100)], fk.Step("s1", singleton=True))
    assert engine.count()["ready"] == 250


def test_every_column_is_stored(engine: fk.Engine) -> None:
    run_at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-3)))
    before = datetime.now(UTC)
    step_id = engine.add_step(
        fk.Step(
            "v1/orders/fetch",
            UNICODE_STATE,
            run_at=run_at,
            flow_id="flow-1",
            correlation_id="order-7",
            search_key="customer:42",
            description="fetch the order ✓",
        )
    )
    after = datetime.now(UTC)
    record = engine.get_step(step_id)
    assert record.queue == "ready"
    assert record.id == step_id
    assert record.name == "v1/orders/fetch"
    assert record.state == UNICODE_STATE
    assert record.run_at == run_at
    assert record.run_at.tzinfo == UTC
    assert before - timedelta(seconds=1) <= record.created_at <= after + timedelta(seconds=1)
    assert aware(record.created_at)
    assert record.flow_id == "flow-1"
    assert record.correlation_id == "order-7"
    assert record.search_key == "customer:42"
    assert record.description == "fetch the order ✓"
    assert record.singleton is False
    assert record.execution_count == 0
    assert record.activation_args is None
    assert record.created_by_step_id is None
    assert record.execution_started_at is None
    assert record.locked_by is None


def test_defaults_of_a_new_step(engine: fk.Engine) -> None:
    before = datetime.now(UTC)
    first, second = engine.add_steps(fk.Step("a"), fk.Step("b"))
    a, b = engine.get_step(first), engine.get_step(second)
    assert a.state is None
    assert a.flow_id
    assert b.flow_id
    assert a.flow_id != b.flow_id
    assert (a.correlation_id, a.search_key, a.description) == (None, None, None)
    assert a.run_at == a.created_at  # due at once
    assert a.run_at >= before - timedelta(seconds=1)


@pytest.mark.parametrize(
    "state", [None, 0, -1.5, "", "text", [], {}, [None, [[]]], {"": {"": ""}}, True]
)
def test_json_states_round_trip(engine: fk.Engine, state: Any) -> None:
    assert engine.get_step(engine.add_step(fk.Step("s", state))).state == state


def test_large_states_and_descriptions_fit(engine: fk.Engine) -> None:
    big = {"blob": "x" * 200_000, "list": list(range(10_000))}
    step_id = engine.add_step(fk.Step("s", big, description="d" * 100_000))
    record = engine.get_step(step_id)
    assert record.state == big
    assert record.description == "d" * 100_000


def test_a_state_with_a_lone_surrogate_round_trips(engine: fk.Engine) -> None:
    state = {"half": "\ud83d", "emoji": "😀"}
    assert engine.get_step(engine.add_step(fk.Step("s", state))).state == state


def test_a_255_character_name_is_stored(engine: fk.Engine) -> None:
    for name in ("n" * 255, "😀" * 255, "é" * 255):
        assert engine.get_step(engine.add_step(fk.Step(name))).name == name


def test_all_times_returned_are_aware_utc(engine: fk.Engine) -> None:
    @engine.step("t")
    def t(step: fk.StepContext) -> None:
        assert aware(step.run_at)

    engine.add_steps(fk.Step("t"), fk.Step("t", run_at=datetime.now(UTC) + timedelta(days=1)))
    engine.run(workers=1, until_idle=True)
    found = engine.search()
    records = found["ready"] + found["done"]
    assert len(records) == 2
    for record in records:
        for name in ("run_at", "created_at", "execution_started_at", "locked_until"):
            value = getattr(record, name)
            assert value is None or aware(value), (name, value)
    assert found["done"][0].execution_started_at is not None


def test_naive_datetimes_are_refused_everywhere(engine: fk.Engine) -> None:
    naive = datetime(2024, 1, 1)
    with pytest.raises(fk.NaiveDatetimeError, match="run_at"):
        engine.add_step(fk.Step("s", run_at=naive))
    with pytest.raises(fk.NaiveDatetimeError, match="created_from"):
        engine.search(fk.Search(created_from=naive))
    with pytest.raises(fk.NaiveDatetimeError, match="created_to"):
        engine.count(fk.Search(created_to=naive))

    @engine.step("rerun")
    def rerun(step: fk.StepContext) -> fk.Outcome:
        return step.rerun(run_at=naive)

    engine.add_step(fk.Step("rerun"))
    engine.run(workers=1, until_idle=True)
    failed = engine.search(fk.Search(name="rerun"))
    # A rerun with a naive time is an error in the implementation: retried, with the reason.
    record = (failed["ready"] + failed["failed"])[0]
    assert record.description is not None
    assert "NaiveDatetimeError" in record.description
    assert "timezone-aware" in record.description


def test_add_steps_refuses_what_is_not_a_step(engine: fk.Engine) -> None:
    with pytest.raises(fk.InvalidArgument, match=r"fk\.Step values, not list"):
        engine.add_steps([fk.Step("a")])  # type: ignore[arg-type]
    with pytest.raises(fk.InvalidArgument, match=r"fk\.Step"):
        engine.add_step("a")  # type: ignore[arg-type]
    assert engine.count() == {"ready": 0, "done": 0, "failed": 0}


# -- singletons ------------------------------------------------------------------------------


def test_a_second_ready_singleton_is_refused(engine: fk.Engine) -> None:
    first = engine.add_step(fk.Step("tick", singleton=True))
    with pytest.raises(fk.SingletonExists, match="'tick'") as caught:
        engine.add_step(fk.Step("tick", {"other": 1}, singleton=True))
    assert caught.value.names == ["tick"]
    assert "nothing was added" in str(caught.value)
    # Non-singleton steps of the same name are not affected.
    engine.add_step(fk.Step("tick"))
    assert next(r.id for r in engine.search(fk.Search(name="tick"))["ready"]) == first
    assert engine.count()["ready"] == 2


def test_add_steps_is_all_or_nothing(engine: fk.Engine) -> None:
    engine.add_step(fk.Step("tick", singleton=True))
    with pytest.raises(fk.SingletonExists, match="'tick'"):
        engine.add_steps(
            fk.Step("a"), fk.Step("b", singleton=True), fk.Step("tick", singleton=True)
        )
    assert engine.count() == {"ready": 1, "done": 0, "failed": 0}


def test_two_singletons_of_one_name_in_one_batch_are_refused(engine: fk.Engine) -> None:
    with pytest.raises(fk.SingletonExists, match="'tick'"):
        engine.add_steps(fk.Step("tick", singleton=True), fk.Step("tick", singleton=True))
    assert engine.count()["ready"] == 0


def test_singleton_names_are_exact(engine: fk.Engine) -> None:
    """Case, accents and trailing spaces make different names on every database."""
    names = ["tick", "Tick", "TICK", "tïck", "tick ", "t\u0131ck"]  # the last: dotless i
    engine.add_steps(*(fk.Step(n, singleton=True) for n in names))
    assert engine.count()["ready"] == len(names)
    with pytest.raises(fk.SingletonExists, match="'Tick'") as caught:
        engine.add_step(fk.Step("Tick", singleton=True))
    assert caught.value.names == ["Tick"]


def test_a_singleton_can_be_added_again_once_the_first_left_ready(engine: fk.Engine) -> None:
    first = engine.add_step(fk.Step("tick", singleton=True))
    assert engine.fail_steps(fk.Search(id=first)) == [first]
    second = engine.add_step(fk.Step("tick", singleton=True))
    assert second > first

    @engine.step("tick")
    def tick(step: fk.StepContext) -> None:
        return None

    engine.run(workers=1, until_idle=True)
    third = engine.add_step(fk.Step("tick", singleton=True))
    assert third > second
    assert engine.count() == {"ready": 1, "done": 1, "failed": 1}


def test_concurrent_singletons_exactly_one_wins(engine: fk.Engine) -> None:
    engine.count()  # check the schema once, outside the race
    threads = 8
    outcomes = run_together(lambda: engine.add_step(fk.Step("only-one", singleton=True)), threads)
    winners = [o for o in outcomes if isinstance(o, int)]
    losers = [o for o in outcomes if isinstance(o, fk.SingletonExists)]
    assert len(winners) == 1, outcomes
    assert len(losers) == threads - 1, outcomes
    assert engine.count()["ready"] == 1


def test_the_database_enforces_singletons(engine: fk.Engine) -> None:
    """Even a raw insert bypassing the engine's checks cannot add a second ready singleton."""
    from flowkeeper.storage.tables import steps_ready

    engine.add_step(fk.Step("tick", singleton=True))
    row = {
        "name": "tick",
        "singleton": True,
        "singleton_key": "tick",
        "flow_id": "f",
        "execution_count": 0,
        "run_at": datetime.now(UTC),
        "available_at": datetime.now(UTC),
        "created_at": datetime.now(UTC),
    }
    with pytest.raises(sa.exc.IntegrityError), engine.database.begin() as conn:
        conn.execute(steps_ready.insert(), row)


# -- the outbox pattern: connection= ---------------------------------------------------------


def test_steps_added_in_a_committed_transaction_appear(engine: fk.Engine) -> None:
    with engine.database.begin() as conn:
        ids = engine.add_steps(fk.Step("a"), fk.Step("b"), connection=conn)
        # The caller's transaction sees its own steps.
        assert ids_of(engine.search(connection=conn)) == ids
    assert ids_of(engine.search()) == ids


def test_steps_added_in_a_rolled_back_transaction_vanish(engine: fk.Engine) -> None:
    def business_transaction() -> None:
        with engine.database.begin() as conn:
            engine.add_steps(fk.Step("a"), connection=conn)
            engine.add_step(fk.Step("b", singleton=True), connection=conn)
            raise RuntimeError("business failure")

    with pytest.raises(RuntimeError, match="business failure"):
        business_transaction()
    assert engine.count() == {"ready": 0, "done": 0, "failed": 0}
    engine.add_step(fk.Step("b", singleton=True))  # the singleton was never there


def test_a_singleton_clash_leaves_the_callers_transaction_usable(engine: fk.Engine) -> None:
    engine.add_step(fk.Step("tick", singleton=True))
    with engine.database.begin() as conn:
        first = engine.add_step(fk.Step("before"), connection=conn)
        with pytest.raises(fk.SingletonExists):
            engine.add_steps(fk.Step("lost"), fk.Step("tick", singleton=True), connection=conn)
        # On PostgreSQL a failed statement would abort the whole transaction; it must not.
        after = engine.add_step(fk.Step("after"), connection=conn)
        conn.execute(sa.text("SELECT 1"))
    names = sorted(r.name for r in engine.search()["ready"])
    assert names == ["after", "before", "tick"]
    assert {first, after} <= set(ids_of(engine.search()))


def test_a_clash_in_the_same_transaction_is_seen(engine: fk.Engine) -> None:
    with engine.database.begin() as conn:
        engine.add_step(fk.Step("tick", singleton=True), connection=conn)
        with pytest.raises(fk.SingletonExists):
            engine.add_step(fk.Step("tick", singleton=True), connection=conn)
    assert engine.count()["ready"] == 1


def test_a_fresh_engine_joins_a_transaction_opened_before_its_first_operation(
    db_url: str,
) -> None:
    """The schema check of a new engine must not wait for the caller's own transaction."""
    with fk.Engine(db_url) as fresh:
        started = time.monotonic()
        with fresh.database.begin() as conn:
            fresh.add_step(fk.Step("a"), connection=conn)
        assert time.monotonic() - started < 5
        assert fresh.count()["ready"] == 1


def test_every_operation_joins_the_callers_transaction(engine: fk.Engine) -> None:
    failed_id, _done_id, ready_id = engine.add_steps(fk.Step("f"), fk.Step("d"), fk.Step("r"))
    engine.fail_steps(fk.Search(id=failed_id))

    @engine.step("d")
    def d(step: fk.StepContext) -> None:
        return None

    engine.run(workers=1, until_idle=True)
    before = engine.count()
    snapshot = engine.search()

    def everything_then_roll_back() -> None:
        with engine.database.begin() as conn:
            assert engine.fail_steps(fk.Search(id=ready_id), connection=conn) == [ready_id]
            assert engine.get_step(ready_id, connection=conn).queue == "failed"
            new_ids = engine.reexecute(fk.Search(), ("done", "failed"), connection=conn)
            assert len(new_ids) == 3
            assert engine.count(connection=conn) == {"ready": 3, "done": 1, "failed": 2}
            assert engine.activate(new_ids[0], {"go": 1}, connection=conn) is True
            assert engine.add_step_if_absent(fk.Step("x"), fk.Search(name="x"), connection=conn)
            assert engine.count(fk.Search(name="x"), connection=conn)["ready"] == 1
            raise RuntimeError("roll it all back")

    with pytest.raises(RuntimeError, match="roll it all back"):
        everything_then_roll_back()

    assert engine.count() == before
    assert engine.search() == snapshot


def test_operations_commit_with_the_callers_transaction(engine: fk.Engine) -> None:
    first, second = engine.add_steps(fk.Step("a"), fk.Step("b"))
    with engine.database.begin() as conn:
        engine.fail_steps(fk.Search(id=first), "by the caller", connection=conn)
        (copy,) = engine.reexecute(fk.Search(id=first), connection=conn)
        assert engine.activate(second, [1, 2], connection=conn)
    assert engine.get_step(first).queue == "failed"
    assert engine.get_step(first).description == "by the caller"
    assert engine.get_step(copy).queue == "ready"
    assert engine.get_step(second).activation_args == [1, 2]


def test_connection_must_be_a_sqlalchemy_connection(engine: fk.Engine) -> None:
    with pytest.raises(fk.InvalidArgument, match="SQLAlchemy Connection, not Engine"):
        engine.add_step(fk.Step("a"), connection=engine.database)  # type: ignore[arg-type]
    assert engine.count()["ready"] == 0


# -- add_step_if_absent ----------------------------------------------------------------------


def test_add_step_if_absent(engine: fk.Engine) -> None:
    match = fk.Search(name="sync", search_key="customer:1")
    first = engine.add_step_if_absent(fk.Step("sync", search_key="customer:1"), match)
    assert isinstance(first, int)
    assert engine.add_step_if_absent(fk.Step("sync", search_key="customer:1"), match) is None
    other = engine.add_step_if_absent(
        fk.Step("sync", search_key="customer:2"), fk.Search(name="sync", search_key="customer:2")
    )
    assert isinstance(other, int)
    assert engine.count()["ready"] == 2
    # Only ready steps count: once the first one is failed, a new one is added.
    engine.fail_steps(fk.Search(id=first))
    third = engine.add_step_if_absent(fk.Step("sync", search_key="customer:1"), match)
    assert third is not None
    assert third > other


def test_add_step_if_absent_refuses_an_empty_search(engine: fk.Engine) -> None:
    with pytest.raises(fk.InvalidArgument, match="at least one field"):
        engine.add_step_if_absent(fk.Step("a"), fk.Search())
    with pytest.raises(fk.InvalidArgument, match=r"fk\.Search"):
        engine.add_step_if_absent(fk.Step("a"), {"name": "a"})  # type: ignore[arg-type]
    with pytest.raises(fk.InvalidArgument, match=r"fk\.Step"):
        engine.add_step_if_absent("a", fk.Search(name="a"))  # type: ignore[arg-type]
    assert engine.count()["ready"] == 0


def test_add_step_if_absent_with_a_singleton(engine: fk.Engine) -> None:
    engine.add_step(fk.Step("tick", singleton=True))
    with pytest.raises(fk.SingletonExists):
        engine.add_step_if_absent(fk.Step("tick", singleton=True), fk.Search(search_key="none"))
    assert (
        engine.add_step_if_absent(fk.Step("tick", singleton=True), fk.Search(name="tick")) is None
    )


def test_concurrent_add_step_if_absent_adds_one(engine: fk.Engine) -> None:
    engine.count()
    threads = 6
    results = run_together(
        lambda: engine.add_step_if_absent(fk.Step("once", search_key="k"), fk.Search(name="once")),
        threads,
    )
    assert sum(isinstance(r, int) for r in results) == 1, results
    assert results.count(None) == threads - 1, results
    assert engine.count()["ready"] == 1


# -- search ----------------------------------------------------------------------------------


@pytest.fixture
def population(engine: fk.Engine) -> dict[str, int]:
    """A few steps with distinct fields, in ready, done and failed."""
    ids = engine.add_steps(
        fk.Step("alpha", flow_id="f1", correlation_id="c1", search_key="k:1", description="one"),
        fk.Step("alpha", flow_id="f1", correlation_id="c2", search_key="k:10", description="two"),
        fk.Step("beta", flow_id="f2", correlation_id="c1", search_key="K:1", description="One"),
        fk.Step("beta", flow_id="f2", search_key="k_1", description="100% sure"),
        fk.Step("gamma", search_key="x/k:1", description="50%"),
    )
    named = dict(zip(["a1", "a2", "b1", "b2", "g"], ids, strict=True))
    engine.fail_steps(fk.Search(id=named["g"]), "bad gamma")
    return named


def find(engine: fk.Engine, **fields: Any) -> set[int]:
    found = engine.search(fk.Search(**fields), limit=None)
    return {r.id for records in found.values() for r in records}


def test_search_by_each_field(engine: fk.Engine, population: dict[str, int]) -> None:
    p = population
    assert find(engine) == set(p.values())
    assert find(engine, id=p["a2"]) == {p["a2"]}
    assert find(engine, id=10**12) == set()
    assert find(engine, name="alpha") == {p["a1"], p["a2"]}
    assert find(engine, name="Alpha") == set()
    assert find(engine, name="alph") == set()
    assert find(engine, flow_id="f2") == {p["b1"], p["b2"]}
    assert find(engine, correlation_id="c1") == {p["a1"], p["b1"]}
    assert find(engine, search_key="k:1") == {p["a1"]}
    assert find(engine, description="one") == {p["a1"]}
    assert find(engine, description="bad gamma") == {p["g"]}
    assert find(engine, name="alpha", correlation_id="c1") == {p["a1"]}
    assert find(engine, name="beta", correlation_id="c2") == set()


def test_search_wildcards(engine: fk.Engine, population: dict[str, int]) -> None:
    p = population
    assert find(engine, search_key="k:1%") == {p["a1"], p["a2"]}  # case-sensitive
    assert find(engine, search_key="K:%") == {p["b1"]}
    assert find(engine, search_key="%k:1") == {p["a1"], p["g"]}
    assert find(engine, search_key="%") == set(p.values())
    assert find(engine, search_key="k_1%") == {p["b2"]}  # "_" is no wildcard
    assert find(engine, description="%ne") == {p["a1"], p["b1"]}
    assert find(engine, description="o%") == {p["a1"]}
    assert find(engine, description="%\\%") == set()  # backslash is no escape
    assert find(engine, description="%0%") == {p["b2"]}  # g's "50%" became "bad gamma"
    # A name is matched exactly even with a %: only search_key and description take wildcards.
    assert find(engine, name="al%") == set()


def test_search_wildcards_with_special_characters(engine: fk.Engine) -> None:
    """Only % is a wildcard: LIKE's _ and escape characters, GLOB's * ? [ are plain text."""
    specials = ["/", "//", "[", "]", "[x]", "*", "?", "\\", "'", '"', "_", ".", "^", "%"]
    keys = [f"a{s}b" for s in specials]
    added = engine.add_steps(*(fk.Step("s", search_key=k) for k in keys))
    ids = dict(zip(keys, added, strict=True))
    assert find(engine, search_key="a%b") == set(added)
    for key in keys:
        if "%" in key:
            continue
        assert find(engine, search_key=key) == {ids[key]}, key
        prefix = key[:-1]
        expected = {ids[k] for k in keys if k.startswith(prefix)}
        assert find(engine, search_key=f"{prefix}%") == expected, key
        suffix = key[1:]
        expected = {ids[k] for k in keys if k.endswith(suffix)}
        assert find(engine, search_key=f"%{suffix}") == expected, key


def test_search_by_creation_time(engine: fk.Engine) -> None:
    first = engine.add_step(fk.Step("a"))
    time.sleep(0.01)
    second = engine.add_step(fk.Step("b"))
    one = engine.get_step(first).created_at
    two = engine.get_step(second).created_at
    assert one < two
    assert find(engine, created_from=one) == {first, second}  # inclusive
    assert find(engine, created_from=two) == {second}
    assert find(engine, created_to=two) == {first}  # exclusive
    assert find(engine, created_to=one) == set()
    assert find(engine, created_from=one, created_to=two) == {first}
    assert find(engine, created_from=two + timedelta(microseconds=1)) == set()
    # Another time zone names the same instant.
    plus_five = timezone(timedelta(hours=5))
    assert find(engine, created_from=two.astimezone(plus_five)) == {second}


def test_search_chooses_queues(engine: fk.Engine, population: dict[str, int]) -> None:
    found = engine.search(queues=["failed"])
    assert list(found) == ["failed"]
    assert [r.id for r in found["failed"]] == [population["g"]]
    assert found["failed"][0].queue == "failed"
    assert found["failed"][0].description == "bad gamma"
    assert list(engine.search(queues="done")) == ["done"]
    assert list(engine.search(queues=("ready", "done"))) == ["ready", "done"]
    assert set(engine.search()) == {"ready", "done", "failed"}


@pytest.mark.parametrize("queues", [["waiting"], "Ready", ["ready", "archive"], []])
def test_search_refuses_unknown_queues(engine: fk.Engine, queues: Any) -> None:
    with pytest.raises(fk.InvalidArgument, match="queue"):
        engine.search(queues=queues)


def test_search_limits_per_queue_and_returns_oldest_first(engine: fk.Engine) -> None:
    ids = engine.add_steps(*(fk.Step("s", {"i": i}) for i in range(7)))
    engine.fail_steps(fk.Search(id=ids[0]))
    found = engine.search(limit=3)
    assert ids_of(found) == ids[1:4]
    assert ids_of(found, "failed") == [ids[0]]
    assert ids_of(engine.search(limit=None)) == ids[1:]
    assert len(engine.search()["ready"]) == 6  # default limit 100
    # Oldest first even when the run times say otherwise.
    later = engine.add_step(fk.Step("s", run_at=datetime.now(UTC) - timedelta(days=1)))
    assert ids_of(engine.search(limit=None))[-1] == later


@pytest.mark.parametrize("limit", [0, -1, True, "3", 2.5])
def test_search_refuses_a_bad_limit(engine: fk.Engine, limit: Any) -> None:
    with pytest.raises(fk.InvalidArgument, match="limit must be a positive int"):
        engine.search(limit=limit)


def test_search_refuses_what_is_not_a_search(engine: fk.Engine) -> None:
    with pytest.raises(fk.InvalidArgument, match=r"fk\.Search"):
        engine.search({"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(fk.InvalidArgument, match=r"fk\.Search"):
        engine.count("x")  # type: ignore[arg-type]


# -- get, count ----------------------------------------------------------------------------------


def test_get_step_finds_a_step_in_any_queue(engine: fk.Engine) -> None:
    ready, failed = engine.add_steps(fk.Step("r"), fk.Step("f"))
    engine.fail_steps(fk.Search(id=failed))
    assert engine.get_step(ready).queue == "ready"
    assert engine.get_step(failed).queue == "failed"
    with pytest.raises(fk.StepNotFound, match=f"no step with id {failed + 100}"):
        engine.get_step(failed + 100)
    with pytest.raises(fk.InvalidArgument, match="int"):
        engine.get_step("1")  # type: ignore[arg-type]


def test_count(engine: fk.Engine, population: dict[str, int]) -> None:
    assert engine.count() == {"ready": 4, "done": 0, "failed": 1}
    assert engine.count(fk.Search(name="beta")) == {"ready": 2, "done": 0, "failed": 0}
    assert engine.count(fk.Search(name="gamma")) == {"ready": 0, "done": 0, "failed": 1}
    assert engine.count(fk.Search(search_key="k:%")) == {"ready": 2, "done": 0, "failed": 0}
    assert engine.count(fk.Search(name="nobody")) == {"ready": 0, "done": 0, "failed": 0}


# -- activate ------------------------------------------------------------------------------------


def test_activate_makes_a_ready_step_due_now(engine: fk.Engine) -> None:
    seen: list[Any] = []

    @engine.step("later")
    def later(step: fk.StepContext) -> None:
        seen.append(step.activation_args)

    step_id = engine.add_step(fk.Step("later", run_at=datetime.now(UTC) + timedelta(days=30)))
    engine.run(workers=1, until_idle=True)
    assert seen == []
    assert engine.activate(step_id, {"reason": "now"}) is True
    record = engine.get_step(step_id)
    assert record.run_at <= datetime.now(UTC)
    assert record.activation_args == {"reason": "now"}
    engine.run(workers=1, until_idle=True)
    assert seen == [{"reason": "now"}]
    assert engine.get_step(step_id).queue == "done"
    # A step that left the ready queue is not activated.
    assert engine.activate(step_id) is False


def test_activate_an_unknown_or_failed_step(engine: fk.Engine) -> None:
    step_id = engine.add_step(fk.Step("x"))
    engine.fail_steps(fk.Search(id=step_id))
    assert engine.activate(step_id) is False
    with pytest.raises(fk.StepNotFound, match=str(step_id + 1)):
        engine.activate(step_id + 1)
    with pytest.raises(fk.InvalidArgument, match="step id must be an int"):
        engine.activate("1")  # type: ignore[arg-type]
    with pytest.raises(fk.InvalidArgument, match="activation args must be JSON"):
        engine.activate(step_id, {1, 2})


def test_activate_does_not_touch_a_leased_step(engine: fk.Engine) -> None:
    from flowkeeper.storage.tables import steps_ready

    step_id = engine.add_step(fk.Step("x"))
    until = datetime.now(UTC) + timedelta(minutes=1)
    with engine.database.begin() as conn:
        conn.execute(
            steps_ready.update()
            .where(steps_ready.c.id == step_id)
            .values(locked_by="w", locked_until=until, available_at=until)
        )
    assert engine.activate(step_id, "args") is False
    assert engine.get_step(step_id).activation_args is None


# -- reexecute -----------------------------------------------------------------------------------


def test_reexecute_copies_failed_steps_back_to_ready(engine: fk.Engine) -> None:
    @engine.step("boom")
    def boom(step: fk.StepContext) -> fk.Outcome:
        return step.fail("it broke")

    original = engine.add_step(
        fk.Step(
            "boom", UNICODE_STATE, flow_id="f", correlation_id="c", search_key="k", description="d"
        )
    )
    engine.run(workers=1, until_idle=True)
    old = engine.get_step(original)
    assert old.queue == "failed"
    assert old.execution_count == 1

    (copy_id,) = engine.reexecute(fk.Search(name="boom"))
    assert copy_id > original
    copy = engine.get_step(copy_id)
    assert copy.queue == "ready"
    assert copy.state == UNICODE_STATE
    assert (copy.flow_id, copy.correlation_id, copy.search_key) == ("f", "c", "k")
    assert copy.execution_count == 0
    assert copy.description is not None
    assert str(original) in copy.description
    assert "re-execution" in copy.description
    assert copy.run_at <= datetime.now(UTC)
    assert copy.created_at > old.created_at
    assert engine.get_step(original) == old  # the original stays
    assert engine.count() == {"ready": 1, "done": 0, "failed": 1}


def test_reexecute_done_steps_only_when_asked(engine: fk.Engine) -> None:
    @engine.step("ok")
    def ok(step: fk.StepContext) -> None:
        return None

    done_id, failed_id = engine.add_steps(fk.Step("ok", [1]), fk.Step("bad", [2]))
    engine.fail_steps(fk.Search(id=failed_id))
    engine.run(workers=1, until_idle=True)
    assert engine.get_step(done_id).queue == "done"

    assert engine.reexecute(fk.Search(name="ok")) == []  # default: failed only
    (copy,) = engine.reexecute(fk.Search(name="ok"), queues=["done"])
    assert engine.get_step(copy).state == [1]
    both = engine.reexecute(fk.Search(), queues=("done", "failed"))
    assert len(both) == 2
    assert sorted(engine.get_step(i).state[0] for i in both) == [1, 2]
    # The same queue twice copies nothing twice.
    assert len(engine.reexecute(fk.Search(name="bad"), queues=["failed", "failed"])) == 1


def test_reexecute_refuses_the_ready_queue(engine: fk.Engine) -> None:
    with pytest.raises(fk.InvalidArgument, match="unknown queue 'ready'"):
        engine.reexecute(fk.Search(), queues=["ready"])
    with pytest.raises(fk.InvalidArgument, match=r"fk\.Search"):
        engine.reexecute(None)  # type: ignore[arg-type]


def test_reexecute_keeps_singletons_single(engine: fk.Engine) -> None:
    first = engine.add_step(fk.Step("tick", singleton=True))
    engine.fail_steps(fk.Search(id=first))
    second = engine.add_step(fk.Step("tick", singleton=True))
    with pytest.raises(fk.SingletonExists):
        engine.reexecute(fk.Search(name="tick"))
    engine.fail_steps(fk.Search(id=second))
    with pytest.raises(fk.SingletonExists):  # two failed copies, one allowed
        engine.reexecute(fk.Search(name="tick"))
    (copy,) = engine.reexecute(fk.Search(id=first))
    assert engine.get_step(copy).singleton is True


# -- fail_steps -----------------------------------------------------------------------------------


def test_fail_steps_moves_matching_ready_steps(engine: fk.Engine) -> None:
    ids = engine.add_steps(
        fk.Step("a", {"n": 1}, search_key="x"), fk.Step("a", search_key="y"), fk.Step("b")
    )
    before = engine.get_step(ids[0])
    assert engine.fail_steps(fk.Search(name="a"), "stopped by ops") == ids[:2]
    assert engine.count() == {"ready": 1, "done": 0, "failed": 2}
    failed = engine.get_step(ids[0])
    assert failed.queue == "failed"
    assert failed.description == "stopped by ops"
    assert failed.state == {"n": 1}
    assert (failed.id, failed.created_at, failed.run_at) == (
        before.id,
        before.created_at,
        before.run_at,
    )
    assert failed.search_key == "x"
    assert engine.fail_steps(fk.Search(name="a")) == []  # failed steps are not ready


def test_fail_steps_default_description(engine: fk.Engine) -> None:
    step_id = engine.add_step(fk.Step("a"))
    engine.fail_steps(fk.Search(id=step_id))
    description = engine.get_step(step_id).description
    assert description is not None
    assert "failed by an operator" in description


def test_fail_steps_refuses_an_empty_search(engine: fk.Engine) -> None:
    engine.add_step(fk.Step("a"))
    with pytest.raises(fk.InvalidArgument, match="at least one field"):
        engine.fail_steps(fk.Search())
    with pytest.raises(fk.InvalidArgument, match="description must be a string"):
        engine.fail_steps(fk.Search(name="a"), 5)  # type: ignore[arg-type]
    assert engine.count()["ready"] == 1


def test_a_failed_step_cannot_be_completed_by_its_worker(engine: fk.Engine) -> None:
    """fail_steps while a worker runs the step: the worker's outcome is not written."""
    started = threading.Event()
    release = threading.Event()

    @engine.step("slow")
    def slow(step: fk.StepContext) -> None:
        started.set()
        release.wait(10)

    step_id = engine.add_step(fk.Step("slow"))
    runner = threading.Thread(target=lambda: engine.run(workers=1, until_idle=True))
    runner.start()
    assert started.wait(10)
    assert engine.fail_steps(fk.Search(id=step_id), "cancelled") == [step_id]
    release.set()
    runner.join(10)
    assert engine.count() == {"ready": 0, "done": 0, "failed": 1}
    assert engine.get_step(step_id).description == "cancelled"


# -- ids -------------------------------------------------------------------------------------------


def test_ids_are_never_reused(engine: fk.Engine) -> None:
    @engine.step("ok")
    def ok(step: fk.StepContext) -> None:
        return None

    first = engine.add_step(fk.Step("ok"))
    engine.run(workers=1, until_idle=True)
    assert engine.count() == {"ready": 0, "done": 1, "failed": 0}
    second = engine.add_step(fk.Step("x"))
    assert second > first
    engine.fail_steps(fk.Search(id=second))
    assert engine.count()["ready"] == 0
    third = engine.add_step(fk.Step("x"))
    assert third > second
    copies = engine.reexecute(fk.Search(), ("done", "failed"))
    assert min(copies) > third
