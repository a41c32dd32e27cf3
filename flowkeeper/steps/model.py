"""The values of the steps API: a step to add, a stored step, a search, a retry policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from flowkeeper.clock import require_aware
from flowkeeper.errors import InvalidArgument, InvalidStep
from flowkeeper.storage.tables import NAME_LENGTH

Queue = Literal["ready", "done", "failed"]
QUEUE_NAMES: tuple[Queue, ...] = ("ready", "done", "failed")

MAX_RETRY_DELAY = timedelta(hours=2)


def encode_json(value: Any, what: str) -> str:
    """JSON text for ``value``, or :class:`InvalidStep` saying what is wrong with it."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise InvalidStep(
            f"{what} must be JSON-serialisable (dicts, lists, str, int, float, bool, None; "
            f"no NaN or infinity): {error}"
        ) from None


def decode_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def check_text(value: str | None, what: str, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise InvalidStep(f"{what} is required")
        return
    if not isinstance(value, str):
        raise InvalidStep(f"{what} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise InvalidStep(f"{what} must not be empty")
    if len(value) > NAME_LENGTH:
        raise InvalidStep(
            f"{what} is {len(value)} characters long; the limit is {NAME_LENGTH}: {value[:40]!r}…"
        )


@dataclass(frozen=True, slots=True)
class Step:
    """A step to add: a name that selects the implementation, JSON state, and when to run it.

    Everything is checked here, before any database write: an empty or over-long name or a
    state that is not JSON raises :class:`flowkeeper.InvalidStep` at once.

    >>> Step("v1/orders/fetch", {"id": 7}).name
    'v1/orders/fetch'
    """

    name: str
    state: Any = None
    run_at: datetime | None = field(default=None, kw_only=True)
    singleton: bool = field(default=False, kw_only=True)
    flow_id: str | None = field(default=None, kw_only=True)
    correlation_id: str | None = field(default=None, kw_only=True)
    search_key: str | None = field(default=None, kw_only=True)
    description: str | None = field(default=None, kw_only=True)
    state_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_text(self.name, "step name", required=True)
        check_text(self.flow_id, "flow_id")
        check_text(self.correlation_id, "correlation_id")
        check_text(self.search_key, "search_key")
        if self.description is not None and not isinstance(self.description, str):
            raise InvalidStep("description must be a string")
        if not isinstance(self.singleton, bool):
            raise InvalidStep("singleton must be True or False")
        if self.run_at is not None:
            if not isinstance(self.run_at, datetime):
                raise InvalidStep(f"run_at must be a datetime, not {type(self.run_at).__name__}")
            object.__setattr__(self, "run_at", require_aware(self.run_at, "run_at"))
        object.__setattr__(
            self, "state_json", encode_json(self.state, f"state of step {self.name!r}")
        )


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A step as stored in one of the queues."""

    queue: Queue
    id: int
    name: str
    state: Any
    singleton: bool
    flow_id: str | None
    correlation_id: str | None
    search_key: str | None
    activation_args: Any
    execution_count: int
    run_at: datetime
    created_at: datetime
    created_by_step_id: int | None
    execution_started_at: datetime | None
    execution_duration_ms: int | None
    executed_by: str | None
    description: str | None
    tenant_id: str | None = None
    locked_by: str | None = None
    locked_until: datetime | None = None

    @classmethod
    def from_row(cls, queue: Queue, row: dict[str, Any]) -> StepRecord:
        return cls(
            queue=queue,
            id=int(row["id"]),
            name=row["name"],
            state=decode_json(row["state"]),
            singleton=bool(row["singleton"]),
            flow_id=row["flow_id"],
            correlation_id=row["correlation_id"],
            search_key=row["search_key"],
            activation_args=decode_json(row["activation_args"]),
            execution_count=int(row["execution_count"]),
            run_at=row["run_at"],
            created_at=row["created_at"],
            created_by_step_id=row["created_by_step_id"],
            execution_started_at=row["execution_started_at"],
            execution_duration_ms=row["execution_duration_ms"],
            executed_by=row["executed_by"],
            description=row["description"],
            tenant_id=row["tenant_id"],
            locked_by=row.get("locked_by"),
            locked_until=row.get("locked_until"),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dictionary (times as ISO 8601 strings)."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True, slots=True)
class Search:
    """Which steps an operation applies to. Fields left ``None`` do not filter.

    Text fields match exactly; ``search_key`` and ``description`` also take ``%`` wildcards.
    ``created_from`` is inclusive, ``created_to`` exclusive.
    """

    id: int | None = None
    name: str | None = None
    flow_id: str | None = None
    correlation_id: str | None = None
    search_key: str | None = None
    description: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def __post_init__(self) -> None:
        if self.id is not None and (isinstance(self.id, bool) or not isinstance(self.id, int)):
            raise InvalidArgument(f"Search.id must be an int, not {self.id!r}")
        for name in ("created_from", "created_to"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, require_aware(value, f"Search.{name}"))

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__slots__)


DelaySpec = float | int | timedelta | Callable[[int], float | int | timedelta]


def default_delay(execution_count: int) -> timedelta:
    """``execution_count ** 3`` seconds, at most two hours."""
    return min(timedelta(seconds=execution_count**3), MAX_RETRY_DELAY)


@dataclass(frozen=True, slots=True)
class Retry:
    """How an implementation's steps are retried when it raises.

    ``max_attempts``: after that many executions the step goes to the failed queue with the
    error as its description (``None``: retry for ever). ``delay``: seconds, a ``timedelta``,
    or a function of the execution count (1 after the first failure) returning either;
    by default ``execution_count ** 3`` seconds capped at two hours.

    >>> Retry(max_attempts=3, delay=lambda n: 2 ** n).delay_for(3)
    datetime.timedelta(seconds=8)
    """

    max_attempts: int | None = None
    delay: DelaySpec | None = None

    def __post_init__(self) -> None:
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise InvalidArgument(
                f"Retry.max_attempts must be an int >= 1, not {self.max_attempts!r}"
            )
        if isinstance(self.delay, int | float) and self.delay < 0:
            raise InvalidArgument(f"Retry.delay must not be negative, got {self.delay!r}")

    def delay_for(self, execution_count: int) -> timedelta:
        spec = self.delay
        if spec is None:
            return default_delay(execution_count)
        value = spec(execution_count) if callable(spec) else spec
        result = value if isinstance(value, timedelta) else timedelta(seconds=float(value))
        return max(result, timedelta(0))

    def gives_up_after(self, execution_count: int) -> bool:
        return self.max_attempts is not None and execution_count >= self.max_attempts


DEFAULT_RETRY = Retry()
