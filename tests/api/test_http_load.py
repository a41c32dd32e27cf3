"""``benchmarks/http_load.py`` works: a real server on SQLite, two clients, about a second."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "http_load.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_load", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["http_load"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def http_load() -> ModuleType:
    return load_script()


def test_percentiles_are_nearest_rank(http_load: ModuleType) -> None:
    values = [float(i) for i in range(1, 101)]
    assert http_load.percentile(values, 0.5) == 50
    assert http_load.percentile(values, 0.99) == 99
    assert http_load.percentile([7.0], 0.99) == 7
    assert http_load.percentile([], 0.5) == 0


def test_clients_own_disjoint_processes(http_load: ModuleType) -> None:
    owned = http_load.shares([str(i) for i in range(5)], 2)
    assert owned == [["0", "2", "4"], ["1", "3"]]


@pytest.mark.slow
def test_a_short_run_against_sqlite(http_load: ModuleType, tmp_path: Path) -> None:
    config = http_load.Config(
        database=f"sqlite:///{tmp_path / 'load.db'}",
        duration=0.4,
        warmup=0.1,
        clients=2,
        processes=4,
    )
    report = http_load.run(config)
    found = {(r.operation, r.via): r for r in report.results}
    assert set(found) == {(o, v) for o in ("command", "get") for v in ("http", "python")}
    for result in report.results:
        assert result.requests > 0, result
        assert result.errors == 0, result
        assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert found["command", "http"].ratio == pytest.approx(
        found["command", "http"].rate / found["command", "python"].rate
    )
    text = http_load.table(report)
    assert "command  http" in text
    assert report.to_dict()["results"][0]["rate"] > 0


@pytest.mark.slow
def test_the_profiled_server_and_the_raw_client_answer_the_same(
    http_load: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script's own profiled server, with a small thread pool, the pool settings and the
    raw client: every request answered 200, and the profile is written."""
    profile = tmp_path / "server.prof"
    monkeypatch.setenv(http_load.PROFILE_VARIABLE, str(profile))
    config = http_load.Config(
        database=f"sqlite:///{tmp_path / 'load.db'}",
        duration=0.4,
        warmup=0.1,
        clients=2,
        processes=4,
        ceiling=False,
        client="raw",
        server="profiled",
        threads=4,
        pool_size=5,
        max_overflow=0,
    )
    report = http_load.run(config)
    assert [(r.operation, r.via) for r in report.results] == [("command", "http"), ("get", "http")]
    for result in report.results:
        assert result.requests > 0, result
        assert result.errors == 0, result
        assert result.ratio is None
    assert profile.stat().st_size > 0


@pytest.mark.slow
def test_serve_with_two_processes_under_load(http_load: ModuleType, tmp_path: Path) -> None:
    """``flowkeeper serve --processes 2`` answers every request of a short run."""
    config = http_load.Config(
        database=f"sqlite:///{tmp_path / 'load.db'}",
        duration=0.4,
        warmup=0.1,
        clients=4,
        processes=8,
        ceiling=False,
        client="raw",
        server_processes=2,
        threads=4,
        http="h11",
        loop="asyncio",
    )
    report = http_load.run(config)
    for result in report.results:
        assert result.requests > 0, result
        assert result.errors == 0, result
