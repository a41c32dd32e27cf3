"""``flowkeeper processes``: create process instances, look at them and move them.

Schemes name actions, conditions and rules that only the application registers (with
``@engine.action``, ``@engine.condition`` and ``@engine.rule``), so these commands take
``--app module:attribute`` like ``flowkeeper worker`` does, and then use that engine.

``--app`` and ``--database`` together: ``--database`` is put in ``$FLOWKEEPER_DATABASE_URL``
while the app is imported (or its factory called), so an engine built as ``fk.Engine()``
uses it. An engine built earlier, or with a URL of its own, is not moved: if its database
is not the one ``--database`` names, the command stops with an error rather than quietly
use another database. Without ``--database``, the app's engine is used as it is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich import box
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from flowkeeper.cli.common import (
    DatabaseOption,
    JsonOption,
    console,
    print_json,
    reports_errors,
    utc_text,
)
from flowkeeper.engine import Engine
from flowkeeper.errors import ActionNotRegistered, ConfigurationError, InvalidArgument
from flowkeeper.processes.records import (
    Command,
    ExecutionResult,
    HistoryRecord,
    Process,
    ProcessStatus,
)
from flowkeeper.storage.database import URL_ENVIRONMENT_VARIABLE, describe, resolve_url

processes_app = typer.Typer(
    name="processes",
    help="Process instances: create, show, list, commands, execute, history, set-state, delete.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        metavar="MODULE:ATTRIBUTE",
        help="The engine whose actions, conditions and rules to use, as module:attribute "
        "(an fk.Engine, or a function returning one). --database is set as "
        f"${URL_ENVIRONMENT_VARIABLE} while it loads; an engine on another database is "
        "refused.",
        show_default=False,
    ),
]
ProcessIdArgument = Annotated[str, typer.Argument(metavar="ID", help="The process's id.")]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="NAME=VALUE",
        help="A parameter (repeatable); VALUE is read as JSON when it is JSON, else as text: "
        "Amount=120 gives 120, Comment=ok gives 'ok'.",
        show_default=False,
    ),
]
IdentityOption = Annotated[
    str | None,
    typer.Option("--identity", "-i", help="Who acts (checked by the scheme's rules)."),
]
RequiredIdentity = Annotated[
    str,
    typer.Option(
        "--identity", "-i", help="Who acts (checked by the scheme's rules).", show_default=False
    ),
]


# -- engine and parameters ---------------------------------------------------------------------


@contextmanager
def _database_variable(database: str | None) -> Iterator[None]:
    """``$FLOWKEEPER_DATABASE_URL`` set to ``database`` (when given) inside the block only."""
    if database is None:
        yield
        return
    before = os.environ.get(URL_ENVIRONMENT_VARIABLE)
    os.environ[URL_ENVIRONMENT_VARIABLE] = database
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(URL_ENVIRONMENT_VARIABLE, None)
        else:
            os.environ[URL_ENVIRONMENT_VARIABLE] = before


def _app_engine(app_spec: str, database: str | None) -> Engine:
    """The engine ``--app`` names, on the ``--database`` (when given) or refused."""
    from flowkeeper.cli import load_engine  # here: flowkeeper.cli imports this module

    with _database_variable(database):
        engine = load_engine(app_spec)
    if database is not None:
        wanted = resolve_url(database)
        if engine.url.render_as_string(False) != wanted.render_as_string(False):
            raise ConfigurationError(
                f"--app {app_spec} is an engine on {describe(engine.url)}, not on the "
                f"--database {describe(wanted)}; build the app's engine as fk.Engine() (it then "
                f"reads ${URL_ENVIRONMENT_VARIABLE}, which --database sets while the app is "
                "imported), name a function that builds it, or leave out --database"
            )
    return engine


@contextmanager
def open_engine(app_spec: str | None, database: str | None) -> Iterator[Engine]:
    """The engine of ``--app`` (else a plain one on ``--database``), closed afterwards."""
    engine = _app_engine(app_spec, database) if app_spec else Engine(database)
    try:
        yield engine
    except ActionNotRegistered as error:
        if app_spec:
            raise
        raise ActionNotRegistered(
            f"{error}; give --app module:engine to use your application's engine"
        ) from None
    finally:
        engine.close()


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """``text`` as JSON when it is JSON (``120``, ``true``, ``[1, 2]``, ``"x"``), else itself."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def parse_params(params: list[str] | None, params_json: str | None = None) -> dict[str, Any]:
    """The parameters of ``--params-json`` with each ``--param NAME=VALUE`` set over them."""
    values: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as error:
            raise InvalidArgument(
                f"--params-json is not valid JSON ({error.msg} at column {error.colno}): "
                f"{params_json!r}; write e.g. --params-json '{{\"Amount\": 120}}'"
            ) from None
        if not isinstance(loaded, dict):
            raise InvalidArgument(
                f"--params-json must be a JSON object of names to values, not "
                f"{type(loaded).__name__}: {params_json!r}"
            )
        values.update(loaded)
    given: set[str] = set()
    for item in params or ():
        name, equals, text = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise InvalidArgument(
                f"--param {item!r} is not NAME=VALUE; write e.g. --param Amount=120 or "
                "--param Comment=ok"
            )
        if name in given:
            raise InvalidArgument(f"--param {name} is given twice; give each name once")
        given.add(name)
        value = parse_value(text)
        if isinstance(value, float) and not math.isfinite(value):
            value = text
        values[name] = value
    return values


