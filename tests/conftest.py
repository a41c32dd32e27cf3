"""Shared fixtures: the same test on SQLite, PostgreSQL and MariaDB.

Choose databases with ``--databases sqlite,postgresql,mariadb`` (or the environment variable
``FLOWKEEPER_TEST_DATABASES``); the default is SQLite alone. Server URLs come from
``FLOWKEEPER_TEST_POSTGRESQL_URL`` and ``FLOWKEEPER_TEST_MARIADB_URL``, defaulting to the
local servers (``root`` on 127.0.0.1). Each test gets an empty, migrated schema.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import flowkeeper as fk
from flowkeeper.storage.tables import metadata

SERVER_URLS = {
    "postgresql": os.environ.get(
        "FLOWKEEPER_TEST_POSTGRESQL_URL", "postgresql://root@127.0.0.1:5432/flowkeeper_test"
    ),
    "mariadb": os.environ.get(
        "FLOWKEEPER_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/flowkeeper_test"
    ),
}
ALL_DATABASES = ("sqlite", "postgresql", "mariadb")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--databases",
        default=os.environ.get("FLOWKEEPER_TEST_DATABASES", "sqlite"),
        help="comma-separated databases to run database tests on: sqlite,postgresql,mariadb",
    )


def selected_databases(config: pytest.Config) -> list[str]:
    chosen = [d.strip() for d in str(config.getoption("--databases")).split(",") if d.strip()]
    unknown = set(chosen) - set(ALL_DATABASES)
    if unknown:
        raise pytest.UsageError(f"unknown databases {sorted(unknown)}; use {ALL_DATABASES}")
    return chosen


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db" in metafunc.fixturenames:
        wanted = selected_databases(metafunc.config)
        only = metafunc.definition.get_closest_marker("databases")
        if only is not None:
            wanted = [d for d in wanted if d in only.args]
        metafunc.parametrize("db", wanted, scope="session")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "databases(*names): run this database test only on these databases"
    )


def server_url(name: str, database: str | None = None) -> str:
    url = sa.make_url(SERVER_URLS[name])
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def create_server_database(name: str, database: str) -> str:
    """Create (if needed) a database on the PostgreSQL or MariaDB server; return its URL."""
    admin_db = "postgres" if name == "postgresql" else "mysql"
    admin = fk.Engine(server_url(name, admin_db)).database.execution_options(
        isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        if name == "postgresql":
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": database}
            ).first()
            if not exists:
                connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
        else:
            connection.exec_driver_sql(
                f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4"
            )
    admin.dispose()
    return server_url(name, database)


def drop_all_tables(url: str) -> None:
    """Leave the database with none of Flowkeeper's tables (nor any other)."""
    engine = sa.create_engine(fk.Engine(url).url)
    with engine.begin() as connection:
        meta = sa.MetaData()
        meta.reflect(connection)
        meta.drop_all(connection)
    engine.dispose()


@pytest.fixture(scope="session")
def migrated_url(db: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of kind ``db`` migrated once for the session (a template file for SQLite)."""
    if db == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        url = f"sqlite:///{path}"
    else:
        url = create_server_database(db, sa.make_url(SERVER_URLS[db]).database or "fk_test")
        drop_all_tables(url)
    engine = fk.Engine(url)
    engine.migrate()
    engine.close()
    return url


@pytest.fixture
def db_url(db: str, migrated_url: str, tmp_path: Path) -> str:
    """The URL of an empty, migrated database of kind ``db`` for this test alone."""
    if db == "sqlite":
        template = Path(sa.make_url(migrated_url).database or "")
        target = tmp_path / "flowkeeper.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    empty_tables(migrated_url)
    return migrated_url


def empty_tables(url: str) -> None:
    engine = fk.Engine(url)
    with engine.database.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    engine.close()


@pytest.fixture
def engine(db_url: str) -> Iterator[fk.Engine]:
    """An engine on an empty, migrated database; a short lease so lease tests run fast."""
    engine = fk.Engine(db_url, lease=5)
    yield engine
    engine.close()


@pytest.fixture
def empty_db_url(db: str, tmp_path: Path) -> str:
    """A database of kind ``db`` with no tables at all (for migration tests).

    Named after the configured test database, so that runs given their own
    ``FLOWKEEPER_TEST_*_URL`` never drop each other's tables.
    """
    if db == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    base = sa.make_url(SERVER_URLS[db]).database or "flowkeeper_test"
    url = create_server_database(db, f"{base}_empty")
    drop_all_tables(url)
    return url
