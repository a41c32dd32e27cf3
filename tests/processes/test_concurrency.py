"""Many threads and two OS processes commanding one process instance at once: they take
turns, exactly one of two conflicting commands moves it, and the history has no gaps."""

from __future__ import annotations

import itertools
import subprocess
import sys

import flowkeeper as fk
from tests.apps.pingpong import ping_pong_scheme, play
from tests.apps.processes import REPO
from tests.concurrency import run_together
from tests.processes.schemes import document_scheme, register_rules


def assert_history_is_whole(engine: fk.Engine, pid: str, moves: int) -> None:
    history = engine.processes.history(pid)
    assert [h.seq for h in history] == list(range(1, moves + 1))
    for earlier, later in itertools.pairwise(history):
        assert earlier.to_activity == later.from_activity  # each move starts where one ended
    process = engine.processes.get(pid)
    assert process.row_version == moves + 1
    expected = "A" if moves % 2 == 0 else "B"
    assert process.activity == expected


def test_one_of_many_conflicting_commands_moves_the_process(engine: fk.Engine) -> None:
    register_rules(engine)
    engine.schemes.save(document_scheme())
    pid = engine.processes.create("Document", parameters={"Author": "alice"})

    results = run_together(lambda: engine.processes.execute(pid, "Submit", identity="alice"), 8)

    executed = [r for r in results if isinstance(r, fk.ExecutionResult)]
    refused = [r for r in results if isinstance(r, fk.CommandNotAvailable)]
    assert len(executed) == 1, results
    assert len(refused) == 7, results
    assert len(engine.processes.history(pid)) == 1


def test_threads_take_turns_on_one_process(engine: fk.Engine) -> None:
    engine.schemes.save(ping_pong_scheme())
    pid = engine.processes.create("PingPong")

    moved = run_together(lambda: play(engine, pid, 25), 6)

    total = sum(m for m in moved if isinstance(m, int))
    assert all(isinstance(m, int) for m in moved), moved
    assert total >= 25  # every round somebody wins
    assert_history_is_whole(engine, pid, total)


def test_two_os_processes_take_turns_on_one_process(engine: fk.Engine, db_url: str) -> None:
    engine.schemes.save(ping_pong_scheme())
    pid = engine.processes.create("PingPong")
    command = [sys.executable, "-m", "tests.apps.pingpong", db_url, pid, "60"]
    racers = [
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=120)[0] for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    total = sum(int(output.strip()) for output in outputs)
    assert total >= 60
    assert_history_is_whole(engine, pid, total)