# -- JSON shapes -------------------------------------------------------------------------------


def process_dict(process: Process) -> dict[str, Any]:
    """A process as JSON-friendly data (times in ISO 8601)."""
    return {
        "id": process.id,
        "scheme_code": process.scheme_code,
        "scheme_version": process.scheme_version,
        "activity": process.activity,
        "state": process.state,
        "status": process.status.value,
        "parameters": dict(process.parameters),
        "tenant_id": process.tenant_id,
        "parent_id": process.parent_id,
        "root_id": process.root_id,
        "created_at": process.created_at.isoformat(),
        "updated_at": process.updated_at.isoformat(),
        "row_version": process.row_version,
    }


def command_dict(command: Command) -> dict[str, Any]:
    """An available command as JSON-friendly data."""
    return {
        "name": command.name,
        "caption": command.caption,
        "classifier": command.classifier.value,
        "input_parameters": [
            {
                "name": i.name,
                "parameter": i.parameter,
                "required": i.required,
                "default": i.default,
            }
            for i in command.input_parameters
        ],
    }


def history_dict(record: HistoryRecord) -> dict[str, Any]:
    """A history record as JSON-friendly data."""
    return {
        "seq": record.seq,
        "transition": record.transition,
        "from_activity": record.from_activity,
        "to_activity": record.to_activity,
        "from_state": record.from_state,
        "to_state": record.to_state,
        "command": record.command,
        "trigger": record.trigger,
        "classifier": record.classifier,
        "identity": record.identity,
        "at": record.at.isoformat(),
    }


def result_dict(result: ExecutionResult) -> dict[str, Any]:
    """What ``execute`` did, as JSON-friendly data."""
    return {
        "executed": result.executed,
        "process": process_dict(result.process),
        "transitions": [history_dict(r) for r in result.transitions],
    }


# -- output for people -------------------------------------------------------------------------


def _where(process: Process) -> Text:
    """``activity X, state Y, status Idled``."""
    return Text.assemble(
        "activity ",
        (process.activity, "bold"),
        ", state ",
        (process.state or "-", "bold"),
        f", status {process.status.value}",
    )


def _move_text(record: HistoryRecord) -> str:
    label = record.trigger + (f"[{record.command}]" if record.command else "")
    return f"{record.from_activity} --{label}--> {record.to_activity}"


