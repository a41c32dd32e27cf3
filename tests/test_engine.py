"""The Engine as a whole: reads beside writers, wake-ups after commit, several runs at once."""

from __future__ import annotations

import threading
import time

import pytest

import flowkeeper as fk
from tests.steps.test_worker import Background, wait_for


def test_a_read_does_not_wait_for_a_step_holding_a_write_transaction(engine: fk.Engine) -> None:
    writing = threading.Event()
    release = threading.Event()

    @engine.step("holds-the-write-lock")
    def holds(step: fk.StepContext) -> None:
        step.connection.exec_driver_sql("UPDATE fk_steps_ready SET description = 'x' WHERE 1 = 0")
        writing.set()
        release.wait(10)

    engine.add_step(fk.Step("holds-the-write-lock"))
    pool = Background(engine, workers=1, max_poll_interval=0.05)
    try:
        assert writing.wait(10)
        started = time.monotonic()
        counts = engine.count()
        found = engine.search(fk.Search(name="holds-the-write-lock"))
        elapsed = time.monotonic() - started
    finally:
        release.set()
        pool.stop()
    assert counts["ready"] == 1
    assert len(found["ready"]) == 1
    assert elapsed < 1.0, f"reads waited {elapsed:.2f} s for the writer"


def test_a_step_added_by_this_process_wakes_its_idle_workers(engine: fk.Engine) -> None:
    started: list[float] = []

    @engine.step("wake-me")
    def wake_me(step: fk.StepContext) -> None:
        started.append(time.monotonic())

    pool = Background(engine, workers=2, max_poll_interval=5.0)
    try:
        time.sleep(1.0)  # every worker has found nothing and backs off towards 5 s
        added = time.monotonic()
        engine.add_step(fk.Step("wake-me"))
        wait_for(lambda: started, timeout=10, what="the step to start")
    finally:
        pool.stop()
    assert started[0] - added < 0.5


def test_stop_stops_every_run_of_the_engine(engine: fk.Engine) -> None:
    first = Background(engine, workers=1, max_poll_interval=0.05)
    second = Background(engine, workers=1, max_poll_interval=0.05)
    # Both runs must have started (a loaded machine may take a while) before stop() is asked.
    wait_for(lambda: len(engine._pools) == 2, timeout=30, what="both runs to start")
    engine.stop()
    first.thread.join(10)
    second.thread.join(10)
    assert not first.thread.is_alive()
    assert not second.thread.is_alive()
    assert first.error is None
    assert second.error is None


def test_step_observers_hear_of_every_step_run_even_when_one_fails(
    engine: fk.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[tuple[str, str]] = []

    def broken(name: str, queue: str, seconds: float) -> None:
        raise RuntimeError("observer bug")

    engine.observe_steps(broken)
    engine.observe_steps(lambda name, queue, seconds: heard.append((name, queue)))
    engine.register_step(["ok"], lambda step: None)
    engine.register_step(["bad"], lambda step: step.fail("no"))
    engine.add_steps(fk.Step("ok"), fk.Step("ok"), fk.Step("bad"), fk.Step("nobody-runs-this"))

    engine.run(workers=2, until_idle=True, handle_signals=False)

    # The step without an implementation here was postponed, not run: no one hears of it.
    assert sorted(heard) == [("bad", "failed"), ("ok", "done"), ("ok", "done")]
    assert caplog.text.count("a step observer failed") == 3
