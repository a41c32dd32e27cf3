"""Every exception Flowkeeper raises on purpose derives from :class:`FlowkeeperError`.

Each message says what went wrong and what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowkeeper.steps.model import Step


class FlowkeeperError(Exception):
    """Base class of all Flowkeeper errors."""


class InvalidArgument(FlowkeeperError, ValueError):
    """A value given to the API is not acceptable (the message says which and why)."""


class NaiveDatetimeError(InvalidArgument):
    """A ``datetime`` without a time zone was given; Flowkeeper only accepts aware ones."""


class InvalidStep(InvalidArgument):
    """A step to add is malformed: empty or over-long name, state that is not JSON, …"""


class ConfigurationError(FlowkeeperError):
    """The engine cannot be set up as asked."""


class InvalidDatabaseURL(ConfigurationError):
    """The database URL cannot be parsed or names a database Flowkeeper does not support."""


class DatabaseUnavailable(FlowkeeperError):
    """The database cannot be reached."""


class MigrationRequired(FlowkeeperError):
    """The database schema is missing or older than this version of Flowkeeper."""


class SchemaNewerThanCode(FlowkeeperError):
    """The database schema was migrated by a newer Flowkeeper than the one running."""


class StepNotFound(FlowkeeperError, LookupError):
    """No step has the given id in any queue."""


class StepAlreadyRegistered(InvalidArgument):
    """Two implementations were registered for the same step name."""


class SingletonExists(FlowkeeperError):
    """A singleton step of that name is already ready; nothing was added."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        listed = ", ".join(repr(n) for n in self.names)
        super().__init__(
            f"a singleton step named {listed} is already in the ready queue; "
            "nothing was added (wait for it to finish, or add it with singleton=False)"
        )


class ConcurrencyError(FlowkeeperError):
    """Another transaction changed the same object first; retry the operation."""


class FailStep(FlowkeeperError):
    """Raise inside a step implementation to move the step to the failed queue at once.

    It is never retried. ``new_steps`` are added in the same transaction.
    """

    def __init__(self, description: str | None = None, new_steps: Sequence[Step] = ()) -> None:
        super().__init__(description or "step failed")
        self.description = description
        self.new_steps = tuple(new_steps)
