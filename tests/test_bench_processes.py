"""`flowkeeper bench processes`: commands on business processes beside a bare loop (tiny sizes)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import flowkeeper as fk
from flowkeeper.bench.processes import SCHEME, ping_pong_scheme, processes
from flowkeeper.cli import app
from flowkeeper.processes.model import Activity, Scheme
from flowkeeper.storage.tables import process_history


def stored(url: str) -> tuple[dict[str, tuple[str, int]], int]:
    """Each bench process's activity and Counter, and how many history rows there are."""
    with fk.Engine(url) as engine:
        found = engine.processes.list(scheme_code=SCHEME, limit=10_000)
        with engine.database.connect() as connection:
            history = connection.execute(
                sa.select(sa.func.count()).select_from(process_history)
            ).scalar()
    return {p.id: (p.activity, p.parameters["Counter"]) for p in found}, int(history or 0)


def test_executes_beside_the_baseline_on_every_database(db_url: str) -> None:
    result = processes(db_url, n=100, clients=2, instances=20)

    assert (result.workload, result.steps, result.workers) == ("processes", 100, 2)
    assert result.rate > 0
    assert result.ceiling_rate is not None
    assert result.ceiling_rate > 0
    assert result.ratio == pytest.approx(result.rate / result.ceiling_rate)
    assert result.ratio > 0
    assert result.durability
    extra = result.extra
    assert extra["instances"] == 20
    assert extra["creates_per_s"] > 0
    assert 0 < extra["p50_ms"] <= extra["p99_ms"]
    assert 0 < extra["baseline_p50_ms"] <= extra["baseline_p99_ms"]
    assert extra["history_rows"] == 100  # creating a process makes no move in this scheme
    assert extra["statements_per_execute"] >= 3  # read, update, history row
    assert extra["commits_per_execute"] == 1
    # Each of the 20 processes moved 5 times by the engine and 5 times by the baseline, the
    # probe process 10 times: all are back on A, and each move added 1 to Counter.
    states, history = stored(db_url)
    assert len(states) == 21
    assert set(states.values()) == {("A", 11)}
    assert history == 20 * 10 + 10


def test_uneven_shares_still_add_up(db_url: str) -> None:
    result = processes(db_url, n=31, clients=3, instances=7)

    assert result.steps == 31
    assert result.extra["history_rows"] == 31
    states, history = stored(db_url)
    assert len(states) == 8
    assert history == 2 * 31 + 10
    # Every move was counted where it was made, and where a process rests follows from it.
    for activity, counter in states.values():
        assert activity == "AB"[(counter - 1) % 2]
    assert sum(counter - 1 for _, counter in states.values()) == 2 * 31 + 10


def test_the_bench_command_runs_processes_as_json(db_url: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "processes",
            "-d",
            db_url,
            "-n",
            "60",
            "--clients",
            "2",
            "--instances",
            "10",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (figures,) = json.loads(result.stdout)
    assert figures["workload"] == "processes"
    assert figures["steps"] == 60
    assert figures["workers"] == 2
    assert figures["extra"]["instances"] == 10
    assert figures["ratio"] == pytest.approx(figures["rate"] / figures["ceiling_rate"])


def test_the_bench_refuses_a_database_with_real_processes(db_url: str) -> None:
    with fk.Engine(db_url) as engine:
        engine.schemes.save(Scheme("Orders", activities=(Activity("New", is_initial=True),)))
    with pytest.raises(fk.InvalidArgument, match="database of its own"):
        processes(db_url, n=10, clients=1, instances=1)
    with fk.Engine(db_url) as engine:
        assert [s.code for s in engine.schemes.list()] == ["Orders"]


def test_every_client_needs_a_process_of_its_own(db_url: str) -> None:
    with pytest.raises(fk.InvalidArgument, match="a process per client"):
        processes(db_url, n=10, clients=4, instances=3)


def test_the_scheme_is_valid() -> None:
    assert ping_pong_scheme().problems() == []
