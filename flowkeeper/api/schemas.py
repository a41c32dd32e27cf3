"""The bodies the HTTP API accepts and returns: these models are its OpenAPI contract.

Request models refuse unknown fields; text that no database could store (NUL characters, lone
surrogates, names over 255 characters) is refused here, with a 422 problem.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from flowkeeper.api.fields import MAX_STEPS_PER_REQUEST, Name, Parameters, StepId, Text
from flowkeeper.api.keys import DESCRIPTION_LENGTH, ApiKey, Role
from flowkeeper.processes.model import Classifier
from flowkeeper.processes.records import (
    Command,
    HistoryRecord,
    Process,
    ProcessStatus,
    SchemeInfo,
)
from flowkeeper.steps.model import StepRecord


class Input(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


# -- schemes -----------------------------------------------------------------------------------


class SchemeSaved(BaseModel):
    """A scheme version just saved."""

    name: str
    version: int


class SchemeSummary(BaseModel):
    """One saved version of a scheme."""

    name: str
    version: int
    obsolete: bool
    created_at: datetime

    @classmethod
    def of(cls, info: SchemeInfo) -> SchemeSummary:
        """The summary of a stored version."""
        return cls(
            name=info.code, version=info.version, obsolete=info.obsolete, created_at=info.created_at
        )


class SchemeOut(BaseModel):
    """A scheme version in its JSON shape (what ``POST /schemes`` takes as JSON)."""

    name: str
    version: int
    definition: dict[str, Any]


# -- processes ---------------------------------------------------------------------------------


class ProcessCreate(Input):
    """Start a process of the newest version of ``scheme``."""

    scheme: Name
    identity: Name | None = None
    parameters: Parameters | None = None
    process_id: Name | None = Field(
        default=None, description="The id to give the process; a new UUID when omitted."
    )


class CommandExecute(Input):
    """Execute a command; ``identity`` defaults to the key's identity."""

    identity: Name | None = None
    parameters: Parameters | None = None


class StateSet(Input):
    """Move a process to the activity of ``state`` (one marked for setting)."""

    state: Name
    identity: Name | None = None
    parameters: Parameters | None = None


class ProcessOut(BaseModel):
    """A process instance as stored."""

    id: str
    scheme: str
    scheme_version: int
    activity: str
    state: str | None
    status: ProcessStatus
    parameters: dict[str, Any]  # stored values, checked when they were set
    tenant_id: str | None
    parent_id: str | None
    root_id: str | None
    created_at: datetime
    updated_at: datetime
    row_version: int

    @classmethod
    def of(cls, process: Process) -> ProcessOut:
        """The body of a process snapshot."""
        return cls(
            id=process.id,
            scheme=process.scheme_code,
            scheme_version=process.scheme_version,
            activity=process.activity,
            state=process.state,
            status=process.status,
            parameters=dict(process.parameters),
            tenant_id=process.tenant_id or None,
            parent_id=process.parent_id,
            root_id=process.root_id,
            created_at=process.created_at,
            updated_at=process.updated_at,
            row_version=process.row_version,
        )


