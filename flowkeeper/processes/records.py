"""Values the process API returns: processes, available commands, history, results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Literal, TypeAlias

from flowkeeper.processes.model import Classifier, CommandInput


class ProcessStatus(StrEnum):
    """Where a process instance is in its life."""

    INITIALIZED = "Initialized"
    RUNNING = "Running"
    IDLED = "Idled"
    FINALIZED = "Finalized"
    TERMINATED = "Terminated"
    ERROR = "Error"


class _AnyTenant(Enum):
    ANY = "any"


ANY_TENANT = _AnyTenant.ANY
"""The default ``tenant_id`` of calls on one process: whichever tenant it belongs to."""

TenantFilter: TypeAlias = str | Literal[_AnyTenant.ANY] | None
"""A tenant a process must belong to (``None``: the default tenant), or :data:`ANY_TENANT`."""


@dataclass(frozen=True)
class Process:
    """A process instance as stored (a snapshot: it does not change when the process moves)."""

    id: str
    scheme_code: str
    scheme_version: int
    activity: str
    state: str | None
    status: ProcessStatus
    parameters: Mapping[str, Any]
    tenant_id: str | None
    parent_id: str | None
    root_id: str | None
    created_at: datetime
    updated_at: datetime
    row_version: int

    @property
    def is_finished(self) -> bool:
        """True once the process is finalized or terminated."""
        return self.status in (ProcessStatus.FINALIZED, ProcessStatus.TERMINATED)


@dataclass(frozen=True)
class Command:
    """A command an identity may execute on a process now."""

    name: str
    classifier: Classifier
    input_parameters: tuple[CommandInput, ...] = ()
    caption: str = ""
    """The command's localized name (its name when the scheme has none)."""


@dataclass(frozen=True)
class HistoryRecord:
    """One transition a process made; ``seq`` counts 1, 2, … per process."""

    seq: int
    transition: str | None
    from_activity: str
    to_activity: str
    from_state: str | None
    to_state: str | None
    command: str | None
    trigger: str
    """``Command``, ``Auto``, ``Timer`` or ``SetState``."""
    classifier: str
    identity: str | None
    at: datetime


@dataclass(frozen=True)
class ExecutionResult:
    """What ``execute`` did: ``executed`` is False when no transition's conditions held."""

    executed: bool
    process: Process
    transitions: tuple[HistoryRecord, ...] = field(default=())
    """The transitions this call made, in order."""


@dataclass(frozen=True)
class SchemeInfo:
    """One saved version of a scheme."""

    code: str
    version: int
    obsolete: bool
    created_at: datetime
    tenant_id: str | None = None
