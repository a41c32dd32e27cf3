"""``/api/v1/processes``: create process instances, list and execute commands, set states.

Process ids are unique across tenants; a process of another tenant answers 404 like one that
does not exist (a ``process_id`` chosen at creation that another tenant already uses is the
one exception: 409, so prefer generated ids).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.applications import Starlette

from flowkeeper.api.answers import JsonAnswer, answer, answer_list, off_loop
from flowkeeper.api.auth import AdminOrService, AnyKey, EngineDep, acting_identity
from flowkeeper.api.fields import NO_NUL
from flowkeeper.api.metrics import record_command
from flowkeeper.api.problems import COMMAND_NOT_PERMITTED, INVALID_CURSOR, ApiProblem, problem_of
from flowkeeper.api.schemas import (
    CommandExecute,
    CommandOut,
    ExecutionOut,
    HistoryOut,
    ProcessCreate,
    ProcessOut,
    ProcessPage,
    StateSet,
)
from flowkeeper.engine import Engine
from flowkeeper.errors import CommandNotAvailable, FlowkeeperError
from flowkeeper.processes.model import TriggerType
from flowkeeper.processes.records import ProcessStatus
from flowkeeper.storage.tables import NAME_LENGTH

router = APIRouter(prefix="/processes", tags=["processes"])

ProcessId = Annotated[
    str, Path(min_length=1, max_length=NAME_LENGTH, pattern=NO_NUL, description="Process id.")
]
TextQuery = Annotated[str | None, Query(min_length=1, max_length=NAME_LENGTH, pattern=NO_NUL)]


def encode_cursor(last_id: str) -> str:
    """An opaque cursor that continues after ``last_id``."""
    return base64.urlsafe_b64encode(last_id.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor continues after; 422 ``invalid-cursor`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        value = ""
    if not value or len(value) > NAME_LENGTH or "\x00" in value:
        raise ApiProblem(INVALID_CURSOR, f"{cursor!r} is not a cursor this API returned")
    return value


@router.post("", status_code=201, response_model=ProcessOut, summary="Create a process")
async def create_process(
    body: ProcessCreate, principal: AnyKey, engine: EngineDep, request: Request
) -> Response:
    """Start a process of the newest version of ``scheme`` in the caller's tenant."""
    identity = acting_identity(principal, body.identity)

    def work() -> Response:
        process_id = engine.processes.create(
            body.scheme,
            identity=identity,
            parameters=body.parameters,
            process_id=body.process_id,
            tenant_id=principal.tenant,
        )
        return answer(ProcessOut.of(engine.processes.get(process_id)), status_code=201)

    return await off_loop(request, work)


