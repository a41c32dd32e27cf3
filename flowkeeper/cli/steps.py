"""``flowkeeper steps``: look at steps and act on them."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from rich import box
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from flowkeeper.cli.common import (
    CorrelationFilter,
    CreatedFromFilter,
    CreatedToFilter,
    DatabaseOption,
    DescriptionFilter,
    FinishedQueue,
    FlowFilter,
    IdFilter,
    JsonOption,
    NameFilter,
    QueueChoice,
    SearchKeyFilter,
    console,
    fail,
    make_search,
    print_json,
    queue_names,
    reports_errors,
    shorten,
    tail,
    utc_text,
)
from flowkeeper.clock import utcnow
from flowkeeper.engine import Engine
from flowkeeper.errors import InvalidArgument
from flowkeeper.steps.model import StepRecord

steps_app = typer.Typer(
    name="steps",
    help="Look at steps and act on them: list, show, count, activate, reexecute, fail, prune.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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
            Text(tail(r.flow_id, 9)),
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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` or a number of seconds, as a timedelta."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:])
    number = value[:-1] if unit is not None else value
    try:
        amount = float(number)
    except ValueError:
        raise InvalidArgument(
            f"--older-than {text!r} is not an age; write e.g. 30d, 12h, 45m, 90s or 3600"
        ) from None
    if amount < 0:
        raise InvalidArgument(f"--older-than must not be negative (got {text!r})")
    return timedelta(seconds=amount * (unit or 1))


@steps_app.command("prune")
@reports_errors
def prune_steps(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age: 30d, 12h, 45m, 90s or seconds.")
    ],
    queue: Annotated[
        list[FinishedQueue] | None,
        typer.Option("--queue", "-q", help="done (default) and/or failed; repeatable."),
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete done (or failed) steps created longer ago than --older-than."""
    age = parse_age(older_than)
    with Engine(database) as engine:
        deleted = engine.prune(age, queue_names(queue, ("done",)))
    if as_json:
        print_json(deleted)
        return
    for name, count in deleted.items():
        console.print(f"Deleted {count} {name} steps created before {utc_text(utcnow() - age)}.")
