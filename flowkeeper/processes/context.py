"""What actions, conditions and rules see of a process while the engine moves it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from flowkeeper.processes.model import Scheme
from flowkeeper.processes.parameters import ProcessParameters
from flowkeeper.processes.records import ProcessStatus


class LiveProcess:
    """A process instance in the middle of a call: the working copy the engine moves.

    ``parameters`` is a mutable mapping; changes made by actions are saved with the
    transition (except parameters the scheme declares ``Temporary``). System parameters such
    as ``ProcessId`` and ``CurrentActivity`` are readable through it.
    """

    def __init__(
        self,
        *,
        id: str,
        scheme: Scheme,
        scheme_version: int,
        activity: str,
        state: str | None,
        status: ProcessStatus,
        parameters: dict[str, Any],
        tenant_id: str | None = None,
        parent_id: str | None = None,
        root_id: str | None = None,
    ) -> None:
        self.id = id
        self.scheme = scheme
        self.scheme_version = scheme_version
        self.activity = activity
        self.state = state
        self.status = status
        self.tenant_id = tenant_id
        self.parent_id = parent_id
        self.root_id = root_id
        self.previous_activity: str | None = None
        self.previous_state: str | None = None
        self.identity: str | None = None
        self.command: str | None = None
        self.executed_activity: str | None = None
        self.executed_transition: str | None = None
        self.parameters = ProcessParameters(parameters, self._system_parameters)

    @property
    def scheme_code(self) -> str:
        """The scheme's name (the code ``create`` was given)."""
        return self.scheme.name

    def _system_parameters(self) -> dict[str, Any]:
        return {
            "ProcessId": self.id,
            "SchemeCode": self.scheme.name,
            "SchemeVersion": self.scheme_version,
            "CurrentActivity": self.activity,
            "CurrentState": self.state,
            "PreviousActivity": self.previous_activity,
            "PreviousState": self.previous_state,
            "IdentityId": self.identity,
            "CurrentCommand": self.command,
            "ExecutedActivity": self.executed_activity,
            "ExecutedTransition": self.executed_transition,
            "TenantId": self.tenant_id,
            "ParentProcessId": self.parent_id,
            "RootProcessId": self.root_id or self.id,
        }

    def __repr__(self) -> str:
        return f"<LiveProcess {self.id} {self.scheme.name}@{self.activity}>"


@dataclass
class ActionContext:
    """The argument every action and condition receives.

    ``process``: the process being moved (``process.parameters`` is writable in actions);
    ``identity``: who executes the command (None for timers and automatic moves of a
    process nobody is acting on); ``command``: the command's name, if any;
    ``connection``: the transaction's SQLAlchemy connection (write business data through it:
    it commits or rolls back with the transition); ``engine``: the ``flowkeeper.Engine``.
    """

    process: LiveProcess
    identity: str | None
    command: str | None
    connection: sa.Connection
    engine: Any
    extras: dict[str, Any] = field(default_factory=dict)
    """Room for an application to pass values between its actions within one call."""