@router.get("", response_model=ProcessPage, summary="List processes")
async def list_processes(
    principal: AnyKey,
    engine: EngineDep,
    request: Request,
    scheme: TextQuery = None,
    status: ProcessStatus | None = None,
    activity: TextQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> Response:
    """The tenant's processes matching the filters, by id, one page at a time."""
    after = None if cursor is None else decode_cursor(cursor)

    def work() -> Response:
        found = engine.processes.list(
            scheme_code=scheme,
            status=status,
            activity=activity,
            tenant_id=principal.tenant,
            after=after,
            limit=limit,
        )
        next_cursor = encode_cursor(found[-1].id) if len(found) == limit else None
        return answer(ProcessPage(items=[ProcessOut.of(p) for p in found], next_cursor=next_cursor))

    return await off_loop(request, work)


@router.get("/{process_id}", response_model=ProcessOut, summary="Read a process")
async def get_process(
    process_id: ProcessId, principal: AnyKey, engine: EngineDep, request: Request
) -> Response:
    """The process as stored now."""
    return await off_loop(request, lambda: read_process(engine, process_id, principal.tenant))


def read_process(engine: Engine, process_id: str, tenant_id: str | None) -> Response:
    """The answer to ``GET /processes/{id}`` (also given by :mod:`flowkeeper.api.fast_routes`)."""
    return answer(ProcessOut.of(engine.processes.get(process_id, tenant_id=tenant_id)))


@router.get(
    "/{process_id}/commands", response_model=list[CommandOut], summary="Commands available now"
)
async def list_commands(
    process_id: ProcessId,
    principal: AnyKey,
    engine: EngineDep,
    request: Request,
    identity: TextQuery = None,
    check_conditions: bool = False,
) -> Response:
    """The commands ``identity`` (default: the key's) may execute now, in scheme order."""
    acting = acting_identity(principal, identity)

    def work() -> Response:
        commands = engine.processes.commands(
            process_id, acting, check_conditions=check_conditions, tenant_id=principal.tenant
        )
        return answer_list(CommandOut, [CommandOut.of(c) for c in commands])

    return await off_loop(request, work)


def command_problem(
    engine: Engine, process_id: str, command: str, error: CommandNotAvailable
) -> ApiProblem:
    """403 when the command leaves the current activity but the identity may not execute
    it; 409 when it is not available there at all (or the process is finished)."""
    problem = problem_of(error)
    try:
        process = engine.processes.get(process_id)
        if process.is_finished:
            return problem
        scheme = engine.schemes.get(
            process.scheme_code, process.scheme_version, tenant_id=process.tenant_id
        )
    except FlowkeeperError:
        return problem
    here = any(
        t.trigger.type is TriggerType.COMMAND and t.trigger.name == command
        for t in scheme.transitions_from(process.activity)
    )
    return ApiProblem(COMMAND_NOT_PERMITTED, str(error)) if here else problem


@router.post(
    "/{process_id}/commands/{command}",
    response_model=ExecutionOut,
    summary="Execute a command",
    responses={403: {"description": "The identity may not execute this command."}},
)
async def execute_command(
    process_id: ProcessId,
    command: Annotated[str, Path(min_length=1, max_length=NAME_LENGTH, pattern=NO_NUL)],
    principal: AnyKey,
    engine: EngineDep,
    request: Request,
    body: CommandExecute | None = None,
) -> Response:
    """Execute ``command`` as ``identity``: 409 if it is not available in the current
    activity, 403 if the identity may not execute it; ``executed`` is false if no
    transition's conditions held (nothing changed)."""
    body = body or CommandExecute()
    identity = acting_identity(principal, body.identity)
    parameters, tenant, app = body.parameters, principal.tenant, request.app
    return await off_loop(
        request,
        lambda: execute(engine, app, process_id, command, identity, parameters, tenant),
    )


def execute(
    engine: Engine,
    app: Starlette,
    process_id: str,
    command: str,
    identity: str | None,
    parameters: dict[str, Any] | None,
    tenant_id: str | None,
) -> Response:
    """The answer to ``POST /processes/{id}/commands/{command}`` (also given by
    :mod:`flowkeeper.api.fast_routes`)."""
    try:
        result = engine.processes.execute(
            process_id, command, identity=identity, parameters=parameters, tenant_id=tenant_id
        )
    except CommandNotAvailable as error:
        raise command_problem(engine, process_id, command, error) from None
    record_command(app, result.executed)
    return answer(
        ExecutionOut(
            executed=result.executed,
            process=ProcessOut.of(result.process),
            transitions=[HistoryOut.of(t) for t in result.transitions],
        )
    )


@router.get("/{process_id}/states", response_model=list[str], summary="States to set")
async def list_states(
    process_id: ProcessId, principal: AnyKey, engine: EngineDep, request: Request
) -> Response:
    """The states ``POST /processes/{id}/state`` accepts for this process."""

    def work() -> Response:
        states = engine.processes.states_to_set(process_id, tenant_id=principal.tenant)
        return JsonAnswer(json.dumps(states))

    return await off_loop(request, work)


@router.post("/{process_id}/state", response_model=ProcessOut, summary="Set the state")
async def set_state(
    process_id: ProcessId,
    body: StateSet,
    principal: AdminOrService,
    engine: EngineDep,
    request: Request,
) -> Response:
    """Move the process to the activity of ``state`` without a transition."""
    identity = acting_identity(principal, body.identity)

    def work() -> Response:
        process = engine.processes.set_state(
            process_id,
            body.state,
            identity=identity,
            parameters=body.parameters,
            tenant_id=principal.tenant,
        )
        return answer(ProcessOut.of(process))

    return await off_loop(request, work)


@router.get("/{process_id}/history", response_model=list[HistoryOut], summary="History")
async def get_history(
    process_id: ProcessId, principal: AnyKey, engine: EngineDep, request: Request
) -> Response:
    """The transitions the process made, oldest first."""

    def work() -> Response:
        records = engine.processes.history(process_id, tenant_id=principal.tenant)
        return answer_list(HistoryOut, [HistoryOut.of(r) for r in records])

    return await off_loop(request, work)


@router.post(
    "/{process_id}/update-scheme", response_model=ProcessOut, summary="Move to the newest scheme"
)
async def update_scheme(
    process_id: ProcessId, principal: AdminOrService, engine: EngineDep, request: Request
) -> Response:
    """Move the process to the newest version of its scheme (409 if that cannot be done)."""

    def work() -> Response:
        return answer(
            ProcessOut.of(engine.processes.update_scheme(process_id, tenant_id=principal.tenant))
        )

    return await off_loop(request, work)


@router.delete(
    "/{process_id}", status_code=204, response_class=Response, summary="Delete a process"
)
async def delete_process(
    process_id: ProcessId, principal: AdminOrService, engine: EngineDep, request: Request
) -> Response:
    """Delete the process, its history and its pending timers."""
    await off_loop(request, lambda: engine.processes.delete(process_id, tenant_id=principal.tenant))
    return Response(status_code=204)
