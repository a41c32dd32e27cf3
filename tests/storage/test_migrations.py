"""Alembic migrations on every database: create, upgrade, idempotence, concurrency, exactness."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import flowkeeper as fk
from flowkeeper.storage import migrate
from flowkeeper.storage.migrate import HEAD_REVISION, KNOWN_REVISIONS, VERSION_TABLE
from flowkeeper.storage.tables import metadata, steps_ready
from tests.concurrency import run_together

STEP_TABLES = {"fk_steps_ready", "fk_steps_done", "fk_steps_failed"}


def schema(engine: sa.Engine) -> dict[str, Any]:
    """Everything reflection tells about the database: tables, columns, keys, indexes, revision."""
    inspector = sa.inspect(engine)
    result: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        result[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]), _predicate(i))
                for i in inspector.get_indexes(table)
            ),
            "unique": sorted(str(u) for u in inspector.get_unique_constraints(table)),
        }
    with engine.connect() as conn:
        result["revision"] = migrate.read_revision(conn)
    return result


def _predicate(index: Any) -> str | None:
    """A partial index's WHERE clause as text (None for a full index)."""
    options = index.get("dialect_options", {})
    where = options.get("postgresql_where", options.get("sqlite_where"))
    return None if where is None else str(where).strip("()")


PARTIAL = {
    "fk_steps_ready": {"correlation_id", "search_key", "singleton_key"},
    "fk_steps_done": {"correlation_id", "search_key"},
    "fk_steps_failed": {"correlation_id", "search_key"},
}


def upgrade_to(engine: fk.Engine, revision: str) -> None:
    """Run Alembic up to ``revision`` (the way an older Flowkeeper left the database)."""
    with engine.database.connect() as conn:
        command.upgrade(migrate.alembic_config(conn), revision)
        conn.commit()


def test_head_revision_is_the_head_of_the_scripts() -> None:
    assert migrate.script_head() == HEAD_REVISION
    assert KNOWN_REVISIONS[-1] == HEAD_REVISION
    config = migrate.alembic_config(None)  # type: ignore[arg-type]
    history = [s.revision for s in ScriptDirectory.from_config(config).walk_revisions()]
    assert tuple(reversed(history)) == KNOWN_REVISIONS  # one line, no branches


def test_migrate_creates_the_tables_and_a_second_run_changes_nothing(empty_db_url: str) -> None:
    with fk.Engine(empty_db_url) as engine:
        assert not STEP_TABLES & set(sa.inspect(engine.database).get_table_names())
        assert engine.migrate() == (None, HEAD_REVISION)
        tables = set(sa.inspect(engine.database).get_table_names())
        assert tables >= STEP_TABLES | {VERSION_TABLE, "fk_locks"}
        assert {t for t in tables if not t.startswith("fk_")} == set()
        before = schema(engine.database)
        assert before["revision"] == HEAD_REVISION

        assert engine.migrate() == (HEAD_REVISION, HEAD_REVISION)
        assert schema(engine.database) == before
        engine.check_schema()
        assert engine.count() == {"ready": 0, "done": 0, "failed": 0}


def test_a_new_engine_on_a_migrated_database_migrates_nothing(db_url: str) -> None:
    with fk.Engine(db_url) as engine:
        before = schema(engine.database)
        assert engine.migrate() == (HEAD_REVISION, HEAD_REVISION)
        assert schema(engine.database) == before


def test_the_migrated_schema_is_exactly_the_tables_module(db_url: str) -> None:
    database = fk.Engine(db_url).database
    with database.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": VERSION_TABLE,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        differences = compare_metadata(context, metadata)
    database.dispose()
    assert differences == []


def test_every_table_of_the_tables_module_is_created(db_url: str) -> None:
    database = fk.Engine(db_url).database
    assert set(metadata.tables) <= set(sa.inspect(database).get_table_names())
    database.dispose()


def test_indexes_of_mostly_empty_step_columns_skip_the_empty_rows(db_url: str) -> None:
    database = fk.Engine(db_url).database
    inspector = sa.inspect(database)
    for table, columns in PARTIAL.items():
        predicates = {i["column_names"][0]: _predicate(i) for i in inspector.get_indexes(table)}
        for column in columns:
            # MySQL/MariaDB have no partial indexes: theirs stay whole.
            expected = None if database.dialect.name == "mysql" else f"{column} IS NOT NULL"
            assert predicates[column] == expected, (table, column)
        assert {c for c, p in predicates.items() if p is not None} <= columns
    database.dispose()


