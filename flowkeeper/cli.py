"""The ``flowkeeper`` command line."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from flowkeeper.engine import Engine
from flowkeeper.errors import FlowkeeperError
from flowkeeper.storage.database import URL_ENVIRONMENT_VARIABLE

app = typer.Typer(
    name="flowkeeper",
    help="Flowkeeper: durable steps and business processes in your own database.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

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


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@app.command()
def migrate(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Create or upgrade Flowkeeper's tables (running it again changes nothing)."""
    engine = Engine(database)
    before, after = engine.migrate()
    engine.close()
    if as_json:
        print_json({"database": str(engine), "before": before, "after": after})
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
def worker(
    app_spec: Annotated[
        str, typer.Option("--app", help="The engine to run, as module:attribute.")
    ],
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


def main() -> None:
    """Entry point: run the CLI, turning Flowkeeper errors into a message and exit code 1."""
    try:
        app()
    except FlowkeeperError as error:
        errors.print(f"[bold red]error:[/] {type(error).__name__}: {error}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
