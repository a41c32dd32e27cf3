"""``flowkeeper demo``: the order flow runs to the end, on every database, again and again."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import flowkeeper as fk
from flowkeeper.cli import app
from flowkeeper.demo import CHARGE, EMAIL, JOIN, PLACE, RESERVE, SHIP, run_demo


def check_finished_flow(engine: fk.Engine, flow_id: str, steps: list[dict[str, Any]]) -> None:
    """The demo's outcome, checked against what the database holds for ``flow_id``."""
    stored = engine.search(fk.Search(flow_id=flow_id), limit=None)
    assert stored["ready"] == []
    assert stored["failed"] == []
    assert sorted(steps, key=lambda s: s["id"]) == [r.to_dict() for r in stored["done"]]

    names = Counter(s["name"] for s in steps)
    assert names == {PLACE: 1, RESERVE: 3, CHARGE: 1, JOIN: 1, SHIP: 1, EMAIL: 1}
    by_name = {s["name"]: s for s in steps}

    charge = by_name[CHARGE]
    assert charge["execution_count"] == 2
    assert charge["description"].startswith("attempt 1 failed, retrying at")
    assert "GatewayTimeout" in charge["description"]

    ship, email = by_name[SHIP], by_name[EMAIL]
    assert email["created_by_step_id"] == ship["id"]
    assert ship["created_by_step_id"] == by_name[JOIN]["id"]
    shipped = datetime.fromisoformat(ship["execution_started_at"])
    emailed = datetime.fromisoformat(email["execution_started_at"])
    assert emailed - shipped >= timedelta(seconds=1.9)
    assert datetime.fromisoformat(email["run_at"]) > shipped

    reserve_or_charge_started = [
        datetime.fromisoformat(s["execution_started_at"])
        for s in steps
        if s["name"] in (RESERVE, CHARGE)
    ]
    assert shipped >= max(reserve_or_charge_started)


def test_demo_runs_the_order_flow_and_again(
    engine: fk.Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # First run: the Python function, on the default database ($FLOWKEEPER_DATABASE_URL).
    monkeypatch.setenv("FLOWKEEPER_DATABASE_URL", db_url)
    out = io.StringIO()
    first = run_demo(None, Console(file=out, width=160))

    assert first.completed
    assert first.elapsed_s < 10
    assert first.database == engine.url.render_as_string(hide_password=True)
    check_finished_flow(engine, first.flow_id, [s.to_dict() for s in first.steps])
    text = out.getvalue()
    assert first.flow_id in text
    assert "GatewayTimeout" in text  # the charge's first failure, in the table
    assert f"Order {first.order_id}: 8 steps" in text
    assert "the charge ran 2 times" in text

    # Second run on the same database: the CLI, its own flow, only its own steps.
    result = CliRunner().invoke(app, ["demo", "-d", db_url, "--json"], catch_exceptions=False)

    assert result.exit_code == 0, result.stderr
    second = json.loads(result.stdout)
    assert second["completed"] is True
    assert second["flow_id"] != first.flow_id
    assert {s["flow_id"] for s in second["steps"]} == {second["flow_id"]}
    assert second["counts"] == {"ready": 0, "done": 8, "failed": 0}
    check_finished_flow(engine, second["flow_id"], second["steps"])
    assert "demo/order/follow-up-email" in result.stderr  # the table, kept off stdout
    assert engine.count() == {"ready": 0, "done": 16, "failed": 0}


def test_demo_gives_up_at_its_timeout(engine: fk.Engine, db_url: str) -> None:
    summary = run_demo(db_url, Console(file=io.StringIO()), timeout=0.3)

    assert not summary.completed
    assert summary.elapsed_s < 5
    assert summary.counts["ready"] >= 1
    assert "NOT FINISHED" in summary.headline()


def test_demo_leaves_other_applications_steps_alone(engine: fk.Engine, db_url: str) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    mine = engine.add_step(fk.Step("app/real-work", {"x": 1}, run_at=later))
    before = engine.get_step(mine)

    result = CliRunner().invoke(app, ["demo", "-d", db_url], catch_exceptions=False)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: InvalidArgument:")
    assert "1 ready steps that are not the demo's" in result.stderr
    assert engine.get_step(mine) == before
    assert engine.count() == {"ready": 1, "done": 0, "failed": 0}
