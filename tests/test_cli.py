"""The ``flowkeeper steps`` commands and ``flowkeeper migrate``, on every database.

Most tests go through Typer's ``CliRunner`` (with ``catch_exceptions=False``, so an error that
escaped as a traceback would fail the test instead of passing as exit code 1); one runs the
installed ``flowkeeper`` entry point as a real process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

import flowkeeper as fk
from flowkeeper.cli import app
from flowkeeper.storage.migrate import HEAD_REVISION
from tests.conftest import SERVER_URLS, create_server_database, drop_all_tables

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"


def invoke(*args: str) -> Result:
    """Run the CLI in-process; tracebacks propagate instead of becoming exit codes."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def run_json(*args: str) -> Any:
    """Run a command with ``--json``; it must succeed and print only JSON on stdout."""
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def assert_error(result: Result, *fragments: str) -> None:
    """Exit code 1, ``error: …`` on stderr with each fragment, nothing on stdout."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in records]


class Steps:
    """Ids of the steps a test database is seeded with."""

    def __init__(self, engine: fk.Engine) -> None:
        later = datetime.now(UTC) + timedelta(hours=1)
        self.ready_a = engine.add_step(
            fk.Step(
                "t/a",
                {"n": 1, "tags": ["x", "y"]},
                run_at=later,
                flow_id="flow-1",
                correlation_id="corr-1",
                search_key="key-a",
                description="first of all",
            )
        )
        self.ready_b = engine.add_step(fk.Step("t/b", {"n": 2}, run_at=later, search_key="key-b"))

        @engine.step("t/done")
        def done(step: fk.StepContext) -> None:
            return None

        self.done = engine.add_step(fk.Step("t/done", {"n": 3}, flow_id="flow-1"))
        engine.run(workers=1, until_idle=True)
        self.failed = engine.add_step(fk.Step("t/broken", {"n": 4}, run_at=later))
        assert engine.fail_steps(fk.Search(id=self.failed), "broken on purpose") == [self.failed]


@pytest.fixture
def seeded(engine: fk.Engine) -> Steps:
    return Steps(engine)


@pytest.fixture
def unmigrated_url(db: str, tmp_path: Path) -> str:
    """A database of kind ``db`` without Flowkeeper's tables, used by this module alone.

    Not ``empty_db_url``: on a server that one is shared with other test modules, and a run
    alongside (migrating it) would make these tests flaky.
    """
    if db == "sqlite":
        return f"sqlite:///{tmp_path / 'unmigrated.db'}"
    base = sa.make_url(SERVER_URLS[db]).database or "flowkeeper_test"
    url = create_server_database(db, f"{base}_cli_unmigrated")
    drop_all_tables(url)
    return url


# -- list ------------------------------------------------------------------------------------


def test_list_json_is_the_engines_search(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    found = run_json("steps", "list", "-d", db_url)

    expected = engine.search()
    assert set(found) == {"ready", "done", "failed"}
    for queue, records in expected.items():
        assert found[queue] == [r.to_dict() for r in records]
    assert ids(found["ready"]) == [seeded.ready_a, seeded.ready_b]
    assert ids(found["done"]) == [seeded.done]
    assert ids(found["failed"]) == [seeded.failed]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--name", "t/a"], {"ready_a"}),
        (["--flow-id", "flow-1"], {"ready_a", "done"}),
        (["--correlation-id", "corr-1"], {"ready_a"}),
        (["--search-key", "key-%"], {"ready_a", "ready_b"}),
        (["--search-key", "key-b"], {"ready_b"}),
        (["--description", "first%"], {"ready_a"}),
        (["--match-description", "broken on purpose"], {"failed"}),
        (["--name", "t/a", "--flow-id", "other"], set()),
    ],
)
def test_list_filters(db_url: str, seeded: Steps, options: list[str], expected: set[str]) -> None:
    found = run_json("steps", "list", "-d", db_url, *options)

    got = {record["id"] for records in found.values() for record in records}
    assert got == {getattr(seeded, name) for name in expected}


def test_list_filters_by_id_queue_and_limit(db_url: str, seeded: Steps) -> None:
    by_id = run_json("steps", "list", "-d", db_url, "--id", str(seeded.done))
    assert by_id == {"ready": [], "done": [by_id["done"][0]], "failed": []}
    assert by_id["done"][0]["id"] == seeded.done

    two_queues = run_json("steps", "list", "-d", db_url, "-q", "failed", "--queue", "ready")
    assert list(two_queues) == ["failed", "ready"]
    assert ids(two_queues["failed"]) == [seeded.failed]

    limited = run_json("steps", "list", "-d", db_url, "--limit", "1", "--queue", "ready")
    assert ids(limited["ready"]) == [seeded.ready_a]


def test_list_filters_by_creation_time(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    created = engine.get_step(seeded.failed).created_at
    assert created.tzinfo is not None

    since = run_json("steps", "list", "-d", db_url, "--created-from", created.isoformat())
    before = run_json("steps", "list", "-d", db_url, "--created-to", created.isoformat())
    zulu = created.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    since_zulu = run_json("steps", "list", "-d", db_url, "--created-from", zulu)

    assert ids(since["failed"]) == [seeded.failed]
    assert since["ready"] == []
    assert since["done"] == []
    assert ids(before["ready"]) == [seeded.ready_a, seeded.ready_b]
    assert before["failed"] == []
    assert since_zulu == since


def test_list_shows_a_table_per_queue(db_url: str, seeded: Steps) -> None:
    result = invoke("steps", "list", "-d", db_url)

    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "ready: 2 steps" in out
    assert "done: 1 step" in out
    assert "failed: 1 step" in out
    for header in ("id", "name", "queue", "execs", "run at", "created", "flow id", "locked by"):
        assert header in out
    assert "t/a" in out
    assert "t/broken" in out
    assert "first of all" in out
    assert "broken on purpose" in out
    assert "flow-1" in out
    assert "+00:00" not in out
    assert "Z" in out


def test_list_tells_generated_flow_ids_apart(engine: fk.Engine, db_url: str) -> None:
    """Flow ids made in the same minute share their first digits (the time): the list shows
    their ends."""
    ids = engine.add_steps(fk.Step("t/first"), fk.Step("t/second"))
    flows = [str(engine.get_step(i).flow_id) for i in ids]
    assert flows[0][:8] == flows[1][:8]

    out = invoke("steps", "list", "-d", db_url, "--queue", "ready").stdout
    for flow in flows:
        assert "…" + flow[-8:] in out


def test_list_says_when_a_queue_has_nothing(db_url: str) -> None:
    result = invoke("steps", "list", "-d", db_url, "--queue", "failed")

    assert result.exit_code == 0
    assert result.stdout.strip() == "failed: no matching steps"


# -- show ------------------------------------------------------------------------------------


def test_show_json_is_the_stored_step(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    shown = run_json("steps", "show", str(seeded.ready_a), "-d", db_url)

    assert shown == engine.get_step(seeded.ready_a).to_dict()
    assert shown["state"] == {"n": 1, "tags": ["x", "y"]}
    assert shown["queue"] == "ready"


def test_show_prints_every_field_and_pretty_state(
    engine: fk.Engine, db_url: str, seeded: Steps
) -> None:
    result = invoke("steps", "show", str(seeded.ready_a), "-d", db_url)

    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for field in fk.StepRecord.__dataclass_fields__:
        assert field in out
    assert '"tags": [' in out  # pretty-printed over several lines
    run_at = engine.get_step(seeded.ready_a).run_at.astimezone(UTC)
    assert run_at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z" in out
    assert "first of all" in out


def test_show_unknown_step(db_url: str) -> None:
    assert_error(invoke("steps", "show", "987654", "-d", db_url), "StepNotFound", "987654")


# -- count -----------------------------------------------------------------------------------


def test_count(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    assert run_json("steps", "count", "-d", db_url) == engine.count()
    assert run_json("steps", "count", "-d", db_url) == {"ready": 2, "done": 1, "failed": 1}
    assert run_json("steps", "count", "-d", db_url, "--flow-id", "flow-1") == {
        "ready": 1,
        "done": 1,
        "failed": 0,
    }

    result = invoke("steps", "count", "-d", db_url, "--search-key", "key-%")
    assert result.exit_code == 0
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["│", "ready", "│", "2", "│"] in lines
    assert ["│", "total", "│", "2", "│"] in lines


# -- activate --------------------------------------------------------------------------------


def test_activate_with_args(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    before = datetime.now(UTC)
    answer = run_json(
        "steps", "activate", str(seeded.ready_a), "--args", '{"approved": true}', "-d", db_url
    )

    assert answer == {"id": seeded.ready_a, "activated": True}
    step = engine.get_step(seeded.ready_a)
    assert step.activation_args == {"approved": True}
    assert step.run_at <= datetime.now(UTC)
    assert step.run_at >= before - timedelta(seconds=5)

    result = invoke("steps", "activate", str(seeded.ready_b), "-d", db_url)
    assert result.exit_code == 0
    assert f"Step {seeded.ready_b} activated" in result.stdout
    assert engine.get_step(seeded.ready_b).activation_args is None


def test_activate_a_finished_step_is_refused(db_url: str, seeded: Steps) -> None:
    result = invoke("steps", "activate", str(seeded.done), "-d", db_url, "--json")

    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"id": seeded.done, "activated": False}
    assert "not activated" in result.stderr


def test_activate_unknown_step(db_url: str) -> None:
    assert_error(invoke("steps", "activate", "987654", "-d", db_url), "StepNotFound")


@pytest.mark.parametrize("args", ["{bad", "[1, 2", "", "nan-ish"])
def test_activate_with_bad_json(engine: fk.Engine, db_url: str, seeded: Steps, args: str) -> None:
    result = invoke("steps", "activate", str(seeded.ready_a), "--args", args, "-d", db_url)

    assert_error(result, "InvalidArgument", "--args is not valid JSON")
    assert engine.get_step(seeded.ready_a).activation_args is None


# -- reexecute -------------------------------------------------------------------------------


def test_reexecute_failed_and_done(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    new = run_json("steps", "reexecute", "--name", "t/broken", "-d", db_url)["ids"]

    assert len(new) == 1
    copy = engine.get_step(new[0])
    assert (copy.queue, copy.name, copy.state) == ("ready", "t/broken", {"n": 4})
    assert engine.get_step(seeded.failed).queue == "failed"  # the original stays

    nothing = run_json("steps", "reexecute", "--name", "t/done", "-d", db_url)
    assert nothing == {"ids": []}  # default queue: failed only

    result = invoke("steps", "reexecute", "--flow-id", "flow-1", "--queue", "done", "-d", db_url)
    assert result.exit_code == 0, result.stderr
    assert "Re-executing 1 step as new ready steps" in result.stdout
    assert engine.count(fk.Search(name="t/done")) == {"ready": 1, "done": 1, "failed": 0}


def test_reexecute_needs_a_filter_or_all(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    assert_error(invoke("steps", "reexecute", "-d", db_url), "InvalidArgument", "--all")
    assert engine.count()["ready"] == 2

    new = run_json("steps", "reexecute", "--all", "-q", "failed", "-q", "done", "-d", db_url)
    assert len(new["ids"]) == 2
    assert engine.count()["ready"] == 4


# -- fail ------------------------------------------------------------------------------------


def test_fail_steps(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    failed = run_json(
        "steps", "fail", "--search-key", "key-%", "--description", "by hand", "-d", db_url
    )

    assert sorted(failed["ids"]) == sorted([seeded.ready_a, seeded.ready_b])
    for step_id in failed["ids"]:
        step = engine.get_step(step_id)
        assert (step.queue, step.description) == ("failed", "by hand")
    assert engine.count() == {"ready": 0, "done": 1, "failed": 3}

    result = invoke("steps", "fail", "--name", "t/a", "-d", db_url)
    assert result.exit_code == 0
    assert "nothing failed" in result.stdout


def test_fail_matches_description_separately(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    failed = run_json(
        "steps", "fail", "--match-description", "first%", "--description", "x", "-d", db_url
    )

    assert failed == {"ids": [seeded.ready_a]}
    assert engine.get_step(seeded.ready_a).description == "x"


def test_fail_without_a_filter_is_refused(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    result = invoke("steps", "fail", "--description", "everything", "-d", db_url)

    assert_error(result, "InvalidArgument", "at least one filter")
    assert engine.count()["ready"] == 2


# -- errors shared by every command -------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["steps", "list"],
        ["steps", "count"],
        ["steps", "reexecute", "--all"],
        ["steps", "fail"],
    ],
)
def test_naive_and_malformed_times_are_refused(db_url: str, command: list[str]) -> None:
    naive = invoke(*command, "--created-from", "2025-01-31T12:00:00", "-d", db_url)
    assert_error(naive, "NaiveDatetimeError", "--created-from", "time zone")

    naive_to = invoke(*command, "--created-to", "2025-01-31", "-d", db_url)
    assert_error(naive_to, "--created-to", "time zone")

    garbage = invoke(*command, "--created-to", "yesterday", "-d", db_url)
    assert_error(garbage, "InvalidArgument", "not an ISO 8601 time")


@pytest.mark.parametrize(
    "command",
    [
        ["steps", "list"],
        ["steps", "show", "1"],
        ["steps", "count"],
        ["steps", "activate", "1"],
        ["steps", "reexecute", "--all"],
        ["steps", "fail", "--name", "x"],
    ],
)
def test_unmigrated_database(unmigrated_url: str, command: list[str]) -> None:
    result = invoke(*command, "-d", unmigrated_url, "--json")

    assert_error(result, "MigrationRequired", "flowkeeper migrate")


@pytest.mark.parametrize("command", [["steps", "count"], ["steps", "show", "1"], ["migrate"]])
def test_unreachable_database(command: list[str]) -> None:
    result = invoke(*command, "-d", UNREACHABLE, "--json")

    assert_error(result, "DatabaseUnavailable", "cannot reach the database", "127.0.0.1:1")


def test_unsupported_database_url() -> None:
    result = invoke("steps", "count", "-d", "oracle://scott@db/x")

    assert_error(result, "InvalidDatabaseURL", "oracle")


# -- migrate ---------------------------------------------------------------------------------


def test_migrate_then_use(unmigrated_url: str) -> None:
    first = run_json("migrate", "-d", unmigrated_url)
    again = invoke("migrate", "-d", unmigrated_url)

    assert (first["before"], first["after"]) == (None, HEAD_REVISION)
    assert first["database"] == fk.Engine(unmigrated_url).url.render_as_string(hide_password=True)
    assert again.exit_code == 0
    assert "nothing to do" in again.stdout
    assert run_json("steps", "count", "-d", unmigrated_url) == {"ready": 0, "done": 0, "failed": 0}


# -- the real entry point ----------------------------------------------------------------------


def entry_point() -> str:
    script = Path(sys.executable).with_name("flowkeeper")
    if not script.exists():
        pytest.skip("the flowkeeper script is not installed next to this Python")
    return str(script)


def test_entry_point_exit_codes(engine: fk.Engine, db_url: str, seeded: Steps) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [entry_point(), *args], capture_output=True, text=True, timeout=60, check=False
        )

    counted = run("steps", "count", "-d", db_url, "--json")
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout) == engine.count()

    missing = run("steps", "show", "987654", "-d", db_url)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: StepNotFound: no step with id 987654")
    assert "Traceback" not in missing.stderr
    assert missing.stdout == ""

    unreachable = run("steps", "list", "-d", UNREACHABLE)
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: DatabaseUnavailable")

    usage = run("steps", "list", "--queue", "sideways", "-d", db_url)
    assert usage.returncode == 2  # a usage error, reported by Typer
