"""Connecting to the database: URL defaults per driver, connection set-up, error translation."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import sqlite3
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url

from flowkeeper.errors import DatabaseUnavailable, InvalidDatabaseURL
from flowkeeper.storage.driver import driver_errors_translated

DEFAULT_URL = "sqlite:///flowkeeper.db"
URL_ENVIRONMENT_VARIABLE = "FLOWKEEPER_DATABASE_URL"

Kind = Literal["sqlite", "postgresql", "mysql"]

# The driver each database gets when the URL names none, and the extra that installs it.
_DEFAULT_DRIVERS: dict[str, tuple[str, str | None]] = {
    "sqlite": ("sqlite", None),
    "postgresql": ("postgresql+psycopg", "postgres"),
    "postgres": ("postgresql+psycopg", "postgres"),
    "mysql": ("mysql+pymysql", "mysql"),
    "mariadb": ("mariadb+pymysql", "mysql"),
}
_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}

READ_ONLY = "flowkeeper_read_only"
"""Execution option marking a transaction that only reads (SQLite then begins it deferred)."""

SQLITE_BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10


def resolve_url(url: str | URL | None) -> URL:
    """The URL to use: the one given, else ``$FLOWKEEPER_DATABASE_URL``, else SQLite.

    A bare ``postgresql://`` or ``mysql://`` gets the driver Flowkeeper installs
    (psycopg 3, PyMySQL).
    """
    if url is None:
        url = os.environ.get(URL_ENVIRONMENT_VARIABLE) or DEFAULT_URL
    try:
        parsed = make_url(url)
    except exc.ArgumentError as error:
        raise InvalidDatabaseURL(
            f"cannot parse database URL {str(url)!r}: {error}; expected e.g. "
            "sqlite:///flowkeeper.db, postgresql://user@host/db or mysql://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "postgres", "mysql", "mariadb"):
        raise InvalidDatabaseURL(
            f"database URL {parsed.render_as_string(hide_password=True)!r} names "
            f"{backend!r}; Flowkeeper supports sqlite, postgresql and mysql/mariadb"
        )
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS[backend][0])
    elif backend == "postgres":
        parsed = parsed.set(drivername=parsed.drivername.replace("postgres+", "postgresql+"))
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def kind_of(url: URL) -> Kind:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return "sqlite"
    if backend == "postgresql":
        return "postgresql"
    return "mysql"


def create_database(url: URL, **engine_options: Any) -> sa.Engine:
    """A SQLAlchemy engine set up the way Flowkeeper's transactions need it.

    SQLite: WAL, ``synchronous=NORMAL``, temporary files in memory, a busy timeout, and
    ``BEGIN IMMEDIATE`` for every transaction (one writer at a time, taken up front, so two
    writers never deadlock on the upgrade from read to write). MySQL: READ COMMITTED, so
    claims do not take gap locks. In-memory SQLite (``sqlite://``) becomes a private temporary
    file, deleted with the engine, so that every worker thread sees the same database.
    """
    kind = kind_of(url)
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {"pool_pre_ping": kind != "sqlite"}
    if kind == "sqlite":
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_S
        connect_args["check_same_thread"] = False
        options["pool_size"] = 20
        options["max_overflow"] = 20
    elif kind == "postgresql":
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        options["pool_size"] = 10
        options["max_overflow"] = 30
    else:
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        options["isolation_level"] = "READ COMMITTED"
        options["pool_size"] = 10
        options["max_overflow"] = 30
        options["pool_recycle"] = 3600
    connect_args.update(engine_options.pop("connect_args", None) or {})
    options.update(engine_options)
    private_directory = None
    if kind == "sqlite" and is_memory(url):
        # An in-memory database lives and dies with one connection, but workers need one each:
        # a private file in a temporary directory, removed with the engine, behaves the same.
        private_directory = tempfile.mkdtemp(prefix="flowkeeper-")
        url = url.set(database=os.path.join(private_directory, "memory.db"))
    try:
        engine = sa.create_engine(url, connect_args=connect_args, **options)
    except ModuleNotFoundError as error:
        extra = _EXTRAS.get(url.get_backend_name(), "all")
        raise InvalidDatabaseURL(
            f"the driver for {url.drivername!r} is not installed ({error.name}); "
            f"install it with: pip install 'flowkeeper[{extra}]'"
        ) from None
    except exc.NoSuchModuleError:
        raise InvalidDatabaseURL(
            f"SQLAlchemy knows no driver {url.drivername!r}; leave the driver out "
            "(postgresql://…, mysql://…) to get the one Flowkeeper installs"
        ) from None
    except (exc.ArgumentError, TypeError, ValueError) as error:
        raise InvalidDatabaseURL(
            f"invalid database URL or engine options for {describe(url)}: {error}"
        ) from None
    if private_directory is not None:
        weakref.finalize(engine, shutil.rmtree, private_directory, ignore_errors=True)
    if kind == "sqlite":
        _set_up_sqlite(engine)
    return engine


def is_memory(url: URL) -> bool:
    """Whether a SQLite URL names an in-memory database (``sqlite://``, ``:memory:``)."""
    return (url.database or "") in ("", ":memory:")


def _set_up_sqlite(engine: sa.Engine) -> None:
    memory = is_memory(engine.url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver: it would otherwise begin lazily with a
        # plain BEGIN, which lets two writers deadlock when both upgrade to write.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Statement journals (every multi-row INSERT … SELECT of a finished batch opens one) in
        # memory: as files they cost an open, writes and a close per transaction.
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Reads begin deferred, so they never wait for a writer (WAL lets them read alongside).
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        # On the driver's connection: exec_driver_sql builds a whole execution context. Its
        # errors ("database is locked") still reach callers as SQLAlchemy's, so they are retried.
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver_errors_translated(connection):
            driver.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so), waiting while another process holds it.

    Turning WAL on needs the file to itself. When two connections both try it, SQLite fails
    one at once with "database is locked" instead of waiting in its busy handler (it would
    be a deadlock), so several processes opening a new file together need this retry.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def describe(url: URL) -> str:
    """The URL with its password hidden, for messages."""
    return url.render_as_string(hide_password=True)


@contextlib.contextmanager
def translate_connection_errors(url: URL) -> Iterator[None]:
    """Turn a failure to connect into :class:`DatabaseUnavailable` with the URL in it."""
    try:
        yield
    except exc.OperationalError as error:
        if error.connection_invalidated or _is_connect_failure(error):
            raise DatabaseUnavailable(
                f"cannot reach the database at {describe(url)}: {_first_line(error.orig)}; "
                "check that it is running and that the URL (host, port, user, database) is right"
            ) from error
        raise


_TRANSIENT_CODES = {
    "40001",  # PostgreSQL serialization_failure
    "40P01",  # PostgreSQL deadlock_detected
    "55P03",  # PostgreSQL lock_not_available
}
_TRANSIENT_MYSQL = {1205, 1213}  # lock wait timeout, deadlock


def is_transient(error: exc.DBAPIError) -> bool:
    """A deadlock, serialisation failure or busy database: the transaction may simply be rerun."""
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _TRANSIENT_CODES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _TRANSIENT_MYSQL:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "deadlock" in text


def first_line(error: BaseException) -> str:
    """The first line of an error's text: enough for a log line, never the whole SQL."""
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        error = error.orig
    return f"{type(error).__name__}: {_first_line(error)}"


def _is_connect_failure(error: exc.OperationalError) -> bool:
    text = str(error.orig).lower()
    needles = (
        "connection refused",
        "could not connect",
        "can't connect",
        "unable to open database",
        "connection failed",
        "timeout expired",
        "name or service not known",
        "unknown database",
        "does not exist",
        "access denied",
        "authentication failed",
        "lost connection",
        "server closed the connection",
    )
    return any(needle in text for needle in needles)


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if error is not None and str(error) else "error"


log = logging.getLogger("flowkeeper.storage")

T = TypeVar("T")
TRANSIENT_ATTEMPTS = 6


def discard(connection: sa.Connection | None) -> None:
    """Give up a connection after a database error: invalidated, so the pool does not hand it
    out again (closing a connection that is already broken may fail; that is fine)."""
    if connection is None:
        return
    try:
        connection.invalidate()
        connection.close()
    except Exception:
        log.debug("closing a broken connection failed", exc_info=True)


class Transactor(Protocol):
    """Runs work in a transaction of its choosing and returns what the work returned:
    :func:`transact` on a connection, or a SQLite pool's shared writer."""

    def __call__(self, work: Callable[[sa.Connection], T], /) -> T: ...


def transact(connection: sa.Connection, work: Callable[[sa.Connection], T]) -> T:
    """Run ``work`` in a transaction, running it again after a deadlock or a busy database."""
    for attempt in range(TRANSIENT_ATTEMPTS):
        try:
            with connection.begin():
                return work(connection)
        except exc.DBAPIError as error:
            if attempt + 1 == TRANSIENT_ATTEMPTS or not is_transient(error):
                raise
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
    raise AssertionError("unreachable")