def process_grid(process: Process) -> Table:
    """Every field of a process, parameters pretty-printed."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, Any]] = [
        ("id", Text(process.id)),
        ("scheme", Text(f"{process.scheme_code}@{process.scheme_version}")),
        ("activity", Text(process.activity)),
        ("state", Text(process.state or "-")),
        ("status", process.status.value),
        ("parameters", JSON(json.dumps(dict(process.parameters), default=str))),
        ("created at", utc_text(process.created_at, "milliseconds")),
        ("updated at", utc_text(process.updated_at, "milliseconds")),
        ("tenant", Text(process.tenant_id or "-")),
        ("parent", Text(process.parent_id or "-")),
        ("root", Text(process.root_id or "-")),
        ("row version", str(process.row_version)),
    ]
    for name, value in rows:
        grid.add_row(name, value)
    return grid


# -- commands ----------------------------------------------------------------------------------


@processes_app.command("create")
@reports_errors
def create_process(
    scheme: Annotated[str, typer.Argument(metavar="SCHEME", help="The scheme's name (code).")],
    identity: IdentityOption = None,
    param: ParamOption = None,
    params_json: Annotated[
        str | None,
        typer.Option(
            "--params-json",
            metavar="JSON",
            help="Parameters as one JSON object; --param values are set over it.",
        ),
    ] = None,
    process_id: Annotated[
        str | None,
        typer.Option("--id", metavar="PROCESS_ID", help="The new process's id (default: a UUID)."),
    ] = None,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a process of the newest version of SCHEME and print its id.

    The process enters the initial activity and follows automatic transitions until it
    rests. With --json, the whole process is printed.
    """
    parameters = parse_params(param, params_json)
    with open_engine(app_spec, database) as engine:
        pid = engine.processes.create(
            scheme, identity=identity, parameters=parameters, process_id=process_id
        )
        process = engine.processes.get(pid) if as_json else None
    if process is not None:
        print_json(process_dict(process))
    else:
        typer.echo(pid)


