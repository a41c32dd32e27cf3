"""Statements run on the driver's own cursor, for the few paths where SQLAlchemy's
per-statement machinery costs more than the database does (measured in docs/benchmarks.md).

Statements are still written in SQLAlchemy Core and compiled once per dialect; errors still
reach callers as SQLAlchemy's ``DBAPIError`` subclasses. What the column types would do is
done here by hand: datetimes are stored as naive UTC (text on SQLite) and read back aware.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

_cursor_observers: list[Callable[[], None]] = []


@contextmanager
def observing_driver_cursors(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` each time a driver cursor is opened (benchmarks count statements
    with it: SQLAlchemy's events do not see these)."""
    _cursor_observers.append(callback)
    try:
        yield
    finally:
        _cursor_observers.remove(callback)


@contextmanager
def driver_errors_translated(connection: sa.Connection) -> Iterator[None]:
    """Driver errors raised inside reach callers as SQLAlchemy's own (``DBAPIError``
    subclasses), so deadlocks and a busy database are retried and broken connections replaced
    just as on every other path."""
    dbapi = connection.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as error:
        raise exc.DBAPIError.instance(
            None, None, error, dbapi.Error, dialect=connection.dialect
        ) from error


@contextmanager
def driver_cursor(connection: sa.Connection) -> Iterator[Any]:
    """A cursor on the driver's connection, its errors translated as
    :func:`driver_errors_translated` says."""
    for observe in _cursor_observers:
        observe()
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with driver_errors_translated(connection):
            yield cursor
    finally:
        cursor.close()


class DriverStatement:
    """A Core statement compiled once for a dialect, with its parameters in driver order."""

    def __init__(self, statement: Any, dialect: sa.Dialect, **options: Any) -> None:
        compiled = statement.compile(dialect=dialect, **options)
        self.sql: str = compiled.string
        self._order = list(compiled.positiontup or []) if compiled.positional else None

    def args(self, values: Mapping[str, Any]) -> Any:
        """``values`` as the driver takes them (a sequence for positional paramstyles)."""
        return values if self._order is None else [values[name] for name in self._order]

    def execute(self, cursor: Any, values: Mapping[str, Any]) -> None:
        """Run the statement on a driver cursor with ``values`` (by bind name)."""
        cursor.execute(self.sql, self.args(values))


def stored_time(value: datetime | None, sqlite: bool) -> Any:
    """An aware datetime as its column stores it: naive UTC, fixed-width text on SQLite (the
    text SQLAlchemy writes, so text order is time order)."""
    if value is None:
        return None
    if sqlite and value.tzinfo is UTC:
        return _utc_text(value)
    naive = value.astimezone(UTC).replace(tzinfo=None)
    # isoformat pads the year to four digits (strftime's %Y does not on every platform).
    return naive.isoformat(" ", "microseconds") if sqlite else naive


_SECOND_TEXTS: dict[tuple[int, int, int, int, int, int], str] = {}


def _utc_text(value: datetime) -> str:
    """SQLite's text of a UTC datetime. Every step's start time is written, and formatting a
    datetime costs microseconds: the part up to the second is formatted once per second."""
    second = (value.year, value.month, value.day, value.hour, value.minute, value.second)
    text = _SECOND_TEXTS.get(second)
    if text is None:
        if len(_SECOND_TEXTS) >= 4096:  # times of long ago: keep the cache small
            _SECOND_TEXTS.clear()
        year, month, day, hour, minute, sec = second
        text = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{sec:02d}"
        _SECOND_TEXTS[second] = text
    return f"{text}.{value.microsecond:06d}"


_STORED_TEXT_LENGTH = len("2000-01-01 00:00:00.000000")


def loaded_time(value: Any) -> datetime | None:
    """A stored datetime (naive UTC, or SQLite's text) read back aware."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == _STORED_TEXT_LENGTH:  # as written: parsing the offset is cheaper
            return datetime.fromisoformat(value + "+00:00")
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