class ProcessPage(BaseModel):
    """A page of processes by id; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[ProcessOut]
    next_cursor: str | None


class CommandInputOut(BaseModel):
    """An input parameter of a command."""

    name: str
    parameter: str
    required: bool
    default: str | None


class CommandOut(BaseModel):
    """A command the identity may execute now."""

    name: str
    caption: str
    classifier: Classifier
    input_parameters: list[CommandInputOut]

    @classmethod
    def of(cls, command: Command) -> CommandOut:
        """The body of an available command."""
        return cls(
            name=command.name,
            caption=command.caption,
            classifier=command.classifier,
            input_parameters=[
                CommandInputOut(
                    name=i.name, parameter=i.parameter, required=i.required, default=i.default
                )
                for i in command.input_parameters
            ],
        )


class HistoryOut(BaseModel):
    """One transition a process made."""

    seq: int
    transition: str | None
    from_activity: str
    to_activity: str
    from_state: str | None
    to_state: str | None
    command: str | None
    trigger: str
    classifier: str
    identity: str | None
    at: datetime

    @classmethod
    def of(cls, record: HistoryRecord) -> HistoryOut:
        """The body of a history record."""
        return cls(**record.__dict__)


class ExecutionOut(BaseModel):
    """What executing a command did; ``executed`` is false when no condition held."""

    executed: bool
    process: ProcessOut
    transitions: list[HistoryOut]


# -- steps -------------------------------------------------------------------------------------


class StepIn(Input):
    """A step to add to the ready queue."""

    name: Name
    state: Any = None
    run_at: AwareDatetime | None = None
    singleton: bool = False
    flow_id: Name | None = None
    correlation_id: Name | None = None
    search_key: Name | None = None
    description: Text | None = None


StepsIn = StepIn | Annotated[list[StepIn], Field(min_length=1, max_length=MAX_STEPS_PER_REQUEST)]
"""One step, or a list of them."""


class StepSearch(Input):
    """Which steps: fields left out do not filter; ``search_key`` and ``description`` take
    ``%`` wildcards."""

    id: StepId | None = None
    name: Text | None = None
    flow_id: Text | None = None
    correlation_id: Text | None = None
    search_key: Text | None = None
    description: Text | None = None
    created_from: AwareDatetime | None = None
    created_to: AwareDatetime | None = None


class Reexecute(Input):
    """Copy matching done/failed steps back to ready as new steps."""

    search: StepSearch
    queues: list[Literal["done", "failed"]] = Field(default=["failed"], min_length=1)


class FailSteps(Input):
    """Move matching ready steps to the failed queue, with ``description``."""

    search: StepSearch
    description: Text | None = None


class Activate(Input):
    """Make a ready step due now with ``args`` as its activation arguments."""

    args: Any = None


class StepOut(BaseModel):
    """A step as stored in one of the queues."""

    queue: Literal["ready", "done", "failed"]
    id: int
    name: str
    state: Any
    singleton: bool
    flow_id: str | None
    correlation_id: str | None
    search_key: str | None
    activation_args: Any
    execution_count: int
    run_at: datetime
    created_at: datetime
    created_by_step_id: int | None
    execution_started_at: datetime | None
    execution_duration_ms: int | None
    executed_by: str | None
    description: str | None
    tenant_id: str | None
    locked_by: str | None
    locked_until: datetime | None

    @classmethod
    def of(cls, record: StepRecord) -> StepOut:
        """The body of a stored step."""
        values = {name: getattr(record, name) for name in record.__slots__}
        values["tenant_id"] = record.tenant_id or None
        return cls(**values)


class StepPage(BaseModel):
    """A page of steps by id (across the queues asked for)."""

    items: list[StepOut]
    next_cursor: str | None


class StepIds(BaseModel):
    """The ids of the steps added, re-executed or failed."""

    ids: list[int]


class StepCounts(BaseModel):
    """How many matching steps each queue holds."""

    ready: int
    done: int
    failed: int


class Activated(BaseModel):
    """Whether the step was made due; false if it is running or no longer ready."""

    activated: bool


# -- keys and health ---------------------------------------------------------------------------


class KeyCreate(Input):
    """Make a key in the caller's tenant; a ``user`` key needs an ``identity``."""

    role: Role
    identity: Name | None = None
    description: Annotated[Text, StringConstraints(max_length=DESCRIPTION_LENGTH)] | None = None


class KeyOut(BaseModel):
    """An API key, without its secret."""

    id: str
    tenant_id: str | None
    role: str
    identity: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    description: str | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        """The body of a stored key."""
        return cls(**{**key.__dict__, "tenant_id": key.tenant_id or None})


class KeyCreated(KeyOut):
    """A key just made; ``key`` is shown this once and never again."""

    key: str


class Health(BaseModel):
    """The server answers."""

    status: Literal["ok"]


class Ready(BaseModel):
    """The database answers and its schema is current."""

    status: Literal["ready"]
    revision: str
