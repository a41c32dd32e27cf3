"""`flowkeeper bench` runs every workload, each beside its ceiling (small sizes here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import flowkeeper as fk
from flowkeeper.bench import workloads
from flowkeeper.cli import app


def test_every_workload_reports_a_rate_beside_its_ceiling(db_url: str) -> None:
    results = [
        workloads.drain(db_url, 300, workers=4),
        workloads.chain(db_url, flows=5, length=6, workers=4),
        workloads.fanout(db_url, width=40, workers=4),
        workloads.add(db_url, 300, batch_size=100),
    ]
    assert [r.steps for r in results] == [300, 30, 42, 300]
    for result in results:
        assert result.rate > 0
        assert result.ceiling_rate is not None
        assert result.ceiling_rate > 0
        assert result.ratio == pytest.approx(result.rate / result.ceiling_rate)
        assert result.durability


def test_latency_reports_percentiles(db_url: str) -> None:
    result = workloads.latency(db_url, rate=50, seconds=1, workers=2)
    assert result.steps == 50
    assert 0 <= result.extra["p50_ms"] <= result.extra["p95_ms"] <= result.extra["p99_ms"]


def test_the_bench_command_prints_json(db_url: str) -> None:
    result = CliRunner().invoke(
        app, ["bench", "drain", "-d", db_url, "-n", "200", "--workers", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    (figures,) = json.loads(result.stdout)
    assert figures["workload"] == "drain"
    assert figures["steps"] == 200
    assert figures["ratio"] == pytest.approx(figures["rate"] / figures["ceiling_rate"])


def test_the_bench_refuses_a_database_with_real_steps(db_url: str) -> None:
    with fk.Engine(db_url) as engine:
        engine.add_step(fk.Step("orders/ship"))
    with pytest.raises(fk.InvalidArgument, match="database of its own"):
        workloads.drain(db_url, 10)


def test_a_drain_in_several_processes_runs_every_step_once(db_url: str) -> None:
    result = workloads.drain(db_url, 300, workers=2, processes=2)
    assert result.steps == 300
    assert result.processes == 2
    assert result.rate > 0
    with fk.Engine(db_url) as engine:
        assert engine.count() == {"ready": 0, "done": 300, "failed": 0}


def test_a_worker_process_that_cannot_start_fails_the_run(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/no/such/dir/bench.db"
    with pytest.raises(RuntimeError, match="failed to start"):
        workloads._drain_in_processes(missing, workers=1, batch_size=10, processes=2)
