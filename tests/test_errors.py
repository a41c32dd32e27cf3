"""Bad input gets a specific exception that says what to do, and leaves the database as it was."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowkeeper as fk
from flowkeeper.storage.migrate import HEAD_REVISION, VERSION_TABLE


@pytest.fixture
def unchanged(engine: fk.Engine) -> Iterator[fk.Engine]:
    """The engine, with a few steps; the test must leave every queue as it found it."""
    first, _ = engine.add_steps(fk.Step("kept", {"n": 1}), fk.Step("tick", singleton=True))
    engine.fail_steps(fk.Search(id=first))
    before = engine.count()
    snapshot = engine.search(limit=None)
    yield engine
    assert engine.count() == before
    assert engine.search(limit=None) == snapshot


def expect(
    error: type[fk.FlowkeeperError], *fragments: str
) -> Callable[[Callable[[], object]], fk.FlowkeeperError]:
    """Call the function; it must raise ``error`` whose message holds every fragment."""

    def check(call: Callable[[], object]) -> fk.FlowkeeperError:
        with pytest.raises(error) as caught:
            call()
        message = str(caught.value)
        for fragment in fragments:
            assert fragment in message, (fragment, message)
        assert isinstance(caught.value, fk.FlowkeeperError)
        return caught.value

    return check


# -- bad steps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (object(), "Object of type object is not JSON serializable"),
        ({"tags": {"a", "b"}}, "Object of type set is not JSON serializable"),
        ({"ratio": math.nan}, "Out of range float values are not JSON compliant"),
        ([math.inf], "Out of range float values are not JSON compliant"),
    ],
)
def test_a_state_that_is_not_json(unchanged: fk.Engine, state: Any, reason: str) -> None:
    check = expect(fk.InvalidStep, "state of step 'v1/x' must be JSON-serialisable", reason)
    check(lambda: unchanged.add_step(fk.Step("v1/x", state)))
    check(lambda: unchanged.add_steps(fk.Step("ok"), fk.Step("v1/x", state)))


@pytest.mark.parametrize("name", ["", "   ", "\n"])
def test_an_empty_name(unchanged: fk.Engine, name: str) -> None:
    expect(fk.InvalidStep, "step name must not be empty")(lambda: unchanged.add_step(fk.Step(name)))


def test_a_name_too_long(unchanged: fk.Engine) -> None:
    expect(fk.InvalidStep, "step name is 256 characters long; the limit is 255")(
        lambda: unchanged.add_step(fk.Step("x" * 256))
    )
    step_id = unchanged.add_step(fk.Step("x" * 255))  # the limit itself is fine
    assert unchanged.get_step(step_id).name == "x" * 255
    unchanged.fail_steps(fk.Search(id=step_id))
    with unchanged.database.begin() as conn:  # leave the database as it was
        conn.execute(sa.text("DELETE FROM fk_steps_failed WHERE id = :id"), {"id": step_id})


@pytest.mark.parametrize("name", [None, 42, b"v1/x", ("v1", "x")])
def test_a_name_that_is_not_a_string(unchanged: fk.Engine, name: Any) -> None:
    expect(fk.InvalidStep, "step name")(lambda: unchanged.add_step(fk.Step(name)))


@pytest.mark.parametrize("name", ["nul\x00name", "half \udc80 a character"])
def test_a_name_no_database_can_store(unchanged: fk.Engine, name: str) -> None:
    expect(fk.InvalidStep, "step name must")(lambda: unchanged.add_step(fk.Step(name)))


def test_something_that_is_not_a_step(unchanged: fk.Engine) -> None:
    expect(fk.InvalidArgument, "expected fk.Step values, not list", "add_steps(*steps)")(
        lambda: unchanged.add_steps([fk.Step("a")])  # type: ignore[arg-type]
    )
    expect(fk.InvalidArgument, "expected fk.Step values, not dict")(
        lambda: unchanged.add_steps(fk.Step("a"), {"name": "b"})  # type: ignore[arg-type]
    )


def test_a_clashing_singleton_writes_nothing(unchanged: fk.Engine) -> None:
    expect(fk.SingletonExists, "'tick'", "already in the ready queue", "singleton=False")(
        lambda: unchanged.add_steps(fk.Step("new"), fk.Step("tick", singleton=True))
    )


def test_an_unknown_step_id(unchanged: fk.Engine) -> None:
    missing = 10**9
    check = expect(fk.StepNotFound, f"no step with id {missing}", "ready, done or failed")
    check(lambda: unchanged.get_step(missing))
    check(lambda: unchanged.activate(missing, {"a": 1}))
    assert unchanged.fail_steps(fk.Search(id=missing)) == []
    assert unchanged.reexecute(fk.Search(id=missing)) == []
    assert issubclass(fk.StepNotFound, LookupError)
    impossible = expect(fk.InvalidArgument, "between 1 and 2**63-1")
    for step_id in (0, -1, 2**63, 10**30):
        impossible(lambda step_id=step_id: unchanged.get_step(step_id))
        impossible(lambda step_id=step_id: unchanged.activate(step_id))
    assert unchanged.search(fk.Search(id=2**63 - 1)) == {"ready": [], "done": [], "failed": []}


def test_bad_operation_arguments(unchanged: fk.Engine) -> None:
    expect(fk.InvalidArgument, "unknown queue 'archive'", "'ready', 'done', 'failed'")(
        lambda: unchanged.search(queues=["archive"])
    )
    expect(fk.InvalidArgument, "unknown queue 'ready'", "'done', 'failed'")(
        lambda: unchanged.reexecute(fk.Search(), queues=["ready"])
    )
    expect(fk.InvalidArgument, "fail_steps needs a Search with at least one field")(
        lambda: unchanged.fail_steps(fk.Search())
    )
    expect(fk.InvalidArgument, "add_step_if_absent needs a Search with at least one field")(
        lambda: unchanged.add_step_if_absent(fk.Step("a"), fk.Search())
    )
    expect(fk.InvalidArgument, "expected an fk.Search, not str")(
        lambda: unchanged.fail_steps("kept")  # type: ignore[arg-type]
    )
    expect(fk.InvalidArgument, "limit must be a positive int")(lambda: unchanged.search(limit=0))
    expect(fk.InvalidStep, "activation args must be JSON-serialisable")(
        lambda: unchanged.activate(unchanged.search()["ready"][0].id, object())
    )


# Whatever Step accepts, every database stores and gives back unchanged.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3)
    ),
    max_leaves=10,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=any_text, state=json_values, search_key=st.none() | any_text)
def test_every_valid_step_is_stored_as_given(
    engine: fk.Engine, name: str, state: Any, search_key: str | None
) -> None:
    try:
        step = fk.Step(name, state, search_key=search_key, description=name)
    except fk.InvalidStep:
        return
    record = engine.get_step(engine.add_step(step))
    assert record.name == name
    assert record.search_key == search_key
    assert record.description == name
    assert record.state == json.loads(step.state_json)
    assert engine.search(fk.Search(id=record.id, name=name))["ready"] == [record]


# -- bad database URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("not a url", "cannot parse database URL 'not a url'"),
        ("", "cannot parse database URL"),
        ("oracle://scott@x/db", "names 'oracle'; Flowkeeper supports sqlite, postgresql"),
        ("mssql+pyodbc://x/db", "names 'mssql'"),
        ("postgresql+nosuchdriver://x/db", "postgresql+nosuchdriver"),
        ("sqlite:///x.db?timeout=abc", "invalid database URL"),
    ],
)
def test_a_malformed_url(url: str, fragment: str) -> None:
    error = expect(fk.InvalidDatabaseURL, fragment)(lambda: fk.Engine(url))
    assert isinstance(error, fk.ConfigurationError)


def test_a_malformed_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWKEEPER_DATABASE_URL", "nonsense")
    expect(fk.InvalidDatabaseURL, "'nonsense'")(fk.Engine)


def test_a_password_never_appears_in_messages() -> None:
    error = expect(fk.DatabaseUnavailable, "postgresql+psycopg://root:***@127.0.0.1:1/x")(
        lambda: fk.Engine("postgresql://root:s3cret@127.0.0.1:1/x").count()
    )
    assert "s3cret" not in str(error)


@pytest.mark.parametrize("url", ["postgresql://root@127.0.0.1:1/x", "mysql://root@127.0.0.1:1/x"])
def test_an_unreachable_database(url: str) -> None:
    with fk.Engine(url) as engine:
        check = expect(fk.DatabaseUnavailable, "cannot reach the database at", "127.0.0.1:1")
        for operation in (
            engine.count,
            engine.migrate,
            lambda: engine.add_step(fk.Step("a")),
            lambda: engine.run(workers=1, until_idle=True, handle_signals=False),
        ):
            started = time.monotonic()
            error = check(operation)
            assert time.monotonic() - started < 5
            assert "check that it is running" in str(error)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_a_database_that_does_not_answer_times_out(silent_server: int) -> None:
    url = f"postgresql://root@127.0.0.1:{silent_server}/x?connect_timeout=1"
    started = time.monotonic()
    expect(fk.DatabaseUnavailable, "cannot reach the database", "timeout")(
        lambda: fk.Engine(url).count()
    )
    assert time.monotonic() - started < 5


def test_an_unknown_database_on_a_running_server(db: str, db_url: str) -> None:
    if db == "sqlite":
        url = "sqlite:////nonexistent/directory/app.db"
    else:
        url = sa.make_url(db_url).set(database="fk_no_such_db").render_as_string(False)
    expect(fk.DatabaseUnavailable, "cannot reach the database")(lambda: fk.Engine(url).count())


# -- the schema ------------------------------------------------------------------------------


def test_an_unmigrated_database(empty_db_url: str) -> None:
    with fk.Engine(empty_db_url) as engine:
        check = expect(
            fk.MigrationRequired, "no Flowkeeper tables", "engine.migrate()", "flowkeeper migrate"
        )
        check(engine.count)
        check(lambda: engine.add_step(fk.Step("a")))
        check(engine.check_schema)
        check(lambda: engine.run(workers=1, until_idle=True, handle_signals=False))
        with engine.database.begin() as conn:
            check(lambda: engine.add_step(fk.Step("a"), connection=conn))
            conn.execute(sa.text("SELECT 1"))  # the caller's transaction is still usable
        assert not sa.inspect(engine.database).has_table("fk_steps_ready")  # nothing created


def set_revision(engine: fk.Engine, revision: str) -> None:
    with engine.database.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :r"), {"r": revision})


def test_a_schema_at_an_older_revision(db_url: str) -> None:
    with fk.Engine(db_url) as engine:
        set_revision(engine, "0001")
        check = expect(
            fk.MigrationRequired, "revision 0001", f"needs {HEAD_REVISION}", "engine.migrate()"
        )
        check(engine.count)
        check(lambda: engine.add_step(fk.Step("a")))
        set_revision(engine, HEAD_REVISION)
        assert engine.count()["ready"] == 0


def test_a_schema_newer_than_the_code(db_url: str) -> None:
    with fk.Engine(db_url) as engine:
        set_revision(engine, "9999_from_the_future")
        check = expect(
            fk.SchemaNewerThanCode,
            "'9999_from_the_future'",
            "does not know",
            "upgrade the flowkeeper package",
        )
        check(engine.count)
        check(engine.migrate)  # never downgrades or touches it
        with engine.database.connect() as conn:
            stored = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        assert stored == "9999_from_the_future"
        set_revision(engine, HEAD_REVISION)


def test_every_error_is_a_flowkeeper_error() -> None:
    for name in fk.__all__:
        value = getattr(fk, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, fk.FlowkeeperError), name
