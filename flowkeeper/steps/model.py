"""The values of the steps API: a step to add, a stored step, a search, a retry policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from flowkeeper.clock import require_aware
from flowkeeper.errors import InvalidArgument, InvalidStep
from flowkeeper.storage.tables import NAME_LENGTH

Queue = Literal["ready", "done", "failed"]
QUEUE_NAMES: tuple[Queue, ...] = ("ready", "done", "failed")

MAX_RETRY_DELAY = timedelta(hours=2)


_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)
"""One encoder for every state: ``json.dumps`` with options builds a new one per call."""


def encode_json(value: Any, what: str) -> str:
    """JSON text for ``value``, or :class:`InvalidStep` saying what is wrong with it.

    Text stays readable (no ``\\u`` escapes) unless it holds a lone surrogate, which no
    database stores as UTF-8: then the whole document is ASCII with escapes, which decodes to
    the same value.
    """
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as error:
        reason = "it is nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise InvalidStep(
            f"{what} must be JSON-serialisable (dicts, lists, str, int, float, bool, None; "
            f"no NaN or infinity): {reason}"
        ) from None
    if not _is_utf8(text):
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=True)
    return text


def _is_utf8(text: str) -> bool:
    if text.isascii():  # the common case, without encoding a copy
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def check_text(
    value: str | None,
    what: str,
    *,
    required: bool = False,
    limit: int | None = NAME_LENGTH,
    error: type[InvalidArgument] = InvalidStep,
) -> None:
    """Refuse what the database could not store as given: not a string, too long, NUL, …"""
    if value is None:
        if required:
            raise error(f"{what} is required")
        return
    if not isinstance(value, str):
        raise error(f"{what} must be a string, not {type(value).__name__}")
    if required and (not value or value.isspace()):
        raise error(f"{what} must not be empty (nor only white space)")
    if limit is not None and len(value) > limit:
        raise error(
            f"{what} is {len(value)} characters long; the limit is {limit}: {value[:40]!r}…"
        )
    if "\x00" in value:
        raise error(f"{what} must not contain NUL characters (\\x00): {value[:40]!r}")
    if not _is_utf8(value):
        raise error(
            f"{what} must be valid Unicode text (it holds a lone surrogate, which no database "
            f"stores): {value[:40]!r}"
        )


EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def check_time(value: Any, what: str, error: type[InvalidArgument] = InvalidStep) -> datetime:
    """``value`` as an aware UTC datetime that every supported database can store."""
    if not isinstance(value, datetime):
        raise error(f"{what} must be a datetime, not {type(value).__name__}")
    outside = error(
        f"{what} must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC), "
        f"not {value.isoformat()}"
    )
    try:
        result = require_aware(value, what)
    except OverflowError:
        raise outside from None
    if not EARLIEST <= result <= LATEST:
        raise outside
    return result


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
    tenant_id: str | None = field(default=None, kw_only=True)
    """The tenant the step belongs to; ``None`` (or ``""``): the default tenant, or the
    parent's tenant for a step added by a running step."""
    state_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_text(self.name, "step name", required=True)
        # Most steps leave these out: no call for them (steps are made by the thousand).
        if self.flow_id is not None:
            check_text(self.flow_id, "flow_id")
        if self.correlation_id is not None:
            check_text(self.correlation_id, "correlation_id")
        if self.search_key is not None:
            check_text(self.search_key, "search_key")
        if self.description is not None:
            check_text(self.description, "description", limit=None)
        if self.tenant_id is not None:
            check_text(self.tenant_id, "tenant_id")
        if self.tenant_id == "":
            object.__setattr__(self, "tenant_id", None)
        if not isinstance(self.singleton, bool):
            raise InvalidStep("singleton must be True or False")
        if self.run_at is not None:
            object.__setattr__(self, "run_at", check_time(self.run_at, "run_at"))
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


MAX_ID = 2**63 - 1
"""The largest step id any database can hold (a signed 64-bit integer)."""


def check_id(value: object, what: str = "step id") -> int:
    """A step id: an int from 1 to :data:`MAX_ID` (ids start at 1 on every database)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, not {value!r}")
    if not 1 <= value <= MAX_ID:
        raise InvalidArgument(f"{what} must be between 1 and 2**63-1 (step ids are), not {value}")
    return value


SEARCH_TEXT_FIELDS = ("name", "flow_id", "correlation_id", "search_key", "description")


@dataclass(frozen=True, slots=True)
class Search:
    """Which steps an operation applies to. Fields left ``None`` do not filter.

    Text fields match exactly; ``search_key`` and ``description`` also take ``%`` wildcards.
    ``created_from`` is inclusive, ``created_to`` exclusive. ``tenant_id`` matches the steps
    of one tenant (``""``: the default tenant, steps added without one); ``after_id`` only
    steps with a greater id (to page through a listing).
    """

    id: int | None = None
    name: str | None = None
    flow_id: str | None = None
    correlation_id: str | None = None
    search_key: str | None = None
    description: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    tenant_id: str | None = None
    after_id: int | None = None

    def __post_init__(self) -> None:
        if self.id is not None:
            check_id(self.id, "Search.id")
        if self.after_id is not None and self.after_id != 0:
            check_id(self.after_id, "Search.after_id")
        for name in SEARCH_TEXT_FIELDS:
            check_text(getattr(self, name), f"Search.{name}", limit=None, error=InvalidArgument)
        check_text(self.tenant_id, "Search.tenant_id", error=InvalidArgument)
        for name in ("created_from", "created_to"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_time(value, f"Search.{name}", InvalidArgument))

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
        delay = self.delay
        if delay is None or callable(delay):
            return
        if isinstance(delay, bool) or not isinstance(delay, int | float | timedelta):
            raise InvalidArgument(
                "Retry.delay must be seconds, a timedelta or a function of the execution "
                f"count, not {delay!r}"
            )
        if (delay < timedelta(0)) if isinstance(delay, timedelta) else (delay < 0):
            raise InvalidArgument(f"Retry.delay must not be negative, got {delay!r}")

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
