"""The ``flowkeeper`` command line."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from flowkeeper.cli.bench import bench
from flowkeeper.cli.callbacks import callbacks_app
from flowkeeper.cli.common import (
    DatabaseOption,
    JsonOption,
    console,
    error_message,
    errors,
    fail,
    print_json,
    reports_errors,
)
from flowkeeper.cli.keys import keys_app
from flowkeeper.cli.processes import processes_app
from flowkeeper.cli.schemes import schemes_app
from flowkeeper.cli.serve import serve
from flowkeeper.cli.steps import steps_app
from flowkeeper.demo import run_demo
from flowkeeper.engine import Engine
from flowkeeper.errors import FlowkeeperError
from flowkeeper.storage.database import URL_ENVIRONMENT_VARIABLE

app = typer.Typer(
    name="flowkeeper",
    help="Flowkeeper: durable steps and business processes in your own database.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(steps_app, name="steps")
app.add_typer(schemes_app, name="schemes")
app.add_typer(processes_app, name="processes")
app.add_typer(keys_app, name="keys")
app.add_typer(callbacks_app, name="callbacks")
app.command()(bench)
app.command()(serve)


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


def main() -> None:
    """Entry point: run the CLI, turning Flowkeeper errors into a message and exit code 1."""
    try:
        app()
    except FlowkeeperError as error:
        message = Text.assemble(("error:", "bold red"), " ", error_message(error))
        errors.print(message, soft_wrap=True)
        sys.exit(1)
