"""Connecting: URL defaults, per-database set-up, error translation, stored time and ids."""

from __future__ import annotations

import gc
import os
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

import flowkeeper as fk
from flowkeeper.storage import database
from flowkeeper.storage.database import (
    describe,
    is_transient,
    kind_of,
    resolve_url,
    translate_connection_errors,
)
from flowkeeper.storage.tables import steps_ready
from flowkeeper.storage.types import UTCDateTime

# -- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "resolved", "kind"),
    [
        ("sqlite:///app.db", "sqlite:///app.db", "sqlite"),
        ("sqlite://", "sqlite://", "sqlite"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db", "postgresql"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db", "postgresql"),
        ("postgres+psycopg://u@h/db", "postgresql+psycopg://u@h/db", "postgresql"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db", "postgresql"),
        ("mysql://u@h/db", "mysql+pymysql://u@h/db?charset=utf8mb4", "mysql"),
        ("mariadb://u@h/db", "mariadb+pymysql://u@h/db?charset=utf8mb4", "mysql"),
        ("mysql+pymysql://u@h/db?charset=utf8", "mysql+pymysql://u@h/db?charset=utf8", "mysql"),
    ],
)
def test_urls_get_the_driver_flowkeeper_installs(given: str, resolved: str, kind: str) -> None:
    url = resolve_url(given)
    assert url.render_as_string(hide_password=False) == resolved
    assert kind_of(url) == kind


def test_the_url_comes_from_the_environment_else_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWKEEPER_DATABASE_URL", raising=False)
    assert str(resolve_url(None)) == "sqlite:///flowkeeper.db"
    monkeypatch.setenv("FLOWKEEPER_DATABASE_URL", "postgresql://u@h/db")
    assert str(resolve_url(None)) == "postgresql+psycopg://u@h/db"
    assert str(resolve_url("sqlite:///given.db")) == "sqlite:///given.db"
    monkeypatch.setenv("FLOWKEEPER_DATABASE_URL", "")
    assert str(resolve_url(None)) == "sqlite:///flowkeeper.db"


def test_a_url_object_is_accepted() -> None:
    assert str(resolve_url(sa.make_url("postgresql://u@h/db"))) == "postgresql+psycopg://u@h/db"


def test_passwords_are_hidden() -> None:
    url = resolve_url("postgresql://user:secret@h/db")
    assert "secret" not in describe(url)
    engine = fk.Engine(url)
    assert "secret" not in repr(engine)
    assert repr(engine) == "<flowkeeper.Engine postgresql+psycopg://user:***@h/db>"


def test_engine_options_reach_sqlalchemy_and_bad_ones_are_refused() -> None:
    engine = fk.Engine("postgresql://u@h/db", pool_size=3)
    assert engine.database.pool.size() == 3  # type: ignore[attr-defined]
    with pytest.raises(fk.InvalidDatabaseURL, match="no_such_option"):
        fk.Engine("postgresql://u@h/db", no_such_option=1)


def test_connect_timeouts_are_set_for_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, object] = {}
    real = sa.create_engine

    def spy(url: object, **kwargs: object) -> sa.Engine:
        captured.update(kwargs)
        return real(url, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(database.sa, "create_engine", spy)
    for url in ("postgresql://u@h/db", "mysql://u@h/db"):
        database.create_database(resolve_url(url))
        assert captured["connect_args"] == {"connect_timeout": database.CONNECT_TIMEOUT_S}
    # The URL's own timeout wins; connect_args given by the caller are merged.
    database.create_database(resolve_url("mysql://u@h/db?connect_timeout=2"))
    assert captured["connect_args"] == {}
    database.create_database(resolve_url("postgresql://u@h/db"), connect_args={"sslmode": "off"})
    assert captured["connect_args"] == {
        "connect_timeout": database.CONNECT_TIMEOUT_S,
        "sslmode": "off",
    }


# -- SQLite set-up -----------------------------------------------------------------------------


def test_sqlite_connections_are_set_up_for_concurrency(tmp_path: Path) -> None:
    engine = fk.Engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.database.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA temp_store").scalar() == 2  # MEMORY
    engine.close()


def test_sqlite_transactions_take_the_write_lock_up_front(tmp_path: Path) -> None:
    engine = fk.Engine(f"sqlite:///{tmp_path / 'app.db'}", connect_args={"timeout": 0.2})
    with engine.database.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with engine.database.begin() as first:
        first.exec_driver_sql("SELECT 1")  # a read, yet the write lock is held
        with (
            pytest.raises(exc.OperationalError, match="database is locked"),
            engine.database.begin() as second,
        ):
            second.exec_driver_sql("SELECT 1")
    engine.close()


def test_in_memory_sqlite_works_across_threads_and_is_removed() -> None:
    engine = fk.Engine("sqlite://")
    assert repr(engine) == "<flowkeeper.Engine sqlite://>"
    engine.migrate()

    @engine.step("x")
    def x(step: fk.StepContext) -> None:
        return None

    engine.add_steps(*(fk.Step("x") for _ in range(20)))
    engine.run(workers=4, until_idle=True, handle_signals=False)
    assert engine.count() == {"ready": 0, "done": 20, "failed": 0}
    path = engine.database.url.database
    assert path is not None
    assert os.path.exists(path)
    with fk.Engine("sqlite://") as other, pytest.raises(fk.MigrationRequired):
        other.count()  # each engine has its own database
    engine.close()
    del engine, x
    gc.collect()
    assert not os.path.exists(os.path.dirname(path))


# -- error translation ----------------------------------------------------------------------------


def test_only_connection_failures_become_database_unavailable(tmp_path: Path) -> None:
    engine = fk.Engine(f"sqlite:///{tmp_path / 'app.db'}")
    with (
        pytest.raises(exc.OperationalError, match="no such table"),
        translate_connection_errors(engine.url),
        engine.database.connect() as conn,
    ):
        conn.exec_driver_sql("SELECT * FROM no_such_table")
    with (
        pytest.raises(fk.DatabaseUnavailable, match="unable to open database file"),
        translate_connection_errors(engine.url),
    ):
        sa.create_engine("sqlite:////nonexistent/dir/x.db").connect()
    engine.close()


class _Orig(Exception):
    def __init__(self, text: str, sqlstate: str | None = None, code: int | None = None) -> None:
        super().__init__(*(a for a in (code, text) if a is not None))
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("orig", "transient"),
    [
        (_Orig("could not serialize access", sqlstate="40001"), True),
        (_Orig("deadlock detected", sqlstate="40P01"), True),
        (_Orig("Lock wait timeout exceeded", code=1205), True),
        (_Orig("Deadlock found when trying to get lock", code=1213), True),
        (_Orig("database is locked"), True),
        (_Orig("duplicate key value", sqlstate="23505"), False),
        (_Orig("no such table: x"), False),
    ],
)
def test_transient_errors_are_recognised(orig: Exception, transient: bool) -> None:
    assert is_transient(exc.OperationalError("SELECT 1", {}, orig)) is transient


