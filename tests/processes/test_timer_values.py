"""Timer values: intervals, times of day, dates, date-times and expressions, always aware UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowkeeper.errors import ExpressionError, InvalidArgument, NaiveDatetimeError
from flowkeeper.processes.timer_values import (
    TIMER_TYPES,
    check_timer_value,
    next_fire_time,
    parse_interval,
)

NOW = datetime(2026, 3, 10, 14, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30000", timedelta(seconds=30)),
        ("0", timedelta(0)),
        (" 1500 ", timedelta(seconds=1, milliseconds=500)),
        ("10minutes", timedelta(minutes=10)),
        ("10 minutes", timedelta(minutes=10)),
        ("1m", timedelta(minutes=1)),
        ("1min", timedelta(minutes=1)),
        ("2d 5h", timedelta(days=2, hours=5)),
        ("2d5h", timedelta(days=2, hours=5)),
        ("5h 2d", timedelta(days=2, hours=5)),
        ("2d 5h 30m 10s", timedelta(days=2, hours=5, minutes=30, seconds=10)),
        (
            "2 days 5 hours 30 minutes 10 seconds",
            timedelta(days=2, hours=5, minutes=30, seconds=10),
        ),
        ("1 day", timedelta(days=1)),
        ("3 Hours", timedelta(hours=3)),
        ("1HR", timedelta(hours=1)),
        ("45 sec", timedelta(seconds=45)),
        ("1s 250ms", timedelta(seconds=1, milliseconds=250)),
        ("250 milliseconds", timedelta(milliseconds=250)),
        ("1 millisecond", timedelta(milliseconds=1)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("0.5 days", timedelta(hours=12)),
        ("1m 1m", timedelta(minutes=2)),
        ("01:30", timedelta(hours=1, minutes=30)),
        ("01:30:15", timedelta(hours=1, minutes=30, seconds=15)),
        ("2.04:00:00", timedelta(days=2, hours=4)),
        ("00:00:01.5", timedelta(seconds=1, milliseconds=500)),
        ("10.00:00:00.1234567", timedelta(days=10, microseconds=123456)),
    ],
)
def test_parse_interval(text: str, expected: timedelta) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "invalid interval '': it is empty"),
        ("   ", "it is empty"),
        ("-5", "invalid interval '-5': an interval cannot be negative"),
        ("-1h", "cannot be negative"),
        ("soon", "cannot read 'soon'"),
        ("10 fortnights", "unknown unit 'fortnights'"),
        ("h", "cannot read 'h'"),
        ("1h and 5m", "cannot read 'and 5m'"),
        ("1.h", "cannot read"),
        ("1,5h", "cannot read"),
        ("1e3", "unknown unit 'e'"),
        ("24:00:00", "hours must be below 24"),
        ("10:60", "minutes and seconds below 60"),
        ("99999999999d", "too long a duration"),
        ("9" * 300, "longer than 200 characters"),
        ("٣h", "cannot read"),
    ],
)
def test_parse_interval_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_interval(text)
    message = str(caught.value)
    assert fragment in message
    assert "'2d 5h 30m 10s'" in message or "longer than" in message


def test_parse_interval_needs_text() -> None:
    with pytest.raises(InvalidArgument, match="must be a string, not int"):
        parse_interval(5)  # type: ignore[arg-type]


@given(
    days=st.integers(0, 400),
    hours=st.integers(0, 23),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    millis=st.integers(0, 999),
    order=st.permutations(range(5)),
    glue=st.sampled_from(["", " ", "  "]),
    long_names=st.booleans(),
)
def test_any_order_of_units_gives_the_same_interval(
    days: int,
    hours: int,
    minutes: int,
    seconds: int,
    millis: int,
    order: list[int],
    glue: str,
    long_names: bool,
) -> None:
    units = ["days", "hours", "minutes", "seconds", "milliseconds"]
    short = ["d", "h", "m", "s", "ms"]
    amounts = [days, hours, minutes, seconds, millis]
    parts = [f"{amounts[i]}{units[i] if long_names else short[i]}" for i in order]
    expected = timedelta(
        days=days, hours=hours, minutes=minutes, seconds=seconds, milliseconds=millis
    )
    assert parse_interval(glue.join(parts)) == expected
    span = f"{days}.{hours:02}:{minutes:02}:{seconds:02}.{millis:03}"
    assert parse_interval(span) == expected
    total_ms = expected // timedelta(milliseconds=1)
    assert parse_interval(str(total_ms)) == expected


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_parse_interval_never_fails_otherwise(text: str) -> None:
    try:
        result = parse_interval(text)
    except InvalidArgument:
        return
    assert result >= timedelta(0)


# -- next_fire_time ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timer_type", "value", "expected"),
    [
        ("Interval", "10minutes", NOW + timedelta(minutes=10)),
        ("Interval", "30000", NOW + timedelta(seconds=30)),
        ("interval", "2d 5h", NOW + timedelta(days=2, hours=5)),
        ("Time", "18:00", datetime(2026, 3, 10, 18, 0, tzinfo=UTC)),
        ("Time", "9:05", datetime(2026, 3, 11, 9, 5, tzinfo=UTC)),
        ("Time", "14:30:15", datetime(2026, 3, 11, 14, 30, 15, tzinfo=UTC)),  # now: tomorrow
        ("Time", "14:30:16", datetime(2026, 3, 10, 14, 30, 16, tzinfo=UTC)),
        ("Time", "00:00", datetime(2026, 3, 11, 0, 0, tzinfo=UTC)),
        ("Time", "1m", NOW + timedelta(minutes=1)),  # as in OptimaJet's Timer.xml
        ("Time", "1.01:30:00", NOW + timedelta(days=1, minutes=90)),
        ("Time", "60000", NOW + timedelta(minutes=1)),
        ("Date", "2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("Date", "12/01/2026", datetime(2026, 12, 1, tzinfo=UTC)),
        ("Date", "1/2/2027", datetime(2027, 1, 2, tzinfo=UTC)),
        ("Date", "2020-01-01", datetime(2020, 1, 1, tzinfo=UTC)),  # past: simply due
        ("DateAndTime", "2026-12-01T10:00:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("DateAndTime", "2026-12-01 10:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("DateAndTime", "2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("DateAndTime", "2026-12-01T12:00:00+02:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("DateAndTime", "2026-12-01 05:00-05:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("DateAndTime", "2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("DateAndTime", "12/01/2026 10:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("DateAndTime", "12/01/2026 10:00:30", datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)),
        ("dateandtime", " 2026-12-01T10:00:00.250 ", datetime(2026, 12, 1, 10, 0, 0, 250000, UTC)),
    ],
)
def test_next_fire_time(timer_type: str, value: str, expected: datetime) -> None:
    result = next_fire_time(timer_type, value, NOW, {})
    assert result == expected
    assert result.tzinfo is UTC


def test_now_in_another_zone_gives_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    now = datetime(2026, 3, 10, 23, 30, tzinfo=tokyo)  # 14:30 UTC
    assert next_fire_time("Time", "15:00", now, {}) == datetime(2026, 3, 10, 15, tzinfo=UTC)
    result = next_fire_time("Interval", "1h", now, {})
    assert result == datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
    assert result.tzinfo is UTC


def test_time_of_day_rolls_over_month_and_year() -> None:
    now = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert next_fire_time("Time", "08:00", now, {}) == datetime(2027, 1, 1, 8, tzinfo=UTC)


def test_naive_now_is_refused() -> None:
    with pytest.raises(NaiveDatetimeError, match="now must be a timezone-aware datetime"):
        next_fire_time("Interval", "1m", datetime(2026, 1, 1), {})


@pytest.mark.parametrize(
    ("timer_type", "value", "fragment"),
    [
        ("Interval", "soon", "invalid interval 'soon'"),
        ("Interval", "", "it is empty"),
        ("Time", "25:00", "invalid Time timer value '25:00': no such time of day"),
        ("Time", "noon", "invalid Time timer value 'noon': expected a time of day like 09:30"),
        ("Date", "2026-02-30", "invalid Date timer value '2026-02-30': day is out of range"),
        ("Date", "13/01/2026", "month must be in 1..12"),
        ("Date", "tomorrow", "expected a date like 2026-12-01 or 12/01/2026"),
        ("Date", "2026-12-01 10:00", "is a DateAndTime timer"),
        ("Date", "12/01/2026 10:00", "is a DateAndTime timer"),
        ("DateAndTime", "2026-13-01T00:00", "invalid DateAndTime timer value '2026-13-01T00:00'"),
        ("DateAndTime", "next week", "expected e.g. 2026-12-01T10:00:00"),
        ("DateAndTime", "12/01/2026 25:00", "hour must be in 0..23"),
        ("Interval", "9999999d", "beyond the year 9999"),
        ("Cron", "* * * * *", "unknown timer type 'Cron'; expected one of Interval, Time"),
        ("", "1m", "unknown timer type ''"),
    ],
)
def test_bad_values(timer_type: str, value: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        next_fire_time(timer_type, value, NOW, {})
    assert fragment in str(caught.value)


def test_far_future_overflows_cleanly() -> None:
    late = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    with pytest.raises(InvalidArgument, match="beyond the year 9999"):
        next_fire_time("Time", "22:00", late, {})
    with pytest.raises(InvalidArgument, match="beyond the year 9999"):
        next_fire_time("Interval", "2h", late, {})


# -- Expression timers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parameters", "expected"),
    [
        ("@Due", {"Due": datetime(2026, 5, 1, 9, tzinfo=UTC)}, datetime(2026, 5, 1, 9, tzinfo=UTC)),
        ("@Due", {"Due": datetime(2026, 5, 1, 9)}, datetime(2026, 5, 1, 9, tzinfo=UTC)),
        (
            "@Due",
            {"Due": datetime(2026, 5, 1, 11, tzinfo=timezone(timedelta(hours=2)))},
            datetime(2026, 5, 1, 9, tzinfo=UTC),
        ),
        ("@Day", {"Day": date(2026, 5, 1)}, datetime(2026, 5, 1, tzinfo=UTC)),
        (
            "@Doc.Deadline",
            {"Doc": {"Deadline": "2026-05-01T09:00:00Z"}},
            datetime(2026, 5, 1, 9, tzinfo=UTC),
        ),
        ("'2026-05-01 09:00'", {}, datetime(2026, 5, 1, 9, tzinfo=UTC)),
        ("'05/01/2026'", {}, datetime(2026, 5, 1, tzinfo=UTC)),
        ("@Minutes * 60000", {"Minutes": 5}, NOW + timedelta(minutes=5)),
        ("@Seconds * 1000", {"Seconds": "2.5"}, NOW + timedelta(seconds=2.5)),
        ("@Ms", {"Ms": Decimal("1500")}, NOW + timedelta(seconds=1.5)),
        ("@Wait", {"Wait": timedelta(hours=3)}, NOW + timedelta(hours=3)),
        ("@Wait", {"Wait": "2d 5h"}, NOW + timedelta(days=2, hours=5)),
        ("@Wait", {"Wait": "30000"}, NOW + timedelta(seconds=30)),
        ("@Wait", {"Wait": "20261201"}, NOW + timedelta(milliseconds=20261201)),
        ("@Hours + 'h'", {"Hours": "3"}, NOW + timedelta(hours=3)),
    ],
)
def test_expression_timers(value: str, parameters: dict[str, Any], expected: datetime) -> None:
    result = next_fire_time("Expression", value, NOW, parameters)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "parameters", "error", "fragment"),
    [
        ("@Missing", {}, InvalidArgument, "timer expression '@Missing' gave null"),
        ("@Flag", {"Flag": True}, InvalidArgument, "gave bool"),
        ("@List", {"List": [1]}, InvalidArgument, "gave list"),
        ("-1000", {}, InvalidArgument, "gave a negative delay (-1000)"),
        ("@W", {"W": timedelta(-1)}, InvalidArgument, "negative delay"),
        ("'whenever'", {}, InvalidArgument, "gave 'whenever', which is neither a date and time"),
        ("@N", {"N": 10**30}, InvalidArgument, "too many milliseconds"),
        ("@N", {"N": float("nan")}, InvalidArgument, "too many milliseconds"),
        ("@Sum >", {}, ExpressionError, "expected a value after '>' at position 6"),
        ("1 / 0", {}, ExpressionError, "division by zero"),
    ],
)
def test_bad_expression_timers(
    value: str, parameters: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as caught:
        next_fire_time("Expression", value, NOW, parameters)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, InvalidArgument)


# -- check_timer_value -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timer_type", "value"),
    [
        ("Interval", "10minutes"),
        ("Interval", "30000"),
        ("Time", "1m"),
        ("Time", "09:30"),
        ("Date", "2026-12-01"),
        ("DateAndTime", "2026-12-01T10:00:00+01:00"),
        ("Expression", "@Due"),
        ("Expression", "@Missing.Deeper * 1000"),  # only compiled: the parameters come later
        ("EXPRESSION", "1 / 0"),
    ],
)
def test_check_accepts(timer_type: str, value: str) -> None:
    assert check_timer_value(timer_type, value) is None


@pytest.mark.parametrize(
    ("timer_type", "value", "fragment"),
    [
        ("Interval", "soon", "invalid interval 'soon'"),
        ("Time", "25:00", "no such time of day"),
        ("Date", "2026-02-30", "invalid Date timer value '2026-02-30'"),
        ("DateAndTime", "later", "invalid DateAndTime timer value 'later'"),
        ("Expression", "@Sum >", "expression '@Sum >': expected a value after '>'"),
        ("Expression", "", "empty expression"),
        ("Weekly", "1d", "unknown timer type 'Weekly'"),
        ("Interval", None, "the Interval timer value must be a string, not NoneType"),
    ],
)
def test_check_reports_the_reason(timer_type: str, value: Any, fragment: str) -> None:
    reason = check_timer_value(timer_type, value)
    assert reason is not None
    assert fragment in reason


def test_timer_types_are_optimajets() -> None:
    assert TIMER_TYPES == ("Interval", "Time", "Date", "DateAndTime", "Expression")


@settings(max_examples=200)
@given(st.sampled_from(TIMER_TYPES), st.text(max_size=40))
def test_check_agrees_with_next_fire_time(timer_type: str, value: str) -> None:
    """A statically accepted non-expression value always gives a fire time, and vice versa."""
    reason = check_timer_value(timer_type, value)
    if timer_type == "Expression":
        return
    result: datetime | InvalidArgument
    try:
        result = next_fire_time(timer_type, value, NOW, {})
    except InvalidArgument as error:
        result = error
    if isinstance(result, datetime):
        assert reason is None
        assert result.tzinfo is UTC
    else:  # only the distance from now can be too far; everything else is known statically
        assert reason == str(result) or (reason is None and "beyond the year 9999" in str(result))
