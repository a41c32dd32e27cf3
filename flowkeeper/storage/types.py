"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC ``datetime`` in Python, a naive UTC timestamp (microseconds) in the database.

    Storing naive UTC is the one representation all three databases share; converting at the
    boundary means every value the API returns is aware and every value stored is comparable.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the storage layer")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def binary_collation(dialect: Dialect) -> str:
    """The MySQL/MariaDB collation that compares text exactly, trailing spaces included."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = dialect.server_version_info or ()
    return "utf8mb4_0900_bin" if tuple(version) >= (8, 0, 17) else "utf8mb4_bin"


# Integer primary keys: SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# JSON documents are kept as text we encode ourselves (validated before anything is written);
# MySQL's TEXT stops at 64 KiB, so it gets LONGTEXT.
JsonText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
LongText = JsonText


class StorableText(TypeDecorator[str]):
    """Free text (a step's description) that every database can store, whatever it holds.

    PostgreSQL refuses NUL characters and no driver encodes a lone surrogate to UTF-8, and an
    exception's message may hold either: they are written as ``\\x00`` and ``\\udc80`` escapes
    rather than failing the write that records the step's outcome. Text the API accepts from
    callers is checked before it gets here, so this only ever touches text Flowkeeper made.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        # Not through dialect.type_descriptor, which makes psycopg's Text a VARCHAR.
        return mysql.LONGTEXT() if dialect.name in ("mysql", "mariadb") else Text()

    def process_bind_param(self, value: object, dialect: Dialect) -> str | None:
        return storable_text(value)


def storable_text(value: object) -> str | None:
    """``value`` as text any database stores (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, str):  # an implementation's step.fail(42), say
        value = str(value)
    if value.isascii() and "\x00" not in value:
        return value
    return storable(value)


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by backslash escapes."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
