"""Timer values of business-process schemes: when does a timer fire?

The OptimaJet timer types, matched case-insensitively, and the values they take:

- ``Interval``: now plus a duration, given as a bare integer of milliseconds (``30000``),
  as numbers with units in any order and combination, spaces optional, case-insensitive
  (``10minutes``, ``2d 5h 30m 10s``, ``1.5h``; units ``d day days``, ``h hr hrs hour
  hours``, ``m min mins minute minutes``, ``s sec secs second seconds``, ``ms msec
  millisecond milliseconds``; ``m`` is minutes) or as a .NET TimeSpan ``[D.]HH:MM[:SS[.f]]``.
- ``Time``: a time of day ``HH:MM[:SS]`` in UTC, next occurring strictly after now (today
  if still ahead, else tomorrow). A value that is not a time of day but is an interval means
  now plus that interval, because OptimaJet's own sample ``Timer.xml`` has ``Type="Time"
  Value="1m"``; so ``01:30`` is half past one, ``1.01:30:00`` a day and 90 minutes from now.
- ``Date``: ``YYYY-MM-DD`` or ``MM/DD/YYYY``, firing at 00:00 UTC of that day.
- ``DateAndTime``: ISO 8601 (``2026-12-01T10:00:00``, ``2026-12-01 10:00``, ``...Z``,
  ``...+02:00``) or ``MM/DD/YYYY HH:MM[:SS]``; without an offset it is UTC.
- ``Expression``: an expression (:mod:`flowkeeper.processes.expressions`) evaluated against
  the process parameters. Its result may be a ``datetime`` (naive means UTC), a ``date``
  (00:00 UTC), a ``timedelta`` or a number of milliseconds from now, or a string holding
  any of the forms above (a bare integer string is milliseconds).

A ``Date``/``DateAndTime`` in the past is returned as it is: such a timer is simply due.
Every result is an aware UTC ``datetime``; bad values raise
:class:`~flowkeeper.errors.InvalidArgument` naming the value.

>>> from datetime import UTC, datetime
>>> now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
>>> next_fire_time("Interval", "2d 5h", now, {})
datetime.datetime(2026, 1, 3, 17, 0, tzinfo=datetime.timezone.utc)
>>> next_fire_time("Time", "09:30", now, {})
datetime.datetime(2026, 1, 2, 9, 30, tzinfo=datetime.timezone.utc)
>>> next_fire_time("Expression", "@Delay * 1000", now, {"Delay": 90})
datetime.datetime(2026, 1, 1, 12, 1, 30, tzinfo=datetime.timezone.utc)
>>> parse_interval("1.5h")
datetime.timedelta(seconds=5400)
>>> check_timer_value("Date", "2026-02-30")
"invalid Date timer value '2026-02-30': day is out of range for month"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from flowkeeper.clock import require_aware
from flowkeeper.errors import InvalidArgument
from flowkeeper.processes.expressions import MAX_LENGTH, compile_expression

__all__ = ["TIMER_TYPES", "check_timer_value", "next_fire_time", "parse_interval"]

TIMER_TYPES = ("Interval", "Time", "Date", "DateAndTime", "Expression")
_BY_LOWER = {name.lower(): name for name in TIMER_TYPES}
_MAX_TEXT = 200
_MICROSECONDS = {
    **dict.fromkeys(("d", "day", "days"), 86_400_000_000),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3_600_000_000),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60_000_000),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1_000_000),
    **dict.fromkeys(("ms", "msec", "millisecond", "milliseconds"), 1_000),
}
_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)\s*")
_TIMESPAN = re.compile(r"(?:([0-9]+)\.)?([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,7}))?)?")
_TIME_OF_DAY = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_US_DATE = re.compile(
    r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})(?:[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?)?"
)
_INTERVAL_HINT = "write e.g. '30000' (milliseconds), '10minutes', '2d 5h 30m 10s' or '02:30:00'"


def _text(value: Any, what: str, limit: int = _MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise InvalidArgument(f"{what} {value[:40]!r}... is longer than {_MAX_TEXT} characters")
    return value.strip()


def parse_interval(text: str) -> timedelta:
    """A duration: milliseconds (``"30000"``), units (``"2d 5h 30m 10s"``) or ``"D.HH:MM:SS"``.

    >>> parse_interval("10minutes"), parse_interval("30000")
    (datetime.timedelta(seconds=600), datetime.timedelta(seconds=30))
    >>> parse_interval("1.02:03:04")
    datetime.timedelta(days=1, seconds=7384)
    """
    value = _text(text, "an interval")

    def fail(reason: str) -> InvalidArgument:
        return InvalidArgument(f"invalid interval {text!r}: {reason}; {_INTERVAL_HINT}")

    if not value:
        raise fail("it is empty")
    if value.startswith("-"):
        raise fail("an interval cannot be negative")
    try:
        if value.isascii() and value.isdigit():
            return timedelta(milliseconds=int(value))
        if span := _TIMESPAN.fullmatch(value):
            days, hours, minutes, seconds, fraction = span.groups()
            if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
                raise fail("hours must be below 24, minutes and seconds below 60")
            micro = int(((fraction or "") + "000000")[:6])
            return timedelta(
                days=int(days or 0),
                hours=int(hours),
                minutes=int(minutes),
                seconds=int(seconds or 0),
                microseconds=micro,
            )
        total, position = Decimal(0), 0
        while position < len(value):
            part = _PART.match(value, position)
            if part is None:
                raise fail(f"cannot read {value[position:]!r}")
            unit = part[2].lower()
            if unit not in _MICROSECONDS:
                raise fail(f"unknown unit {part[2]!r}")
            total += Decimal(part[1]) * _MICROSECONDS[unit]
            position = part.end()
        return timedelta(microseconds=int(total.to_integral_value()))
    except OverflowError:
        raise fail("it is too long a duration") from None


def _time_of_day(value: str) -> time | None:
    match = _TIME_OF_DAY.fullmatch(value)
    if match is None:
        return None
    hour, minute, second = (int(group or 0) for group in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        raise InvalidArgument(f"invalid Time timer value {value!r}: no such time of day")
    return time(hour, minute, second)


def _calendar(value: str, with_time: bool) -> datetime | None:
    """A ``YYYY-MM-DD`` or ``MM/DD/YYYY[ HH:MM[:SS]]`` moment in UTC, else ``None``."""
    if match := _ISO_DATE.fullmatch(value):
        year, month, day = (int(group) for group in match.groups())
        return datetime(year, month, day, tzinfo=UTC)
    match = _US_DATE.fullmatch(value)
    if match is None or (match[4] is not None and not with_time):
        return None
    month, day, year, hour, minute, second = (int(group or 0) for group in match.groups())
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _date(value: str) -> datetime:
    try:
        moment = _calendar(value, with_time=False)
    except ValueError as exc:
        raise InvalidArgument(f"invalid Date timer value {value!r}: {exc}") from None
    if moment is None:
        raise InvalidArgument(
            f"invalid Date timer value {value!r}: expected a date like 2026-12-01 or "
            "12/01/2026 (a date with a time of day is a DateAndTime timer)"
        )
    return moment


def _date_and_time(value: str) -> datetime:
    try:
        moment = _calendar(value, with_time=True) or datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidArgument(
            f"invalid DateAndTime timer value {value!r}: {exc}; expected e.g. "
            "2026-12-01T10:00:00, 2026-12-01 10:00+02:00 or 12/01/2026 10:00"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _later(now: datetime, delta: timedelta, value: object) -> datetime:
    try:
        return now + delta
    except OverflowError:
        raise InvalidArgument(f"timer value {value!r} lies beyond the year 9999") from None


def _plan(timer_type: str, value: str) -> Callable[[datetime], datetime]:
    """Parse a value that needs no parameters into a function of (aware UTC) now."""
    if timer_type == "Interval":
        delta = parse_interval(value)
        return lambda now: _later(now, delta, value)
    if timer_type == "Date":
        moment = _date(value)
        return lambda now: moment
    if timer_type == "DateAndTime":
        moment = _date_and_time(value)
        return lambda now: moment
    # Time: a time of day, else (as OptimaJet's Timer.xml uses it) an interval
    of_day = _time_of_day(value)
    if of_day is None:
        try:
            delta = parse_interval(value)
        except InvalidArgument:
            raise InvalidArgument(
                f"invalid Time timer value {value!r}: expected a time of day like 09:30 or "
                f"an interval ({_INTERVAL_HINT})"
            ) from None
        return lambda now: _later(now, delta, value)

    def next_time_of_day(now: datetime) -> datetime:
        today = datetime.combine(now.date(), of_day, tzinfo=UTC)
        return today if today > now else _later(today, timedelta(days=1), value)

    return next_time_of_day


def _canonical_type(timer_type: str) -> str:
    name = _BY_LOWER.get(timer_type.lower()) if isinstance(timer_type, str) else None
    if name is None:
        raise InvalidArgument(
            f"unknown timer type {timer_type!r}; expected one of {', '.join(TIMER_TYPES)}"
        )
    return name


def _from_result(result: Any, now: datetime, value: str) -> datetime:
    """The fire time an Expression timer's result stands for."""
    where = f"timer expression {value!r}"
    if isinstance(result, datetime):
        return result.replace(tzinfo=UTC) if result.utcoffset() is None else result.astimezone(UTC)
    if isinstance(result, date):
        return datetime.combine(result, time(), tzinfo=UTC)
    if isinstance(result, timedelta | int | float | Decimal) and not isinstance(result, bool):
        try:
            delta = (
                result if isinstance(result, timedelta) else timedelta(milliseconds=float(result))
            )
        except (OverflowError, ValueError):
            raise InvalidArgument(f"{where} gave {result!r}, too many milliseconds") from None
        if delta < timedelta(0):
            raise InvalidArgument(f"{where} gave a negative delay ({result!r})")
        return _later(now, delta, value)
    if isinstance(result, str):
        text = _text(result, f"the result of {where}")
        if text.isascii() and text.isdigit():
            return _later(now, parse_interval(text), value)
        try:
            return _date_and_time(text)
        except InvalidArgument:
            pass
        try:
            return _later(now, parse_interval(text), value)
        except InvalidArgument:
            raise InvalidArgument(
                f"{where} gave {text!r}, which is neither a date and time nor an interval"
            ) from None
    kind = "null" if result is None else type(result).__name__
    raise InvalidArgument(
        f"{where} gave {kind}; it must give a datetime, a date, a number of milliseconds, "
        "a timedelta or a string holding one of them"
    )


