"""What every ``flowkeeper`` command shares: options, output, error reporting, filters."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from flowkeeper.errors import FlowkeeperError, InvalidArgument, NaiveDatetimeError
from flowkeeper.steps.model import Search
from flowkeeper.storage.database import URL_ENVIRONMENT_VARIABLE


def make_console(stderr: bool = False) -> Console:
    """A console for humans; at least 120 columns wide when not a terminal (pipes, files)."""
    made = Console(stderr=stderr)
    if not made.is_terminal:
        made.width = max(made.width, 120)
    return made


console = make_console()
errors = make_console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        help=f"Database URL (default: ${URL_ENVIRONMENT_VARIABLE}, else sqlite:///flowkeeper.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class QueueChoice(StrEnum):
    """A step queue, as the command line names it."""

    ready = "ready"
    done = "done"
    failed = "failed"


class FinishedQueue(StrEnum):
    """A queue that steps can be re-executed from."""

    done = "done"
    failed = "failed"


# The filters of every fk.Search field, shared by list, count, reexecute and fail.
IdFilter = Annotated[int | None, typer.Option("--id", help="Only the step with this id.")]
NameFilter = Annotated[str | None, typer.Option("--name", help="Step name (exact).")]
FlowFilter = Annotated[str | None, typer.Option("--flow-id", help="Flow id (exact).")]
CorrelationFilter = Annotated[
    str | None, typer.Option("--correlation-id", help="Correlation id (exact).")
]
SearchKeyFilter = Annotated[
    str | None, typer.Option("--search-key", help="Search key (exact, or % wildcards).")
]
DescriptionFilter = Annotated[
    str | None,
    typer.Option(
        "--description", "--match-description", help="Description (exact, or % wildcards)."
    ),
]
CreatedFromFilter = Annotated[
    str | None,
    typer.Option(
        "--created-from",
        metavar="ISO-8601",
        help="Created at or after this time, with a time zone (2025-01-31T12:00:00Z).",
    ),
]
CreatedToFilter = Annotated[
    str | None,
    typer.Option(
        "--created-to",
        metavar="ISO-8601",
        help="Created before this time, with a time zone (2025-01-31T13:00:00+01:00).",
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and leave with ``code``."""
    errors.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    raise typer.Exit(code)


def error_message(error: FlowkeeperError) -> str:
    """How a Flowkeeper error reads on the command line."""
    return f"{type(error).__name__}: {error}"


def reports_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`FlowkeeperError` raised by a command into ``error: …`` and exit code 1.

    Applied to each command (not only in :func:`main`) so that the same happens when the app
    is invoked directly, as ``typer.testing.CliRunner`` does.
    """

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except FlowkeeperError as error:
            fail(error_message(error))

    return wrapper


def print_json(value: Any) -> None:
    """Write ``value`` as JSON on stdout (and nothing else)."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def utc_text(value: datetime | None, timespec: str = "seconds") -> str:
    """A time in UTC ISO 8601 (``2025-01-31T12:00:00Z``), or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def shorten(text: str | None, width: int) -> str:
    """The first line of ``text``, cut to ``width`` characters."""
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def tail(text: str | None, width: int) -> str:
    """The end of ``text``, cut to ``width`` characters: where generated ids differ (a flow
    id's first digits are the time it was made, shared by every flow of the same minute)."""
    if not text:
        return ""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def parse_time(value: str | None, option: str) -> datetime | None:
    """An aware ``datetime`` from ISO 8601 text; naive or malformed text is refused."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            f"{option} {value!r} is not an ISO 8601 time; write e.g. 2025-01-31T12:00:00Z"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise NaiveDatetimeError(
            f"{option} {value!r} has no time zone, so it is ambiguous; add one, e.g. "
            "2025-01-31T12:00:00Z (UTC) or 2025-01-31T12:00:00+01:00"
        )
    return parsed


def make_search(
    id: int | None,
    name: str | None,
    flow_id: str | None,
    correlation_id: str | None,
    search_key: str | None,
    description: str | None,
    created_from: str | None,
    created_to: str | None,
) -> Search:
    """The :class:`Search` that the filter options describe."""
    return Search(
        id=id,
        name=name,
        flow_id=flow_id,
        correlation_id=correlation_id,
        search_key=search_key,
        description=description,
        created_from=parse_time(created_from, "--created-from"),
        created_to=parse_time(created_to, "--created-to"),
    )


def queue_names(chosen: Sequence[Enum] | None, default: Sequence[str]) -> list[str]:
    """The queue names chosen with ``--queue``, without repeats, else ``default``."""
    names = [str(q.value) for q in chosen] if chosen else list(default)
    return list(dict.fromkeys(names))


# -- top-level commands --------------------------------------------------------------------------
