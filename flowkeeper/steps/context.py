"""What a step implementation receives (:class:`StepContext`) and returns (:class:`Outcome`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from flowkeeper.clock import require_aware
from flowkeeper.errors import InvalidArgument
from flowkeeper.steps.model import Step, decode_json, encode_json

OutcomeKind = Literal["done", "failed", "rerun"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a step ended. Build it with ``step.done()``, ``step.fail()`` or ``step.rerun()``."""

    kind: OutcomeKind
    new_steps: tuple[Step, ...] = ()
    description: str | None = None
    state_json: str | None = None
    """For a rerun: the new state as JSON text (None keeps the current state)."""
    run_at: datetime | None = None


def _check_new_steps(new_steps: Sequence[Step]) -> tuple[Step, ...]:
    for item in new_steps:
        if not isinstance(item, Step):
            raise InvalidArgument(f"new steps must be fk.Step values, not {type(item).__name__}")
    return tuple(new_steps)


_KEEP: Any = object()


class StepContext:
    """One execution of one step, as its implementation sees it."""

    __slots__ = (
        "_connection_factory",
        "_state",
        "activation_args",
        "correlation_id",
        "created_by_step_id",
        "execution_count",
        "flow_id",
        "id",
        "name",
        "run_at",
        "search_key",
        "state_json",
        "used_connection",
    )

    def __init__(
        self, row: dict[str, Any], connection_factory: Callable[[], sa.Connection]
    ) -> None:
        self.id: int = row["id"]
        self.name: str = row["name"]
        self.state_json: str | None = row["state"]
        self._state: Any = _KEEP
        self.activation_args: Any = decode_json(row["activation_args"])
        self.flow_id: str | None = row["flow_id"]
        self.correlation_id: str | None = row["correlation_id"]
        self.search_key: str | None = row["search_key"]
        self.execution_count: int = row["execution_count"]
        self.created_by_step_id: int | None = row["created_by_step_id"]
        self.run_at: datetime = row["run_at"]
        self._connection_factory = connection_factory
        self.used_connection: sa.Connection | None = None

    @property
    def state(self) -> Any:
        """The step's state, decoded from JSON (decoded once, on first use)."""
        if self._state is _KEEP:
            self._state = decode_json(self.state_json)
        return self._state

    @property
    def connection(self) -> sa.Connection:
        """The SQLAlchemy connection of the transaction that will record this step's outcome.

        Writes made through it commit together with the outcome and the new steps, or not at
        all: if the worker loses the step's lease, or the step raises, they roll back. Do not
        commit or roll it back yourself.

        The transaction begins on first use and lasts until the step's outcome is written. On
        SQLite it holds the database's one write lock all that time (every other writer waits),
        so write at the end of the step, after any slow work.
        """
        if self.used_connection is None:
            self.used_connection = self._connection_factory()
        return self.used_connection

    def done(self, *new_steps: Step) -> Outcome:
        """Move the step to the done queue; add ``new_steps`` in the same transaction."""
        return Outcome("done", _check_new_steps(new_steps))

    def fail(self, description: str | None = None, *new_steps: Step) -> Outcome:
        """Move the step to the failed queue (never retried); add ``new_steps`` with it."""
        return Outcome("failed", _check_new_steps(new_steps), description=description)

    def rerun(
        self,
        state: Any = _KEEP,
        run_at: datetime | None = None,
        description: str | None = None,
        new_steps: Sequence[Step] = (),
    ) -> Outcome:
        """Keep the step in the ready queue to run again at ``run_at`` (default: now).

        ``state`` replaces the stored state when given.
        """
        state_json = None if state is _KEEP else encode_json(state, f"state of step {self.name!r}")
        when = None if run_at is None else require_aware(run_at, "rerun run_at")
        return Outcome(
            "rerun",
            _check_new_steps(new_steps),
            description=description,
            state_json=state_json,
            run_at=when,
        )

    def __repr__(self) -> str:
        return f"<StepContext id={self.id} name={self.name!r} execution={self.execution_count}>"
