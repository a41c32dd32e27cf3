"""``flowkeeper processes``: create, show, list, commands, execute, history, set-state and
delete, with the rules of ``tests/apps/process_app.py``, on every database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import flowkeeper as fk
from flowkeeper.cli.processes import parse_params
from flowkeeper.storage.database import URL_ENVIRONMENT_VARIABLE
from tests.apps import process_app
from tests.cli import VACATION, assert_error, invoke, run_json, run_ok

APP = "tests.apps.process_app:make_engine"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def vacation(db_url: str) -> str:
    """``db_url`` with VacationRequest.xml (process name SimpleWF) imported."""
    run_ok("schemes", "import", str(VACATION), "-d", db_url)
    return db_url


def proc(db_url: str, *args: str) -> Any:
    """``flowkeeper processes ARGS --app APP -d db_url --json``, which must succeed."""
    return run_json("processes", *args, "--app", APP, "-d", db_url)


def create(db_url: str, *args: str) -> str:
    """Create a SimpleWF process authored by alice; return its id."""
    result = run_ok(
        "processes", "create", "SimpleWF", "--param", "Author=alice", *args,
        "--app", APP, "-d", db_url,
    )  # fmt: skip
    return result.stdout.strip()


def words(text: str) -> str:
    """``text`` with every run of white space made one space (tables pad with many)."""
    return " ".join(text.split())


# -- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["Amount=120"], {"Amount": 120}),
        (["Comment=ok"], {"Comment": "ok"}),
        (["Rate=1.5", "Flag=true", "Nothing=null"], {"Rate": 1.5, "Flag": True, "Nothing": None}),
        (["List=[1, 2]", 'Obj={"a": 1}'], {"List": [1, 2], "Obj": {"a": 1}}),
        (['Quoted="120"', "Code=007", "Empty="], {"Quoted": "120", "Code": "007", "Empty": ""}),
        (["Equation=a=b", " Spaced =x y"], {"Equation": "a=b", "Spaced": "x y"}),
        (
            ["NaN=NaN", "Inf=Infinity", "Big=1e999"],
            {"NaN": "NaN", "Inf": "Infinity", "Big": "1e999"},
        ),
    ],
)
def test_param_values_are_json_when_they_parse(given: list[str], expected: dict[str, Any]) -> None:
    assert parse_params(given) == expected


def test_params_json_and_params_combine() -> None:
    assert parse_params(["B=2", "C=x"], '{"A": 1, "B": 1}') == {"A": 1, "B": 2, "C": "x"}
    assert parse_params(None, None) == {}


@pytest.mark.parametrize(
    ("given", "params_json", "fragment"),
    [
        (["Amount"], None, "--param 'Amount' is not NAME=VALUE"),
        (["=5"], None, "--param '=5' is not NAME=VALUE"),
        (["A=1", "A=2"], None, "--param A is given twice"),
        (None, "{nope", "--params-json is not valid JSON"),
        (None, "[1]", "--params-json must be a JSON object"),
    ],
)
def test_bad_params_are_refused(
    given: list[str] | None, params_json: str | None, fragment: str
) -> None:
    with pytest.raises(fk.InvalidArgument, match=re.escape(fragment)):
        parse_params(given, params_json)


# -- create and show ---------------------------------------------------------------------------


def test_create_prints_the_id_and_show_the_process(vacation: str, engine: fk.Engine) -> None:
    pid = create(vacation, "--param", "Sum=120", "--identity", "alice")

    stored = engine.processes.get(pid)
    assert (stored.scheme_code, stored.scheme_version) == ("SimpleWF", 1)
    assert stored.activity == "VacationRequestCreated"
    assert dict(stored.parameters) == {"Author": "alice", "Sum": 120}

    shown = proc(vacation, "show", pid)
    assert shown == {
        "id": pid,
        "scheme_code": "SimpleWF",
        "scheme_version": 1,
        "activity": "VacationRequestCreated",
        "state": "VacationRequestCreated",
        "status": "Idled",
        "parameters": {"Author": "alice", "Sum": 120},
        "tenant_id": None,
        "parent_id": None,
        "root_id": pid,
        "created_at": stored.created_at.isoformat(),
        "updated_at": stored.updated_at.isoformat(),
        "row_version": 1,
    }

    human = words(run_ok("processes", "show", pid, "--app", APP, "-d", vacation).stdout)
    for expected in [
        f"id {pid}",
        "scheme SimpleWF@1",
        "activity VacationRequestCreated",
        "state VacationRequestCreated",
        "status Idled",
        '"Author": "alice"',
        '"Sum": 120',
        "created at 20",
        "updated at 20",
    ]:
        assert expected in human


def test_create_with_an_id_and_params_json(vacation: str) -> None:
    created = proc(
        vacation, "create", "SimpleWF", "--id", "vac-1",
        "--params-json", '{"Author": "bob", "Sum": 50, "Days": [1, 2]}', "--param", "Sum=75",
    )  # fmt: skip

    assert created["id"] == "vac-1"
    assert created["parameters"] == {"Author": "bob", "Sum": 75, "Days": [1, 2]}
    assert_error(
        invoke("processes", "create", "SimpleWF", "--id", "vac-1", "--app", APP, "-d", vacation),
        "ProcessExists",
        "'vac-1'",
    )


def test_create_errors(vacation: str) -> None:
    assert_error(
        invoke("processes", "create", "Nope", "--app", APP, "-d", vacation),
        "SchemeNotFound",
        "'Nope'",
    )
    assert_error(
        invoke("processes", "create", "SimpleWF", "--param", "Sum", "--app", APP, "-d", vacation),
        "InvalidArgument",
        "--param 'Sum' is not NAME=VALUE",
    )
    assert_error(
        invoke(
            "processes", "create", "SimpleWF", "--params-json", "7", "--app", APP, "-d", vacation
        ),
        "--params-json must be a JSON object",
    )
    assert run_json("processes", "list", "-d", vacation) == []


# -- commands and execute ----------------------------------------------------------------------


def test_commands_follow_the_rules(vacation: str) -> None:
    pid = create(vacation)

    commands = proc(vacation, "commands", pid, "--identity", "alice")
    assert commands == [
        {
            "name": "StartSigning",
            "caption": "Start signing",
            "classifier": "Direct",
            "input_parameters": [
                {"name": "Comment", "parameter": "Comment", "required": False, "default": ""}
            ],
        }
    ]
    assert proc(vacation, "commands", pid, "-i", "mary") == []

    table = words(
        run_ok("processes", "commands", pid, "-i", "alice", "--app", APP, "-d", vacation).stdout
    )
    assert "Commands for 'alice'" in table
    assert "StartSigning Start signing Direct Comment" in table
    nothing = run_ok("processes", "commands", pid, "-i", "mary", "--app", APP, "-d", vacation)
    assert words(nothing.stdout) == (
        f"No commands for 'mary' on process {pid} in activity VacationRequestCreated, "
        "state VacationRequestCreated, status Idled"
    )


def test_commands_need_an_identity(vacation: str) -> None:
    pid = create(vacation)
    result = invoke("processes", "commands", pid, "--app", APP, "-d", vacation)
    assert result.exit_code == 2  # a usage error, reported by Typer
    assert "--identity" in result.stderr


def test_execute_moves_the_process(vacation: str, engine: fk.Engine) -> None:
    pid = create(vacation, "--param", "Sum=120")

    started = proc(
        vacation, "execute", pid, "StartSigning", "--identity", "alice", "--param", "Comment=ok"
    )
    assert started["executed"] is True
    assert started["process"]["activity"] == "ManagerSigning"
    assert [(t["seq"], t["command"], t["to_activity"]) for t in started["transitions"]] == [
        (1, "StartSigning", "ManagerSigning")
    ]

    # Sum > 100: the manager's approval goes on to the big boss.
    approved = run_ok(
        "processes", "execute", pid, "Approve", "-i", "mary", "--app", APP, "-d", vacation
    )
    assert words(approved.stdout) == words(
        "executed: yes\n"
        "  2. ManagerSigning --Command[Approve]--> BigBossSigning\n"
        "now in activity BigBossSigning, state BigBossSigning, status Idled"
    )
    assert engine.processes.get(pid).activity == "BigBossSigning"

    with_conditions = proc(vacation, "commands", pid, "-i", "boss", "--check-conditions")
    assert [c["name"] for c in with_conditions] == ["Approve", "Reject"]


def test_execute_that_moves_nothing(engine: fk.Engine, db_url: str, tmp_path: Path) -> None:
    # Without the Otherwise transition, Approve with Sum <= 100 has no transition to take.
    text = VACATION.read_text(encoding="utf-8")
    text = re.sub(
        r'<Transition Name="ManagerSigning_Approved_1".*?</Transition>', "", text, flags=re.S
    )
    strict = tmp_path / "Strict.xml"
    strict.write_text(text, encoding="utf-8")
    run_ok("schemes", "import", str(strict), "-d", db_url)
    pid = create(db_url, "--param", "Sum=50")
    proc(db_url, "execute", pid, "StartSigning", "-i", "alice")

    checked = proc(db_url, "commands", pid, "-i", "mary", "--check-conditions")
    unchecked = proc(db_url, "commands", pid, "-i", "mary")
    result = run_ok(
        "processes", "execute", pid, "Approve", "-i", "mary", "--app", APP, "-d", db_url
    )
    as_json = proc(db_url, "execute", pid, "Approve", "-i", "mary")

    assert [c["name"] for c in checked] == ["Reject"]
    assert [c["name"] for c in unchecked] == ["Reject", "Approve"]
    assert words(result.stdout) == (
        "executed: no (no transition's conditions held) "
        "now in activity ManagerSigning, state ManagerSigning, status Idled"
    )
    assert (as_json["executed"], as_json["transitions"]) == (False, [])
    assert engine.processes.get(pid).row_version == 2


def test_execute_errors(vacation: str) -> None:
    pid = create(vacation)

    def execute(*args: str) -> Any:
        return invoke("processes", "execute", pid, *args, "--app", APP, "-d", vacation)

    assert_error(execute("Nope", "-i", "alice"), "CommandNotAvailable", "no command 'Nope'")
    assert_error(
        execute("Approve", "-i", "alice"),
        "CommandNotAvailable",
        "not available in activity 'VacationRequestCreated'",
        "'StartSigning'",
    )
    assert_error(execute("StartSigning", "-i", "mary"), "identity 'mary' may not execute")
    assert_error(
        execute("StartSigning", "-i", "alice", "--param", "Sum=1"),
        "InvalidCommandParameters",
        "no input parameter 'Sum'",
    )
    assert_error(execute("StartSigning", "-i", "alice", "--param", "Comment"), "NAME=VALUE")
    assert proc(vacation, "history", pid) == []


# -- history, list, set-state, delete ----------------------------------------------------------


def test_history(vacation: str) -> None:
    pid = create(vacation, "--param", "Sum=50")
    assert words(run_ok("processes", "history", pid, "--app", APP, "-d", vacation).stdout) == (
        f"Process {pid} has made no transitions yet."
    )
    proc(vacation, "execute", pid, "StartSigning", "-i", "alice")
    proc(vacation, "execute", pid, "Approve", "-i", "mary")

    history = proc(vacation, "history", pid)
    table = words(run_ok("processes", "history", pid, "--app", APP, "-d", vacation).stdout)

    assert [
        (h["seq"], h["command"], h["from_activity"], h["to_activity"], h["identity"])
        for h in history
    ] == [
        (1, "StartSigning", "VacationRequestCreated", "ManagerSigning", "alice"),
        (2, "Approve", "ManagerSigning", "AccountingReview", "mary"),
    ]
    assert set(history[0]) == {
        "seq", "transition", "from_activity", "to_activity", "from_state", "to_state",
        "command", "trigger", "classifier", "identity", "at",
    }  # fmt: skip
    assert history[1]["transition"] == "ManagerSigning_Approved_1"
    assert f"History of {pid}" in table
    assert "2 20" in table
    assert "ManagerSigning --Command[Approve]--> AccountingReview mary" in table
    assert "(ManagerSigning_Approved_1)" in table


def test_list_with_filters(vacation: str) -> None:
    first = create(vacation, "--id", "a-1")
    second = create(vacation, "--id", "a-2")
    create(vacation, "--id", "a-3")
    proc(vacation, "execute", second, "StartSigning", "-i", "alice")

    def listed(*filters: str) -> list[str]:
        return [p["id"] for p in proc(vacation, "list", *filters)]

    assert listed() == ["a-1", "a-2", "a-3"]
    assert listed("--scheme", "SimpleWF", "--activity", "ManagerSigning") == ["a-2"]
    assert listed("--status", "idled") == ["a-1", "a-2", "a-3"]
    assert listed("--status", "Finalized") == []
    assert listed("--scheme", "Other") == []
    assert listed("--limit", "2") == ["a-1", "a-2"]
    assert listed("--after", "a-1", "--limit", "1") == ["a-2"]

    table = words(run_ok("processes", "list", "--limit", "2", "-d", vacation).stdout)
    assert "2 processes (the first 2; raise --limit, or page with --after a-2)" in table
    assert f"{first} SimpleWF@1 VacationRequestCreated VacationRequestCreated Idled" in table
    assert "a-3" not in table
    none = run_ok("processes", "list", "--activity", "Nowhere", "-d", vacation)
    assert none.stdout.strip() == "No matching processes."
    assert invoke("processes", "list", "--status", "Sleeping", "-d", vacation).exit_code == 2


def test_set_state(vacation: str, engine: fk.Engine) -> None:
    pid = create(vacation)

    moved = proc(vacation, "set-state", pid, "AccountingReview")
    human = run_ok(
        "processes",
        "set-state",
        pid,
        "RequestApproved",
        "-i",
        "admin",
        "--app",
        APP,
        "-d",
        vacation,
    )

    assert moved["activity"] == "AccountingReview"
    assert words(human.stdout) == (
        f"Process {pid} is now in activity RequestApproved, state RequestApproved, status Finalized"
    )
    history = engine.processes.history(pid)
    assert [(h.trigger, h.to_state, h.identity) for h in history] == [
        ("SetState", "AccountingReview", None),
        ("SetState", "RequestApproved", "admin"),
    ]
    assert_error(
        invoke("processes", "set-state", pid, "Limbo", "--app", APP, "-d", vacation),
        "StateNotAvailable",
        "'Limbo'",
        "'ManagerSigning'",
    )


def test_delete(vacation: str, engine: fk.Engine) -> None:
    pid = create(vacation)
    keep = create(vacation)
    proc(vacation, "execute", pid, "StartSigning", "-i", "alice")

    assert proc(vacation, "delete", pid) == {"id": pid, "deleted": True}
    assert not engine.processes.exists(pid)
    assert engine.processes.exists(keep)
    human = run_ok("processes", "delete", keep, "--app", APP, "-d", vacation)
    assert human.stdout.strip() == f"Deleted process {keep}."
    assert_error(invoke("processes", "delete", pid, "-d", vacation), "no process", repr(pid))


@pytest.mark.parametrize(
    "command",
    [
        ["show", "ghost"],
        ["commands", "ghost", "-i", "alice"],
        ["execute", "ghost", "Approve", "-i", "alice"],
        ["history", "ghost"],
        ["set-state", "ghost", "ManagerSigning"],
        ["delete", "ghost"],
    ],
    ids=lambda c: c[0],
)
def test_unknown_process(vacation: str, command: list[str]) -> None:
    result = invoke("processes", *command, "--app", APP, "-d", vacation)
    assert_error(result, "ProcessNotFound: no process has the id 'ghost'")


# -- --app -------------------------------------------------------------------------------------


def test_without_app_the_missing_rule_is_named(vacation: str) -> None:
    pid = create(vacation)
    proc(vacation, "show", pid)  # what needs no rule works without --app too
    assert_error(
        invoke("processes", "commands", pid, "-i", "alice", "-d", vacation),
        "ActionNotRegistered",
        "rule 'Author'",
        "give --app module:engine",
    )


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("tests.apps.process_app", "--app must look like module:engine"),
        ("tests.apps.no_such_app:engine", "cannot import 'tests.apps.no_such_app'"),
        ("tests.apps.process_app:nothing", "has no attribute 'nothing'"),
        ("tests.apps.process_app:ROLES", "is a dict, not a flowkeeper.Engine"),
    ],
)
def test_bad_app(vacation: str, spec: str, fragment: str) -> None:
    assert_error(invoke("processes", "list", "--app", spec, "-d", vacation), fragment)


def test_database_sets_the_url_only_while_the_app_loads(vacation: str) -> None:
    before = os.environ.get(URL_ENVIRONMENT_VARIABLE)
    create(vacation)
    assert os.environ.get(URL_ENVIRONMENT_VARIABLE) == before


def test_an_app_engine_on_another_database_is_refused(
    vacation: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = fk.Engine(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.setattr(process_app, "engine", process_app.register(elsewhere))

    result = invoke("processes", "list", "--app", "tests.apps.process_app:engine", "-d", vacation)

    assert_error(result, "ConfigurationError", "elsewhere.db", "not on the --database")


def test_app_engine_attribute_in_a_real_process(vacation: str) -> None:
    """``module:engine`` built as ``fk.Engine()`` at import picks up --database."""
    env = {k: v for k, v in os.environ.items() if k != URL_ENVIRONMENT_VARIABLE}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "flowkeeper.cli", "processes", *args]
        command += ["--app", "tests.apps.process_app:engine", "-d", vacation]
        return subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    created = run("create", "SimpleWF", "--param", "Author=alice")
    assert created.returncode == 0, created.stderr
    pid = created.stdout.strip()
    commands = run("commands", pid, "-i", "alice", "--json")
    assert commands.returncode == 0, commands.stderr
    assert [c["name"] for c in json.loads(commands.stdout)] == ["StartSigning"]
    missing = run("show", "ghost")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ProcessNotFound: no process has the id 'ghost'")
    assert "Traceback" not in missing.stderr


def test_help_documents_every_command() -> None:
    for command in [
        "create", "show", "list", "commands", "execute", "history", "set-state", "delete"
    ]:  # fmt: skip
        result = run_ok("processes", command, "--help")
        for option in ["--app", "--database", "--json"]:
            assert option in result.stdout, (command, option)