# -- what is stored -------------------------------------------------------------------------


def test_times_are_stored_as_naive_utc(engine: fk.Engine) -> None:
    plus_two = timezone(timedelta(hours=2))
    run_at = datetime(2031, 6, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    step_id = engine.add_step(fk.Step("t", run_at=run_at))
    with engine.database.connect() as conn:
        raw = conn.execute(
            sa.text("SELECT run_at FROM fk_steps_ready WHERE id = :id"), {"id": step_id}
        ).scalar()
    stored = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    assert stored == datetime(2031, 6, 1, 12, 30, 15, 123456)  # microseconds kept
    assert engine.get_step(step_id).run_at == run_at


def test_the_time_type_refuses_naive_values() -> None:
    kind = UTCDateTime()
    dialect = sa.create_engine("sqlite://").dialect
    with pytest.raises(ValueError, match="naive datetime"):
        kind.process_bind_param(datetime(2024, 1, 1), dialect)
    assert kind.process_result_value(datetime(2024, 1, 1), dialect) == datetime(
        2024, 1, 1, tzinfo=UTC
    )


def test_ids_are_not_reused_after_the_ready_queue_empties(engine: fk.Engine) -> None:
    """The ready table's id counter never goes back (SQLite: AUTOINCREMENT)."""
    first = engine.add_step(fk.Step("a"))
    with engine.database.begin() as conn:
        conn.execute(steps_ready.delete())
    second = engine.add_step(fk.Step("a"))
    assert second > first


@pytest.mark.databases("mariadb")
def test_mysql_runs_in_read_committed(engine: fk.Engine) -> None:
    with engine.database.connect() as conn:
        level = conn.exec_driver_sql("SELECT @@tx_isolation").scalar()
    assert level == "READ-COMMITTED"


def test_sqlite_database_file_can_be_shared_by_engines(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with fk.Engine(url) as one, fk.Engine(url) as two:
        one.migrate()
        errors: list[BaseException] = []

        def add(engine: fk.Engine) -> None:
            try:
                for _ in range(20):
                    engine.add_step(fk.Step("s"))
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=add, args=(e,)) for e in (one, two, one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert two.count()["ready"] == 80


def test_descriptions_no_database_can_store_are_escaped(engine: fk.Engine) -> None:
    """An exception's text may hold NUL or a lone surrogate: the outcome is still written."""

    @engine.step("raise", retry=fk.Retry(max_attempts=1))
    def raise_(step: fk.StepContext) -> None:
        raise ValueError("nul \x00 and half \udc80 a character")

    @engine.step("fail")
    def fail(step: fk.StepContext) -> fk.Outcome:
        return step.fail("nul \x00 in a description")

    @engine.step("number")
    def number(step: fk.StepContext) -> fk.Outcome:
        return step.fail(42)  # type: ignore[arg-type]

    raised, failed, numbered = engine.add_steps(
        fk.Step("raise"), fk.Step("fail"), fk.Step("number")
    )
    stats = engine.run(workers=1, until_idle=True, handle_signals=False)
    assert stats.failed == 3
    assert engine.get_step(numbered).description == "42"
    description = engine.get_step(raised).description
    assert description is not None
    assert "nul \\x00 and half \\udc80 a character" in description
    assert engine.get_step(failed).description == "nul \\x00 in a description"
