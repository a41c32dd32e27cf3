"""Execute Go/Back on one process many times: one of the racing clients of the concurrency
tests, run as its own OS process (``python -m tests.apps.pingpong URL PROCESS_ID COUNT``).

Prints how many of its commands moved the process.
"""

from __future__ import annotations

import contextlib
import sys

import flowkeeper as fk
from flowkeeper.processes.model import Activity, Command, Scheme, Transition, Trigger, TriggerType


def ping_pong_scheme() -> Scheme:
    """A ⇄ B: ``Go`` moves A to B, ``Back`` moves B to A."""
    return Scheme(
        "PingPong",
        activities=(Activity("A", state="A", is_initial=True), Activity("B", state="B")),
        transitions=(
            Transition("A_B", "A", "B", Trigger(TriggerType.COMMAND, "Go")),
            Transition("B_A", "B", "A", Trigger(TriggerType.COMMAND, "Back")),
        ),
        commands=(Command("Go"), Command("Back")),
    )


def play(engine: fk.Engine, pid: str, count: int) -> int:
    """Try ``count`` commands, each chosen from the activity last seen; return how many
    moved the process (the others lost a race and found the other activity)."""
    moved = 0
    for _ in range(count):
        command = "Go" if engine.processes.get(pid).activity == "A" else "Back"
        with contextlib.suppress(fk.CommandNotAvailable):
            moved += engine.processes.execute(pid, command, identity="racer").executed
    return moved


if __name__ == "__main__":
    url, process_id, times = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with fk.Engine(url) as racing_engine:
        print(play(racing_engine, process_id, times))