def next_fire_time(
    timer_type: str, value: str, now: datetime, parameters: Mapping[str, Any]
) -> datetime:
    """When a timer of ``timer_type`` with ``value``, armed at ``now``, fires (aware UTC).

    ``now`` must be timezone-aware (:class:`~flowkeeper.errors.NaiveDatetimeError`
    otherwise); ``parameters`` are only read by ``Expression`` timers. Raises
    :class:`~flowkeeper.errors.InvalidArgument` (an ``ExpressionError`` for expressions)
    naming the value when it cannot be used.
    """
    now = require_aware(now, "now")
    kind = _canonical_type(timer_type)
    if kind == "Expression":
        result = compile_expression(_text(value, "the timer expression", MAX_LENGTH)).evaluate(
            parameters
        )
        return _from_result(result, now, value)
    return _plan(kind, _text(value, f"the {kind} timer value"))(now)


def check_timer_value(timer_type: str, value: str) -> str | None:
    """``None`` if the value can be used (statically), else the reason, for scheme checks.

    An ``Expression`` value only has to compile; its result depends on the parameters.

    >>> check_timer_value("Interval", "2d 5h") is None, check_timer_value("Time", "1m") is None
    (True, True)
    """
    try:
        kind = _canonical_type(timer_type)
        if kind == "Expression":
            compile_expression(_text(value, "the timer expression", MAX_LENGTH))
        else:
            _plan(kind, _text(value, f"the {kind} timer value"))
    except InvalidArgument as error:
        return str(error)
    return None
