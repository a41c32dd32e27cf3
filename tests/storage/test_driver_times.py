"""The hot path's own time conversions agree with the column type's, for every time it stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from flowkeeper.storage.driver import loaded_time, stored_time
from flowkeeper.storage.types import UTCDateTime

_times = sa.Table("times", sa.MetaData(), sa.Column("at", UTCDateTime))
_sqlite = sa.create_engine("sqlite://")
_times.create(_sqlite)


def _column_text(value: datetime) -> str:
    """The text SQLAlchemy's column type writes for ``value`` on SQLite."""
    with _sqlite.begin() as connection:
        connection.execute(_times.delete())
        connection.execute(_times.insert().values(at=value))
        return str(connection.exec_driver_sql("SELECT at FROM times").scalar())


offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_times = st.datetimes(
    min_value=datetime(1001, 1, 2),
    max_value=datetime(9998, 12, 30),
    timezones=offsets | st.just(UTC),
)


@given(aware_times)
def test_sqlite_text_is_the_column_types_text_and_reads_back_as_the_same_instant(
    value: datetime,
) -> None:
    text = stored_time(value, sqlite=True)
    naive = value.astimezone(UTC).replace(tzinfo=None)
    assert text == naive.isoformat(" ", "microseconds")
    assert text == _column_text(value)
    loaded = loaded_time(text)
    assert loaded == value
    assert loaded is not None
    assert loaded.tzinfo is UTC


@given(aware_times)
def test_server_values_are_naive_utc_and_read_back_aware(value: datetime) -> None:
    stored = stored_time(value, sqlite=False)
    assert stored.tzinfo is None
    assert stored == value.astimezone(UTC).replace(tzinfo=None)
    assert loaded_time(stored) == value


def test_texts_of_many_seconds_stay_right_as_the_cache_is_emptied() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    for second in range(0, 10_000, 7):
        value = start + timedelta(seconds=second, microseconds=second)
        assert stored_time(value, sqlite=True) == value.replace(tzinfo=None).isoformat(
            " ", "microseconds"
        )


def test_text_of_another_length_is_still_read() -> None:
    """Text SQLite's own functions wrote (no microseconds) is read as well."""
    assert loaded_time("2030-01-02 03:04:05") == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert loaded_time(None) is None
