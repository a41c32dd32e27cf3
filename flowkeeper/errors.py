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


class SchemeError(InvalidArgument):
    """A scheme is malformed; ``errors`` lists every problem found, each naming its element.

    >>> err = SchemeError(["transition 'A_B': unknown activity 'C'"])
    >>> err.errors
    ["transition 'A_B': unknown activity 'C'"]
    """

    def __init__(self, errors: Sequence[str], *, source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        where = f"scheme {source}" if source else "scheme"
        if len(self.errors) == 1:
            message = f"{where} is invalid: {self.errors[0]}"
        else:
            lines = "\n".join(f"  - {error}" for error in self.errors)
            message = f"{where} is invalid ({len(self.errors)} problems):\n{lines}"
        super().__init__(message)


class ExpressionError(InvalidArgument):
    """An expression cannot be parsed or evaluated (the message says where and why)."""


class SchemeNotFound(FlowkeeperError, LookupError):
    """No scheme has the given name (or no such version of it)."""


class ProcessNotFound(FlowkeeperError, LookupError):
    """No process instance has the given id."""


class ProcessExists(FlowkeeperError):
    """A process instance with the given id already exists; nothing was created."""


class CommandNotAvailable(FlowkeeperError):
    """The command cannot be executed now by that identity (wrong activity or not permitted)."""


class InvalidCommandParameters(InvalidArgument):
    """A command's input parameters are missing, unknown or of the wrong type."""


class StateNotAvailable(FlowkeeperError):
    """The state cannot be set on that process (unknown, or not marked for setting)."""


class ProcessFinished(FlowkeeperError):
    """The process instance is finalized or terminated and does not move any more."""


class ActionNotRegistered(ConfigurationError):
    """A scheme uses an action, condition or rule that no Python code registered."""


class CallbackFailed(FlowkeeperError):
    """An action, condition or rule served by a tenant's HTTP service (a callback) failed:
    no answer in time, no connection, a status outside 2xx, or an answer of the wrong shape.

    The call that ran it changed nothing (its transaction rolled back).
    """

    def __init__(self, url: str, kind: str, name: str, reason: str) -> None:
        self.url = url
        self.kind = kind
        self.name = name
        self.reason = reason
        super().__init__(f"the callback {kind} {name!r} served by {url} failed: {reason}")


class EndlessLoop(FlowkeeperError):
    """Automatic transitions kept firing past the engine's limit; nothing was written."""


class SchemeUpdateError(FlowkeeperError):
    """A process cannot move to the newest version of its scheme (the message says why)."""


class FeatureNotSupported(FlowkeeperError):
    """The scheme uses a feature this version of Flowkeeper does not run yet."""
