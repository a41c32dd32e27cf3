"""``flowkeeper bench``: run throughput and latency workloads beside their ceiling."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich import box
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from flowkeeper.bench import workloads
from flowkeeper.bench.processes import processes as process_workload
from flowkeeper.bench.workloads import Result
from flowkeeper.cli.common import JsonOption, console, errors, print_json, reports_errors

DEFAULT_BENCH_URL = "sqlite:///flowkeeper-bench.db"


class Workload(StrEnum):
    """A benchmark workload."""

    drain = "drain"
    chain = "chain"
    fanout = "fanout"
    add = "add"
    latency = "latency"
    processes = "processes"
    all = "all"


@reports_errors
def bench(
    workload: Annotated[Workload, typer.Argument(help="What to measure.")] = Workload.all,
    database: Annotated[
        str,
        typer.Option(
            "--database",
            "-d",
            help=(
                "A database of its own: the benchmark empties Flowkeeper's step and process "
                "tables there."
            ),
        ),
    ] = DEFAULT_BENCH_URL,
    steps: Annotated[
        int, typer.Option("-n", "--steps", min=1, help="Steps (drain, add); executes (processes).")
    ] = 20_000,
    workers: Annotated[int, typer.Option(min=1, help="Worker threads per process.")] = 8,
    processes: Annotated[int, typer.Option(min=1, help="Worker processes (drain).")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Most steps claimed at once.")] = 100,
    flows: Annotated[int, typer.Option(min=1, help="Chains run side by side (chain).")] = 200,
    length: Annotated[int, typer.Option(min=1, help="Steps in each chain (chain).")] = 50,
    width: Annotated[int, typer.Option(min=1, help="Steps fanned out (fanout).")] = 10_000,
    rate: Annotated[float, typer.Option(min=1, help="Steps added per second (latency).")] = 500,
    seconds: Annotated[float, typer.Option(min=1, help="How long to add (latency).")] = 10,
    clients: Annotated[int, typer.Option(min=1, help="Client threads (processes).")] = 8,
    instances: Annotated[
        int, typer.Option(min=1, help="Processes created, shared by the clients (processes).")
    ] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Measure the engine, each figure beside a bare-SQL ceiling timed in the same run."""
    chosen = (
        [w for w in Workload if w is not Workload.all] if workload is Workload.all else [workload]
    )
    results: list[Result] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=as_json,
    ) as progress:
        for name in chosen:
            task = progress.add_task(f"{name:>8}", total=None)

            def report(done: int, total: int, task_id: TaskID = task) -> None:
                progress.update(task_id, completed=done, total=total)

            if name is Workload.drain:
                result = workloads.drain(
                    database, steps, workers, batch_size, processes, progress=report
                )
            elif name is Workload.chain:
                result = workloads.chain(database, flows, length, workers, batch_size, report)
            elif name is Workload.fanout:
                result = workloads.fanout(database, width, workers, batch_size, report)
            elif name is Workload.add:
                result = workloads.add(database, steps, 1000, report)
            elif name is Workload.processes:
                result = process_workload(database, steps, clients, instances, report)
            else:
                result = workloads.latency(database, rate, seconds, workers, report)
            results.append(result)
            progress.remove_task(task)
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    console.print(results_table(results))


def results_table(results: list[Result]) -> Table:
    """The figures as a table: rate, ceiling, ratio, and what each run was."""
    first = results[0]
    table = Table(
        title=f"flowkeeper bench on {first.database} ({first.durability})",
        box=box.SIMPLE_HEAVY,
    )
    # A unit is a step, except for `processes`, where it is one command executed.
    for column in ("workload", "units", "seconds", "units/s", "ceiling/s", "ratio", "run"):
        table.add_column(column, justify="left" if column in ("workload", "run") else "right")
    for r in results:
        unit = "clients" if r.workload == "processes" else "workers"
        run = "executes; " if r.workload == "processes" else "steps; "
        run += f"{r.workers} {unit}" if r.workers else ""
        if r.processes > 1:
            run += f" in each of {r.processes} processes"
        if r.batch_size:
            run += f", batch {r.batch_size}"
        if r.extra:
            run += ", " + ", ".join(f"{k}={v}" for k, v in r.extra.items())
        table.add_row(
            r.workload,
            f"{r.steps:,}",
            f"{r.seconds:.2f}",
            f"{r.rate:,.0f}",
            "—" if r.ceiling_rate is None else f"{r.ceiling_rate:,.0f}",
            "—" if r.ratio is None else f"{r.ratio:.2f}",
            run.strip(", "),
        )
    return table
