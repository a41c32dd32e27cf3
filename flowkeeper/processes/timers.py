"""Process timers as durable steps.

When a process comes to rest on an activity, each timer used by a timer transition leaving
that activity becomes a step named :data:`TIMER_STEP` with its fire time as run time (search
key: the process id; correlation id: the timer's name). Leaving the activity deletes those
steps in the same transaction. A worker that runs one fires the timer transition, if the
process is still where the timer was armed.

A timer marked ``NotOverrideIfExists`` that the new activity uses as well keeps its step
(and so its fire time) when the process moves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from flowkeeper.processes.context import LiveProcess
from flowkeeper.processes.model import Scheme, Timer
from flowkeeper.processes.store import TIMER_STEP, ProcessRows
from flowkeeper.processes.timer_values import next_fire_time
from flowkeeper.steps.model import Step

AddSteps = Callable[[Sequence[Step], sa.Connection], object]


@dataclass(frozen=True)
class TimerState:
    """The state of a timer step."""

    process_id: str
    timer: str
    activity: str

    def to_json(self) -> dict[str, str]:
        return {"process_id": self.process_id, "timer": self.timer, "activity": self.activity}

    @classmethod
    def from_json(cls, data: object) -> TimerState:
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("process_id", "timer", "activity")
        ):
            raise ValueError(f"not the state of a process timer step: {data!r}")
        return cls(data["process_id"], data["timer"], data["activity"])


def timer_steps(process: LiveProcess, timers: Sequence[Timer], now: datetime) -> list[Step]:
    """Steps that fire ``timers`` for ``process`` resting where it is now."""
    return [
        Step(
            TIMER_STEP,
            TimerState(process.id, timer.name, process.activity).to_json(),
            run_at=next_fire_time(timer.type.value, timer.value, now, process.parameters),
            search_key=process.id,
            correlation_id=timer.name,
            tenant_id=process.tenant_id,
            description=f"timer {timer.name!r} of process {process.id}",
        )
        for timer in timers
    ]


def rearm(
    conn: sa.Connection,
    rows: ProcessRows,
    add_steps: AddSteps,
    process: LiveProcess,
    *,
    left: tuple[Scheme, str] | None,
    now: datetime,
    fired: tuple[int, str] | None = None,
) -> None:
    """Cancel the timers of the activity the process ``left`` (scheme and activity; None for
    a new process) and arm those of the one it rests on, in ``conn``'s transaction.

    ``fired``: the id and timer name of the timer step running now; it completes on its own
    and is never kept in place of a new one.
    """
    old = left[0].timers_of(left[1]) if left is not None else ()
    finished = process.scheme.activity(process.activity)
    rests = finished is not None and not finished.is_final
    new = process.scheme.timers_of(process.activity) if rests else ()
    old_names = {t.name for t in old}
    kept = {t.name for t in new if t.not_override_if_exists and t.name in old_names}
    kept.discard(fired[1] if fired else "")
    if old:
        running = fired[0] if fired else None
        rows.cancel_timers(conn, process.id, old_names - kept, keep_step=running)
    steps = timer_steps(process, [t for t in new if t.name not in kept], now)
    if steps:
        add_steps(steps, conn)
