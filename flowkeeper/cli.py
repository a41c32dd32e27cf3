"""The ``flowkeeper`` command line."""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from flowkeeper.demo import run_demo
from flowkeeper.engine import Engine
from flowkeeper.errors import FlowkeeperError, InvalidArgument, NaiveDatetimeError
from flowkeeper.steps.model import Search, StepRecord
from flowkeeper.storage.database import URL_ENVIRONMENT_VARIABLE

app = typer.Typer(
    name="flowkeeper",
    help="Flowkeeper: durable steps and business processes in your own database.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
steps_app = typer.Typer(
    name="steps",
    help="Look at steps and act on them: list, show, count, activate, reexecute, fail.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(steps_app, name="steps")


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


@app.command()
@reports_errors
def migrate(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Create or upgrade Flowkeeper's tables (running it again changes nothing)."""
    engine = Engine(database)
    before, after = engine.migrate()
    engine.close()
    if as_json:
        database_url = engine.url.render_as_string(hide_password=True)
        print_json({"database": database_url, "before": before, "after": after})
    elif before == after:
        console.print(f"Schema already at revision {after}; nothing to do.")
    else:
        console.print(f"Schema migrated from {before or 'nothing'} to revision {after}.")


def load_engine(spec: str) -> Engine:
    """Import ``module:attribute`` and return the :class:`Engine` it names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        fail(f"--app must look like module:engine (got {spec!r})")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        fail(f"cannot import {module_name!r}: {error}")
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            fail(f"{module_name!r} has no attribute {attribute!r}")
    if callable(target) and not isinstance(target, Engine):
        target = target()
    if not isinstance(target, Engine):
        fail(f"{spec} is a {type(target).__name__}, not a flowkeeper.Engine")
    return target


@app.command()
@reports_errors
def worker(
    app_spec: Annotated[str, typer.Option("--app", help="The engine to run, as module:attribute.")],
    workers: Annotated[int, typer.Option(help="Worker threads.", min=1)] = 8,
    batch_size: Annotated[int, typer.Option(help="Most steps claimed at once.", min=1)] = 100,
    database: DatabaseOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
) -> None:
    """Run workers for the engine in --app until SIGTERM or SIGINT (Ctrl-C)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if database is not None:
        # Set before the import so that an app building fk.Engine() picks it up.
        os.environ[URL_ENVIRONMENT_VARIABLE] = database
    engine = load_engine(app_spec)
    errors.print(
        f"flowkeeper worker: {workers} workers on {engine} "
        f"running {len(engine.step_names)} step names",
        highlight=False,
    )
    stats = engine.run(workers=workers, batch_size=batch_size)
    errors.print(
        f"flowkeeper worker: stopped after {stats.executed} executions "
        f"({stats.done} done, {stats.failed} failed, {stats.rescheduled} rescheduled)",
        highlight=False,
    )


@app.command()
@reports_errors
def demo(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Run a small order flow (fan-out, a retried failure, a join, a timer) and show it."""
    summary = run_demo(database, errors if as_json else console)
    if as_json:
        print_json(summary.to_dict())
    if not summary.completed:
        fail(
            f"the demo's flow {summary.flow_id} did not finish within {summary.timeout_s:.0f} s; "
            "see the table above for the steps still ready"
        )


# -- steps ----------------------------------------------------------------------------------------


def steps_table(queue: str, records: list[StepRecord], limit: int) -> Table:
    """A readable table of the steps found in one queue."""
    title = f"{queue}: {len(records)} step{'s' if len(records) != 1 else ''}"
    if len(records) >= limit:
        title += f" (the first {limit}; raise --limit for more)"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("queue", no_wrap=True)
    table.add_column("execs", justify="right")
    table.add_column("run at", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("flow id", no_wrap=True)
    table.add_column("description")
    if queue == "ready":
        table.add_column("locked by")
    for r in records:
        row: list[str | Text] = [
            str(r.id),
            Text(r.name),
            r.queue,
            str(r.execution_count),
            utc_text(r.run_at),
            utc_text(r.created_at),
            Text(shorten(r.flow_id, 9)),
            Text(shorten(r.description, 50)),
        ]
        if queue == "ready":
            row.append(Text(r.locked_by or ""))
        table.add_row(*row)
    return table


@steps_app.command("list")
@reports_errors
def list_steps(
    id: IdFilter = None,
    name: NameFilter = None,
    flow_id: FlowFilter = None,
    correlation_id: CorrelationFilter = None,
    search_key: SearchKeyFilter = None,
    description: DescriptionFilter = None,
    created_from: CreatedFromFilter = None,
    created_to: CreatedToFilter = None,
    queue: Annotated[
        list[QueueChoice] | None,
        typer.Option("--queue", "-q", help="Queues to show (repeatable; default: all three)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Most steps shown per queue.", min=1)] = 50,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List steps matching the filters, oldest first, one table per queue."""
    search = make_search(
        id, name, flow_id, correlation_id, search_key, description, created_from, created_to
    )
    queues = queue_names(queue, [q.value for q in QueueChoice])
    with Engine(database) as engine:
        found = engine.search(search, queues, limit)
    if as_json:
        print_json({q: [r.to_dict() for r in records] for q, records in found.items()})
        return
    for q, records in found.items():
        if records:
            console.print(steps_table(q, records, limit))
        else:
            console.print(f"[bold]{q}[/]: no matching steps", highlight=False)


@steps_app.command("show")
@reports_errors
def show_step(
    step_id: Annotated[int, typer.Argument(metavar="ID", help="The step's id.")],
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show every field of one step, its state pretty-printed."""
    with Engine(database) as engine:
        record = engine.get_step(step_id)
    if as_json:
        print_json(record.to_dict())
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for field in fields(StepRecord):
        value = getattr(record, field.name)
        shown: Any
        if field.name in ("state", "activation_args"):
            shown = JSON(json.dumps(value))
        elif isinstance(value, datetime):
            shown = utc_text(value, "microseconds")
        elif field.name == "execution_duration_ms" and value is not None:
            shown = f"{value} ms"
        else:
            shown = Text("-" if value is None else str(value))
        grid.add_row(field.name, shown)
    console.print(grid)


@steps_app.command("count")
@reports_errors
def count_steps(
    id: IdFilter = None,
    name: NameFilter = None,
    flow_id: FlowFilter = None,
    correlation_id: CorrelationFilter = None,
    search_key: SearchKeyFilter = None,
    description: DescriptionFilter = None,
    created_from: CreatedFromFilter = None,
    created_to: CreatedToFilter = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Count the steps (matching the filters, if any) in each queue."""
    search = make_search(
        id, name, flow_id, correlation_id, search_key, description, created_from, created_to
    )
    with Engine(database) as engine:
        counts = engine.count(search)
    if as_json:
        print_json(counts)
        return
    table = Table(title="steps" if search.is_empty() else "matching steps", title_justify="left")
    table.add_column("queue")
    table.add_column("steps", justify="right")
    for q, n in counts.items():
        table.add_row(q, str(n))
    table.add_row("[bold]total[/]", f"[bold]{sum(counts.values())}[/]")
    console.print(table)


@steps_app.command("activate")
@reports_errors
def activate_step(
    step_id: Annotated[int, typer.Argument(metavar="ID", help="The ready step to run now.")],
    args: Annotated[
        str | None,
        typer.Option("--args", metavar="JSON", help="Activation arguments, as JSON."),
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a ready step due now, optionally with activation arguments."""
    value: Any = None
    if args is not None:
        try:
            value = json.loads(args)
        except json.JSONDecodeError as error:
            raise InvalidArgument(
                f"--args is not valid JSON ({error.msg} at column {error.colno}): {args!r}; "
                "write e.g. --args '{\"approved\": true}'"
            ) from None
    with Engine(database) as engine:
        activated = engine.activate(step_id, value)
    if as_json:
        print_json({"id": step_id, "activated": activated})
    elif activated:
        console.print(f"Step {step_id} activated: it is due now.")
    if not activated:
        fail(
            f"step {step_id} was not activated: it is running now or has already left the "
            "ready queue (see `flowkeeper steps show`)"
        )


@steps_app.command("reexecute")
@reports_errors
def reexecute_steps(
    id: IdFilter = None,
    name: NameFilter = None,
    flow_id: FlowFilter = None,
    correlation_id: CorrelationFilter = None,
    search_key: SearchKeyFilter = None,
    description: DescriptionFilter = None,
    created_from: CreatedFromFilter = None,
    created_to: CreatedToFilter = None,
    queue: Annotated[
        list[FinishedQueue] | None,
        typer.Option("--queue", "-q", help="Queues to copy from (repeatable; default: failed)."),
    ] = None,
    all_steps: Annotated[
        bool, typer.Option("--all", help="Allow no filter: re-execute every step in the queues.")
    ] = False,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy matching done/failed steps back to the ready queue as new steps."""
    search = make_search(
        id, name, flow_id, correlation_id, search_key, description, created_from, created_to
    )
    queues = queue_names(queue, ["failed"])
    if search.is_empty() and not all_steps:
        raise InvalidArgument(
            "give at least one filter (--id, --name, --flow-id, …), or --all to re-execute "
            f"every step in the {' and '.join(queues)} queue"
        )
    with Engine(database) as engine:
        ids = engine.reexecute(search, queues)
    if as_json:
        print_json({"ids": ids})
    elif ids:
        console.print(
            f"Re-executing {len(ids)} step{'s' if len(ids) != 1 else ''} as new ready steps: "
            + ", ".join(map(str, ids))
        )
    else:
        console.print(f"No matching steps in the {' or '.join(queues)} queue; nothing to do.")


@steps_app.command("fail")
@reports_errors
def fail_steps(
    id: IdFilter = None,
    name: NameFilter = None,
    flow_id: FlowFilter = None,
    correlation_id: CorrelationFilter = None,
    search_key: SearchKeyFilter = None,
    match_description: Annotated[
        str | None,
        typer.Option(
            "--match-description", help="Only steps with this description (or % pattern)."
        ),
    ] = None,
    created_from: CreatedFromFilter = None,
    created_to: CreatedToFilter = None,
    description: Annotated[
        str | None,
        typer.Option("--description", help="Why: recorded as the failed steps' description."),
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move matching ready steps to the failed queue (at least one filter is required)."""
    search = make_search(
        id, name, flow_id, correlation_id, search_key, match_description, created_from, created_to
    )
    if search.is_empty():
        raise InvalidArgument(
            "give at least one filter (--id, --name, --flow-id, …): without one, every ready "
            "step would fail"
        )
    with Engine(database) as engine:
        ids = engine.fail_steps(search, description)
    if as_json:
        print_json({"ids": ids})
    elif ids:
        console.print(
            f"Failed {len(ids)} step{'s' if len(ids) != 1 else ''}: " + ", ".join(map(str, ids))
        )
    else:
        console.print("No matching ready steps; nothing failed.")


def main() -> None:
    """Entry point: run the CLI, turning Flowkeeper errors into a message and exit code 1."""
    try:
        app()
    except FlowkeeperError as error:
        message = Text.assemble(("error:", "bold red"), " ", error_message(error))
        errors.print(message, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