@pytest.mark.databases("sqlite", "postgresql")
def test_a_search_for_a_value_uses_the_partial_index(db_url: str) -> None:
    with fk.Engine(db_url) as engine:
        engine.add_steps(*[fk.Step("s", correlation_id=f"c{i}") for i in range(50)])
        engine.add_steps(*[fk.Step("s") for _ in range(50)])
        assert engine.count(fk.Search(correlation_id="c7"))["ready"] == 1
        query = "SELECT id FROM fk_steps_ready WHERE correlation_id = 'c7'"
        with engine.database.connect() as conn:
            if engine.kind == "sqlite":
                plan = " ".join(str(r) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
            else:
                conn.exec_driver_sql("SET enable_seqscan = off")
                plan = " ".join(str(r) for r in conn.exec_driver_sql(f"EXPLAIN {query}"))
        assert "ix_fk_steps_ready_correlation_id" in plan


def test_upgrading_from_0004_keeps_singletons_unique(empty_db_url: str) -> None:
    with fk.Engine(empty_db_url) as engine:
        upgrade_to(engine, "0004")
        engine.migrate()
        engine.add_step(fk.Step("only", singleton=True))
        with pytest.raises(fk.SingletonExists):
            engine.add_step(fk.Step("only", singleton=True))
        engine.add_steps(fk.Step("many"), fk.Step("many"))
        assert engine.count(fk.Search(name="many"))["ready"] == 2


def test_the_lease_holder_index_goes_with_0006_and_comes_back_on_downgrade(
    empty_db_url: str,
) -> None:
    def lease_indexes(engine: fk.Engine) -> list[str]:
        indexes = sa.inspect(engine.database).get_indexes("fk_steps_ready")
        return [i["name"] for i in indexes if i["column_names"] == ["locked_by"]]

    with fk.Engine(empty_db_url) as engine:
        upgrade_to(engine, "0005")
        assert lease_indexes(engine) == ["ix_fk_steps_ready_locked_by"]
        assert engine.migrate() == ("0005", HEAD_REVISION)
        assert lease_indexes(engine) == []
        with engine.database.connect() as conn:
            command.downgrade(migrate.alembic_config(conn), "0005")
            conn.commit()
        assert lease_indexes(engine) == ["ix_fk_steps_ready_locked_by"]
        engine.migrate()
        assert lease_indexes(engine) == []


@pytest.mark.databases("mariadb")
def test_mysql_tables_compare_text_exactly(db_url: str) -> None:
    database = fk.Engine(db_url).database
    with database.connect() as conn:
        collations = conn.execute(
            sa.text(
                "SELECT table_name, table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name LIKE 'fk\\_%'"
            )
        ).all()
    database.dispose()
    assert {name for name, _ in collations} >= STEP_TABLES
    for name, collation in collations:
        if name != VERSION_TABLE:
            assert collation in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin"), (name, collation)


def test_upgrading_from_the_first_revision_keeps_the_steps(empty_db_url: str) -> None:
    with fk.Engine(empty_db_url) as engine:
        upgrade_to(engine, "0001")
        with pytest.raises(fk.MigrationRequired, match="revision 0001"):
            engine.count()
        now = sa.func.now()  # any time will do; the engine reads it back as UTC
        with engine.database.begin() as conn:
            for name in ("tick", "Tick"):
                conn.execute(
                    steps_ready.insert().values(
                        name=name,
                        singleton=False,
                        flow_id="f",
                        state='{"kept": true}',
                        execution_count=0,
                        run_at=now,
                        created_at=now,
                        available_at=now,
                    )
                )
        assert engine.migrate() == ("0001", HEAD_REVISION)
        records = engine.search(fk.Search(name="tick"))["ready"]
        assert [r.state for r in records] == [{"kept": True}]  # exact, also on MySQL
        assert engine.count()["ready"] == 2
        assert engine.migrate() == (HEAD_REVISION, HEAD_REVISION)


def test_downgrade_removes_everything_and_upgrade_recreates_it(empty_db_url: str) -> None:
    with fk.Engine(empty_db_url) as engine:
        engine.migrate()
        migrated = schema(engine.database)
        with engine.database.connect() as conn:
            command.downgrade(migrate.alembic_config(conn), "base")
            conn.commit()
        left = set(sa.inspect(engine.database).get_table_names())
        assert left <= {VERSION_TABLE}
        assert engine.migrate() == (None, HEAD_REVISION)
        assert schema(engine.database) == migrated


def test_the_applications_own_alembic_table_is_left_alone(empty_db_url: str) -> None:
    with fk.Engine(empty_db_url) as engine:
        with engine.database.begin() as conn:
            conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            conn.execute(sa.text("INSERT INTO alembic_version VALUES ('app_rev_42')"))
        assert engine.migrate() == (None, HEAD_REVISION)
        with engine.database.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                ("app_rev_42",)
            ]
        engine.add_step(fk.Step("a"))


def test_concurrent_migrations_from_threads_all_succeed(empty_db_url: str) -> None:
    count = 4

    def migrate() -> object:
        with fk.Engine(empty_db_url) as engine:
            return engine.migrate()

    results = run_together(migrate, count)
    assert sorted(results, key=repr) == sorted(
        [(None, HEAD_REVISION)] + [(HEAD_REVISION, HEAD_REVISION)] * (count - 1), key=repr
    )
    with fk.Engine(empty_db_url) as engine:
        assert engine.count() == {"ready": 0, "done": 0, "failed": 0}


def test_concurrent_migrations_from_processes_all_succeed(empty_db_url: str) -> None:
    script = (
        "import sys, time, flowkeeper as fk\n"
        "engine = fk.Engine(sys.argv[1])\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "print(engine.migrate())\n"
    )
    import time

    start = time.time() + 1.5  # every process imported and waiting by then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_db_url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    printed = sorted(out.strip() for out, _ in outputs)
    assert printed == sorted(
        [repr((None, HEAD_REVISION))] + [repr((HEAD_REVISION, HEAD_REVISION))] * 2
    )


@pytest.mark.databases("mariadb")
def test_a_migration_waiting_too_long_for_another_gives_up(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrate, "LOCK_TIMEOUT_S", 0)
    with fk.Engine(db_url) as engine, engine.database.connect() as holder:
        holder.execute(sa.text("SELECT GET_LOCK('flowkeeper_migrate', 0)"))
        with pytest.raises(fk.ConcurrencyError, match="another migration has held the lock"):
            engine.migrate()
        holder.execute(sa.text("SELECT RELEASE_LOCK('flowkeeper_migrate')"))
        assert engine.migrate() == (HEAD_REVISION, HEAD_REVISION)
