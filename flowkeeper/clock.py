"""UTC time: the only clock Flowkeeper reads, and the check that refuses naive datetimes."""

from __future__ import annotations

from datetime import UTC, datetime

from flowkeeper.errors import NaiveDatetimeError


def utcnow() -> datetime:
    """The current time as an aware UTC ``datetime``."""
    return datetime.now(UTC)


def require_aware(value: datetime, what: str) -> datetime:
    """Return ``value`` converted to UTC, refusing a naive ``datetime``."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetimeError(
            f"{what} must be a timezone-aware datetime (got naive {value.isoformat()}); "
            "use datetime.now(UTC) or attach a tzinfo"
        )
    return value.astimezone(UTC)