@processes_app.command("show")
@reports_errors
def show_process(
    process_id: ProcessIdArgument,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a process: activity, state, status, scheme@version, parameters and times."""
    with open_engine(app_spec, database) as engine:
        process = engine.processes.get(process_id)
    if as_json:
        print_json(process_dict(process))
    else:
        console.print(process_grid(process))


@processes_app.command("list")
@reports_errors
def list_processes(
    scheme: Annotated[
        str | None, typer.Option("--scheme", help="Only processes of this scheme (name).")
    ] = None,
    status: Annotated[
        ProcessStatus | None,
        typer.Option("--status", case_sensitive=False, help="Only processes in this status."),
    ] = None,
    activity: Annotated[
        str | None, typer.Option("--activity", help="Only processes in this activity.")
    ] = None,
    after: Annotated[
        str | None,
        typer.Option("--after", metavar="ID", help="Only ids after this one (to page on)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="Most processes shown.")
    ] = 50,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List processes matching the filters, by id (page on with --after the last id)."""
    with open_engine(app_spec, database) as engine:
        found = engine.processes.list(
            scheme_code=scheme, status=status, activity=activity, after=after, limit=limit
        )
    if as_json:
        print_json([process_dict(p) for p in found])
        return
    if not found:
        console.print("No matching processes.")
        return
    title = f"{len(found)} process{'es' if len(found) != 1 else ''}"
    if len(found) >= limit:
        title += f" (the first {limit}; raise --limit, or page with --after {found[-1].id})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)
    table.add_column("scheme", no_wrap=True)
    table.add_column("activity")
    table.add_column("state")
    table.add_column("status", no_wrap=True)
    table.add_column("updated at", no_wrap=True)
    for p in found:
        table.add_row(
            Text(p.id),
            Text(f"{p.scheme_code}@{p.scheme_version}"),
            Text(p.activity),
            Text(p.state or "-"),
            p.status.value,
            utc_text(p.updated_at),
        )
    console.print(table)


@processes_app.command("commands")
@reports_errors
def list_commands(
    process_id: ProcessIdArgument,
    identity: RequiredIdentity,
    check_conditions: Annotated[
        bool,
        typer.Option(
            "--check-conditions",
            help="List a command only if executing it now would move the process.",
        ),
    ] = False,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the commands --identity may execute on the process now (restrictions checked)."""
    with open_engine(app_spec, database) as engine:
        commands = engine.processes.commands(
            process_id, identity, check_conditions=check_conditions
        )
        process = None if as_json or commands else engine.processes.get(process_id)
    if as_json:
        print_json([command_dict(c) for c in commands])
        return
    if process is not None:
        console.print(
            Text.assemble(
                f"No commands for {identity!r} on process {process_id} in ", _where(process)
            )
        )
        return
    table = Table(title=f"Commands for {identity!r}", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("command", no_wrap=True)
    table.add_column("caption")
    table.add_column("classifier", no_wrap=True)
    table.add_column("input parameters")
    for c in commands:
        inputs = ", ".join(
            i.name
            + (" (required)" if i.required else "")
            + (f" = {i.default!r}" if i.default else "")
            for i in c.input_parameters
        )
        table.add_row(Text(c.name), Text(c.caption), c.classifier.value, Text(inputs))
    console.print(table)


@processes_app.command("execute")
@reports_errors
def execute_command(
    process_id: ProcessIdArgument,
    command: Annotated[str, typer.Argument(metavar="COMMAND", help="The command to execute.")],
    identity: RequiredIdentity,
    param: ParamOption = None,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Execute COMMAND on the process as --identity, with the command's input parameters.

    Prints whether it executed and where the process is now. "executed: no" (exit code 0)
    means no transition's conditions held, and nothing changed; a command that is not
    available here, or not to this identity, is an error.
    """
    parameters = parse_params(param)
    with open_engine(app_spec, database) as engine:
        result = engine.processes.execute(
            process_id, command, identity=identity, parameters=parameters
        )
    if as_json:
        print_json(result_dict(result))
        return
    if result.executed:
        console.print("executed: [bold green]yes[/]")
    else:
        console.print("executed: [bold yellow]no[/] (no transition's conditions held)")
    for record in result.transitions:
        console.print(Text(f"  {record.seq}. {_move_text(record)}"))
    console.print(Text.assemble("now in ", _where(result.process)))


@processes_app.command("history")
@reports_errors
def show_history(
    process_id: ProcessIdArgument,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the transitions the process made, oldest first."""
    with open_engine(app_spec, database) as engine:
        records = engine.processes.history(process_id)
    if as_json:
        print_json([history_dict(r) for r in records])
        return
    if not records:
        console.print(Text(f"Process {process_id} has made no transitions yet."))
        return
    table = Table(title=f"History of {process_id}", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    table.add_column("at", no_wrap=True)
    table.add_column("move (transition)")
    table.add_column("identity")
    for r in records:
        move = Text(_move_text(r))
        if r.transition:
            move.append(f"\n({r.transition})", style="dim")
        table.add_row(str(r.seq), utc_text(r.at), move, Text(r.identity or "-"))
    console.print(table)


@processes_app.command("set-state")
@reports_errors
def set_state(
    process_id: ProcessIdArgument,
    state: Annotated[str, typer.Argument(metavar="STATE", help="The state to move to.")],
    identity: IdentityOption = None,
    param: ParamOption = None,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the process to the activity of STATE without a transition.

    The activity's actions run and automatic transitions are followed; the history records
    trigger SetState. Only states of activities marked for set-state are accepted.
    """
    parameters = parse_params(param)
    with open_engine(app_spec, database) as engine:
        process = engine.processes.set_state(
            process_id, state, identity=identity, parameters=parameters
        )
    if as_json:
        print_json(process_dict(process))
    else:
        console.print(Text.assemble(f"Process {process_id} is now in ", _where(process)))


@processes_app.command("delete")
@reports_errors
def delete_process(
    process_id: ProcessIdArgument,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete the process, its history and its pending timers."""
    with open_engine(app_spec, database) as engine:
        engine.processes.delete(process_id)
    if as_json:
        print_json({"id": process_id, "deleted": True})
    else:
        console.print(Text(f"Deleted process {process_id}."))
