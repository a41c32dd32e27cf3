"""What a step's implementation returns or raises, and what becomes of the step.

Every test runs real workers (``engine.run(until_idle=True)``) against a real database and
reads the queues back through the public API.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import flowkeeper as fk
from flowkeeper.storage.step_queries import StepQueries


def run_idle(engine: fk.Engine, workers: int = 2) -> fk.RunStats:
    return engine.run(workers=workers, until_idle=True, handle_signals=False)


def only(engine: fk.Engine, queue: str, name: str | None = None) -> fk.StepRecord:
    records = engine.search(fk.Search(name=name), queues=[queue])[queue]
    assert len(records) == 1, records
    return records[0]


def assert_near(actual: datetime, expected: datetime, tolerance: float = 2.0) -> None:
    assert abs((actual - expected).total_seconds()) <= tolerance, (actual, expected)


def test_each_step_of_a_batch_sees_its_own_run_at(engine: fk.Engine) -> None:
    """A batch of steps due at a few shared times and some of their own: each step is told
    the time it was due (a claim parses each distinct time once and shares it)."""
    base = datetime.now(UTC).replace(microsecond=123456) - timedelta(hours=1)
    shared = [base + timedelta(minutes=m) for m in (1, 2, 3)]
    run_ats = [shared[i % 3] for i in range(30)] + [base + timedelta(seconds=i) for i in range(7)]
    ids = engine.add_steps(*[fk.Step("due", i, run_at=at) for i, at in enumerate(run_ats)])
    seen: dict[int, datetime] = {}

    @engine.step("due")
    def due(step: fk.StepContext) -> None:
        seen[step.id] = step.run_at

    run_idle(engine, workers=1)

    assert seen == dict(zip(ids, run_ats, strict=True))
    assert all(at.tzinfo is UTC for at in seen.values())


# -- done ------------------------------------------------------------------------------------


def test_returning_none_means_done(engine: fk.Engine) -> None:
    seen: list[Any] = []

    @engine.step("plain")
    def plain(step: fk.StepContext) -> None:
        seen.append((step.name, step.state, step.execution_count, step.created_by_step_id))

    step_id = engine.add_step(fk.Step("plain", {"a": [1, 2]}, description="kept"))
    stats = run_idle(engine)

    assert seen == [("plain", {"a": [1, 2]}, 1, None)]
    assert (stats.executed, stats.done, stats.failed, stats.rescheduled) == (1, 1, 0, 0)
    assert engine.count() == {"ready": 0, "done": 1, "failed": 0}
    record = engine.get_step(step_id)
    assert record.queue == "done"
    assert record.execution_count == 1
    assert record.execution_started_at is not None
    assert record.execution_duration_ms is not None
    assert record.execution_duration_ms >= 0
    assert record.executed_by
    assert record.description == "kept"


def test_done_adds_children_that_inherit_flow_and_correlation(engine: fk.Engine) -> None:
    @engine.step("parent")
    def parent(step: fk.StepContext) -> fk.Outcome:
        return step.done(
            fk.Step("child", {"n": 1}),
            fk.Step("child", {"n": 2}, flow_id="own-flow", correlation_id="own-corr"),
            fk.Step("later", run_at=datetime.now(UTC) + timedelta(hours=1), search_key="k"),
        )

    children: list[tuple[Any, str | None, str | None, int | None]] = []

    @engine.step("child")
    def child(step: fk.StepContext) -> None:
        children.append(
            (step.state["n"], step.flow_id, step.correlation_id, step.created_by_step_id)
        )

    parent_id = engine.add_step(fk.Step("parent", flow_id="flow-1", correlation_id="corr-1"))
    run_idle(engine)

    assert sorted(children) == [
        (1, "flow-1", "corr-1", parent_id),
        (2, "own-flow", "own-corr", parent_id),
    ]
    assert engine.count() == {"ready": 1, "done": 3, "failed": 0}
    later = only(engine, "ready", "later")
    assert (later.flow_id, later.correlation_id, later.created_by_step_id) == (
        "flow-1",
        "corr-1",
        parent_id,
    )
    assert later.search_key == "k"
    assert later.execution_count == 0


def test_a_step_without_flow_id_gets_one_and_passes_it_on(engine: fk.Engine) -> None:
    @engine.step("root")
    def root(step: fk.StepContext) -> fk.Outcome:
        return step.done(fk.Step("leaf"))

    engine.register_step(["leaf"], lambda step: None)
    root_id = engine.add_step(fk.Step("root"))
    run_idle(engine)

    root_record = engine.get_step(root_id)
    leaf = only(engine, "done", "leaf")
    assert root_record.flow_id
    assert leaf.flow_id == root_record.flow_id
    assert leaf.correlation_id is None
    assert leaf.created_by_step_id == root_id


def test_new_flow_ids_are_uuid7_and_sort_in_the_order_they_were_made(engine: fk.Engine) -> None:
    first = engine.add_steps(*[fk.Step("a") for _ in range(20)])
    time.sleep(0.002)
    second = engine.add_step(fk.Step("a"))
    flows = [str(engine.get_step(i).flow_id) for i in [*first, second]]
    assert len(set(flows)) == 21
    for flow in flows:
        assert len(flow) == 32
        assert uuid.UUID(flow).version == 7
    assert max(flows[:20]) < flows[20]  # a later millisecond sorts after every earlier id


# -- failed ----------------------------------------------------------------------------------


def test_step_fail_moves_to_failed_with_new_steps_and_is_never_retried(engine: fk.Engine) -> None:
    calls: list[int] = []

    @engine.step("fails", retry=fk.Retry(max_attempts=5, delay=0))
    def fails(step: fk.StepContext) -> fk.Outcome:
        calls.append(step.id)
        return step.fail("out of stock", fk.Step("compensate", {"why": "stock"}))

    engine.register_step(["compensate"], lambda step: None)
    step_id = engine.add_step(fk.Step("fails", correlation_id="order-9"))
    stats = run_idle(engine)

    assert calls == [step_id]
    assert (stats.failed, stats.done) == (1, 1)
    record = engine.get_step(step_id)
    assert record.queue == "failed"
    assert record.description == "out of stock"
    compensate = only(engine, "done", "compensate")
    assert compensate.created_by_step_id == step_id
    assert compensate.correlation_id == "order-9"
    assert compensate.state == {"why": "stock"}


def test_raise_fail_step_moves_to_failed_with_new_steps(engine: fk.Engine) -> None:
    calls: list[int] = []

    @engine.step("raises-fail")
    async def raises_fail(step: fk.StepContext) -> None:
        calls.append(step.id)
        raise fk.FailStep("card declined", new_steps=[fk.Step("notify", run_at=far_future())])

    step_id = engine.add_step(fk.Step("raises-fail"))
    run_idle(engine)

    assert calls == [step_id]
    record = engine.get_step(step_id)
    assert (record.queue, record.description) == ("failed", "card declined")
    assert only(engine, "ready", "notify").created_by_step_id == step_id


def test_fail_without_description_still_fails(engine: fk.Engine) -> None:
    @engine.step("bare-fail")
    def bare_fail(step: fk.StepContext) -> None:
        raise fk.FailStep()

    step_id = engine.add_step(fk.Step("bare-fail"))
    run_idle(engine)

    record = engine.get_step(step_id)
    assert record.queue == "failed"
    assert record.description


def test_a_singleton_may_schedule_its_own_next_run(engine: fk.Engine) -> None:
    """The scheduler pattern: a singleton step ends by adding the next one of its name. The
    finished one leaves the ready queue in the same transaction, so the two never clash."""
    runs: list[int] = []

    @engine.step("nightly")
    def nightly(step: fk.StepContext) -> fk.Outcome:
        runs.append(step.id)
        return step.done(fk.Step("nightly", singleton=True, run_at=far_future()))

    first = engine.add_step(fk.Step("nightly", singleton=True))
    run_idle(engine)

    assert runs == [first]
    assert engine.get_step(first).queue == "done"
    following = only(engine, "ready", "nightly")
    assert following.singleton
    assert following.created_by_step_id == first
    with pytest.raises(fk.SingletonExists):
        engine.add_step(fk.Step("nightly", singleton=True))


# -- rerun -----------------------------------------------------------------------------------


def test_rerun_keeps_the_step_ready_with_new_state(engine: fk.Engine) -> None:
    when = far_future()

    @engine.step("poll")
    def poll(step: fk.StepContext) -> fk.Outcome:
        return step.rerun(
            state={"page": step.state["page"] + 1},
            run_at=when,
            description="waiting for page 2",
            new_steps=[fk.Step("page-done", {"page": step.state["page"]})],
        )

    engine.register_step(["page-done"], lambda step: None)
    step_id = engine.add_step(fk.Step("poll", {"page": 1}))
    stats = run_idle(engine)

    assert stats.rescheduled == 1
    record = engine.get_step(step_id)
    assert record.queue == "ready"
    assert record.state == {"page": 2}
    assert_near(record.run_at, when, 0.01)
    assert record.description == "waiting for page 2"
    assert record.execution_count == 1
    assert record.locked_by is None
    assert record.executed_by
    assert only(engine, "done", "page-done").state == {"page": 1}


def test_rerun_without_arguments_runs_again_now_with_the_same_state(engine: fk.Engine) -> None:
    runs: list[tuple[int, Any]] = []

    @engine.step("again")
    def again(step: fk.StepContext) -> fk.Outcome | None:
        runs.append((step.execution_count, step.state))
        return step.rerun() if step.execution_count < 3 else None

    step_id = engine.add_step(fk.Step("again", {"keep": True}))
    run_idle(engine)

    assert runs == [(1, {"keep": True}), (2, {"keep": True}), (3, {"keep": True})]
    assert engine.get_step(step_id).queue == "done"


# -- retry -----------------------------------------------------------------------------------


def test_an_exception_retries_after_execution_count_cubed_seconds(engine: fk.Engine) -> None:
    @engine.step("flaky")
    def flaky(step: fk.StepContext) -> None:
        raise ValueError(f"boom {step.execution_count}")

    step_id = engine.add_step(fk.Step("flaky", {"x": 1}))
    run_idle(engine)

    first = engine.get_step(step_id)
    assert first.queue == "ready"
    assert first.execution_count == 1
    assert first.locked_by is None
    assert first.state == {"x": 1}
    assert first.execution_started_at is not None
    assert_near(first.run_at, first.execution_started_at + timedelta(seconds=1), 0.5)
    assert first.description is not None
    assert "ValueError: boom 1" in first.description
    assert "Traceback" in first.description

    # Make it due now, run it again: the second failure waits 2**3 = 8 seconds.
    assert engine.activate(step_id)
    run_idle(engine)
    second = engine.get_step(step_id)
    assert second.execution_count == 2
    assert second.execution_started_at is not None
    assert_near(second.run_at, second.execution_started_at + timedelta(seconds=8), 0.5)
    assert second.description is not None
    assert "ValueError: boom 2" in second.description


def test_retry_max_attempts_fails_after_the_last_attempt(engine: fk.Engine) -> None:
    attempts: list[int] = []

    @engine.step("doomed", retry=fk.Retry(max_attempts=3, delay=0))
    def doomed(step: fk.StepContext) -> None:
        attempts.append(step.execution_count)
        raise RuntimeError(f"attempt {step.execution_count} broke")

    step_id = engine.add_step(fk.Step("doomed"))
    stats = run_idle(engine)

    assert attempts == [1, 2, 3]
    assert (stats.rescheduled, stats.failed) == (2, 1)
    record = engine.get_step(step_id)
    assert record.queue == "failed"
    assert record.execution_count == 3
    assert record.description is not None
    assert "RuntimeError: attempt 3 broke" in record.description
    assert "3 attempts" in record.description


def test_attempts_cut_short_by_dead_workers_count_towards_max_attempts(
    engine: fk.Engine,
) -> None:
    calls: list[int] = []

    @engine.step("crashes-workers", retry=fk.Retry(max_attempts=2))
    def crashes_workers(step: fk.StepContext) -> None:
        calls.append(step.id)

    step_id = engine.add_step(fk.Step("crashes-workers"))
    queries = StepQueries(engine.kind)
    for worker in ("dead-1", "dead-2"):  # each claims it, then dies; the lease ends at once
        now = datetime.now(UTC)
        with engine.database.begin() as connection:
            assert [r["id"] for r in queries.claim(connection, worker, now, now, 10)] == [step_id]
    run_idle(engine)

    assert calls == []  # a third execution would exceed max_attempts: it is not started
    record = engine.get_step(step_id)
    assert (record.queue, record.execution_count) == ("failed", 3)
    assert record.description is not None
    assert "2 executions ended without an outcome" in record.description
    assert "max_attempts is 2" in record.description


def test_retry_delay_may_be_a_function_of_the_execution_count(engine: fk.Engine) -> None:
    asked: list[int] = []

    def delay(count: int) -> timedelta:
        asked.append(count)
        return timedelta(minutes=10 * count)

    @engine.step("slow-retry", retry=fk.Retry(delay=delay))
    def slow_retry(step: fk.StepContext) -> None:
        raise OSError("network down")

    step_id = engine.add_step(fk.Step("slow-retry"))
    run_idle(engine)
    assert engine.activate(step_id)
    run_idle(engine)

    assert asked == [1, 2]
    record = engine.get_step(step_id)
    assert record.execution_started_at is not None
    assert_near(record.run_at, record.execution_started_at + timedelta(minutes=20))
    assert record.description is not None
    assert "OSError: network down" in record.description


def test_a_broken_retry_delay_falls_back_to_the_default_and_spares_the_worker(
    engine: fk.Engine,
) -> None:
    def broken_delay(count: int) -> float:
        return 1 / 0

    @engine.step("bad-policy", retry=fk.Retry(delay=broken_delay))
    def bad_policy(step: fk.StepContext) -> None:
        raise ValueError("the step's own error")

    engine.register_step(["fine"], lambda step: None)
    step_id = engine.add_step(fk.Step("bad-policy"))
    engine.add_steps(*(fk.Step("fine") for _ in range(5)))
    stats = run_idle(engine, workers=1)

    assert (stats.done, stats.rescheduled) == (5, 1)
    record = engine.get_step(step_id)
    assert (record.queue, record.locked_by) == ("ready", None)
    assert record.execution_started_at is not None
    assert_near(record.run_at, record.execution_started_at + timedelta(seconds=1), 0.5)
    assert record.description is not None
    assert "Retry.delay failed with ZeroDivisionError" in record.description
    assert "ValueError: the step's own error" in record.description


def test_an_exception_that_cannot_be_printed_is_still_retried(engine: fk.Engine) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text for you")

    @engine.step("unprintable")
    def unprintable(step: fk.StepContext) -> None:
        raise Unprintable

    step_id = engine.add_step(fk.Step("unprintable"))
    engine.add_step(fk.Step("unprintable", run_at=far_future()))
    assert run_idle(engine, workers=1).rescheduled == 1

    record = engine.get_step(step_id)
    assert (record.queue, record.execution_count) == ("ready", 1)
    assert record.description is not None
    assert "Unprintable: <the exception's str() failed>" in record.description


def test_returning_a_wrong_type_fails_the_step_with_a_clear_description(
    engine: fk.Engine,
) -> None:
    @engine.step("confused")
    def confused(step: fk.StepContext) -> Any:
        return {"status": "ok"}

    step_id = engine.add_step(fk.Step("confused"))
    run_idle(engine)

    record = engine.get_step(step_id)
    assert record.queue == "failed"
    assert record.description is not None
    assert "'confused'" in record.description
    assert "returned dict" in record.description
    assert "step.done()" in record.description


def test_an_invalid_new_step_is_an_error_of_the_step(engine: fk.Engine) -> None:
    @engine.step("bad-child", retry=fk.Retry(max_attempts=1))
    def bad_child(step: fk.StepContext) -> fk.Outcome:
        return step.done("not a step")  # type: ignore[arg-type]

    step_id = engine.add_step(fk.Step("bad-child"))
    run_idle(engine)

    record = engine.get_step(step_id)
    assert record.queue == "failed"
    assert record.description is not None
    assert "fk.Step" in record.description
    assert engine.count()["ready"] == 0


# -- kinds of implementation -----------------------------------------------------------------


def test_async_and_sync_implementations_run_side_by_side(engine: fk.Engine) -> None:
    ran: list[tuple[str, int]] = []
    lock = threading.Lock()

    @engine.step("async")
    async def run_async(step: fk.StepContext) -> fk.Outcome:
        await asyncio.sleep(0.001)
        with lock:
            ran.append(("async", step.state))
        return step.done(fk.Step("sync", step.state))

    @engine.step("sync")
    def run_sync(step: fk.StepContext) -> None:
        with lock:
            ran.append(("sync", step.state))

    @engine.step("async-fails", retry=fk.Retry(max_attempts=1))
    async def async_fails(step: fk.StepContext) -> None:
        await asyncio.sleep(0)
        raise KeyError("missing")

    engine.add_steps(*(fk.Step("async", i) for i in range(10)), fk.Step("async-fails"))
    run_idle(engine, workers=3)

    assert sorted(ran) == sorted(
        [("async", i) for i in range(10)] + [("sync", i) for i in range(10)]
    )
    failed = only(engine, "failed", "async-fails")
    assert failed.description is not None
    assert "KeyError" in failed.description
    assert engine.count() == {"ready": 0, "done": 20, "failed": 1}


def test_an_implementation_returning_an_awaitable_is_awaited(engine: fk.Engine) -> None:
    class Handler:
        async def __call__(self, step: fk.StepContext) -> fk.Outcome:
            await asyncio.sleep(0)
            return step.fail("from a callable object")

    engine.register_step(["object"], Handler())
    step_id = engine.add_step(fk.Step("object"))
    run_idle(engine)

    record = engine.get_step(step_id)
    assert (record.queue, record.description) == ("failed", "from a callable object")


def test_one_implementation_serves_several_names(engine: fk.Engine) -> None:
    names: list[str] = []

    @engine.step("v1/greet", "v0/greet")
    def greet(step: fk.StepContext) -> None:
        names.append(step.name)

    engine.add_steps(fk.Step("v0/greet"), fk.Step("v1/greet"))
    run_idle(engine, workers=1)

    assert sorted(names) == ["v0/greet", "v1/greet"]
    assert engine.count() == {"ready": 0, "done": 2, "failed": 0}


def test_a_step_without_implementation_is_postponed_not_failed(engine: fk.Engine) -> None:
    engine.register_step(["known"], lambda step: None)
    step_id = engine.add_step(fk.Step("v2/unknown", {"keep": 1}))
    engine.add_step(fk.Step("known"))
    before = datetime.now(UTC)
    run_idle(engine)

    record = engine.get_step(step_id)
    assert record.queue == "ready"
    assert record.locked_by is None
    assert record.execution_count == 0
    assert record.state == {"keep": 1}
    assert_near(record.run_at, before + timedelta(hours=1), 5)
    assert record.description is not None
    assert "no implementation of 'v2/unknown'" in record.description
    assert "postponed" in record.description
    assert engine.count() == {"ready": 1, "done": 1, "failed": 0}


def test_the_postponement_of_unknown_steps_is_configurable(db_url: str) -> None:
    with fk.Engine(db_url, unknown_step_delay=timedelta(minutes=5)) as engine:
        step_id = engine.add_step(fk.Step("nobody"))
        before = datetime.now(UTC)
        run_idle(engine)
        assert_near(engine.get_step(step_id).run_at, before + timedelta(minutes=5), 5)


# -- activation ------------------------------------------------------------------------------


def test_activate_runs_a_future_step_now_with_its_arguments(engine: fk.Engine) -> None:
    seen: list[Any] = []

    @engine.step("wait-for-payment")
    def wait(step: fk.StepContext) -> None:
        seen.append(step.activation_args)

    step_id = engine.add_step(fk.Step("wait-for-payment", run_at=far_future()))
    run_idle(engine)
    assert seen == []
    assert engine.get_step(step_id).queue == "ready"

    assert engine.activate(step_id, {"paid": 42.5, "by": ["card"]}) is True
    run_idle(engine)

    assert seen == [{"paid": 42.5, "by": ["card"]}]
    record = engine.get_step(step_id)
    assert record.queue == "done"
    assert record.activation_args == {"paid": 42.5, "by": ["card"]}
    assert engine.activate(step_id) is False
    with pytest.raises(fk.StepNotFound):
        engine.activate(step_id + 1000)


def far_future() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)
