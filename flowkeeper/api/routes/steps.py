"""``/api/v1/steps``: add steps, list and count them, activate, re-execute and fail them.

Steps added here belong to the key's tenant, and every listing, count and change sees only
that tenant's steps (a step added by a running step inherits its parent's tenant).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from flowkeeper.api.auth import AdminOrService, EngineDep, Principal
from flowkeeper.api.fields import NO_NUL
from flowkeeper.api.problems import INVALID_CURSOR, ApiProblem
from flowkeeper.api.schemas import (
    Activate,
    Activated,
    FailSteps,
    Reexecute,
    StepCounts,
    StepIds,
    StepOut,
    StepPage,
    StepSearch,
    StepsIn,
)
from flowkeeper.engine import Engine
from flowkeeper.errors import InvalidArgument, StepNotFound
from flowkeeper.steps.model import MAX_ID, QUEUE_NAMES, Search, Step, StepRecord

router = APIRouter(prefix="/steps", tags=["steps"])

StepIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="Step id.")]
Queue = Literal["ready", "done", "failed"]
TextQuery = Annotated[str | None, Query(min_length=1, max_length=1000, pattern=NO_NUL)]


def search_of(fields: StepSearch, principal: Principal, after_id: int | None = None) -> Search:
    """The engine's search for a body's filters, limited to the caller's tenant."""
    return Search(**fields.model_dump(), tenant_id=principal.tenant_id, after_id=after_id)


def query_filters(
    name: TextQuery = None,
    flow_id: TextQuery = None,
    correlation_id: TextQuery = None,
    search_key: TextQuery = None,
    description: TextQuery = None,
) -> StepSearch:
    """The step filters of a query string."""
    return StepSearch(
        name=name,
        flow_id=flow_id,
        correlation_id=correlation_id,
        search_key=search_key,
        description=description,
    )


Filters = Annotated[StepSearch, Depends(query_filters)]


def own_step(engine: Engine, principal: Principal, step_id: int) -> StepRecord:
    """The step, if it belongs to the caller's tenant; ``StepNotFound`` otherwise."""
    record = engine.get_step(step_id)
    if not principal.owns(record.tenant_id):
        raise StepNotFound(f"no step with id {step_id} in the ready, done or failed queue")
    return record


@router.post("", status_code=201, response_model=StepIds, summary="Add steps")
def add_steps(body: StepsIn, principal: AdminOrService, engine: EngineDep) -> StepIds:
    """Add one step or a list of them to the ready queue, all or none."""
    given = body if isinstance(body, list) else [body]
    steps = [Step(**s.model_dump(), tenant_id=principal.tenant) for s in given]
    return StepIds(ids=engine.add_steps(*steps))


@router.get("", response_model=StepPage, summary="List steps")
def list_steps(
    principal: AdminOrService,
    engine: EngineDep,
    filters: Filters,
    queue: Annotated[list[Queue] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> StepPage:
    """The tenant's matching steps by id, across the queues asked for (all by default)."""
    after = None if cursor is None else _decode_cursor(cursor)
    found = engine.search(
        search_of(filters, principal, after), queues=queue or QUEUE_NAMES, limit=limit
    )
    merged = sorted({r.id: r for records in found.values() for r in records}.values(), key=_id)
    page = merged[:limit]
    next_cursor = str(page[-1].id) if len(merged) >= limit and page else None
    return StepPage(items=[StepOut.of(r) for r in page], next_cursor=next_cursor)


def _id(record: StepRecord) -> int:
    return record.id


def _decode_cursor(cursor: str) -> int:
    if not cursor.isascii() or not cursor.isdigit() or not 0 <= int(cursor) <= MAX_ID:
        raise ApiProblem(INVALID_CURSOR, f"{cursor!r} is not a cursor this API returned")
    return int(cursor)


@router.get("/count", response_model=StepCounts, summary="Count steps")
def count_steps(principal: AdminOrService, engine: EngineDep, filters: Filters) -> StepCounts:
    """How many of the tenant's matching steps each queue holds."""
    return StepCounts(**engine.count(search_of(filters, principal)))


@router.post("/reexecute", response_model=StepIds, summary="Re-execute steps")
def reexecute_steps(body: Reexecute, principal: AdminOrService, engine: EngineDep) -> StepIds:
    """Copy the matching done/failed steps back to ready as new steps; their ids."""
    return StepIds(ids=engine.reexecute(search_of(body.search, principal), body.queues))


@router.post("/fail", response_model=StepIds, summary="Fail steps")
def fail_steps(body: FailSteps, principal: AdminOrService, engine: EngineDep) -> StepIds:
    """Move the matching ready steps to the failed queue; their ids."""
    if not body.search.model_dump(exclude_none=True):
        raise InvalidArgument(
            "give at least one filter in 'search' (an empty one would fail every ready step)"
        )
    search = search_of(body.search, principal)
    return StepIds(ids=engine.fail_steps(search, body.description))


@router.get("/{step_id}", response_model=StepOut, summary="Read a step")
def get_step(step_id: StepIdPath, principal: AdminOrService, engine: EngineDep) -> StepOut:
    """The step, from whichever queue holds it."""
    return StepOut.of(own_step(engine, principal, step_id))


@router.post("/{step_id}/activate", response_model=Activated, summary="Activate a step")
def activate_step(
    step_id: StepIdPath,
    principal: AdminOrService,
    engine: EngineDep,
    body: Activate | None = None,
) -> Activated:
    """Make a ready step due now with ``args``; ``activated`` is false if it is running or
    no longer ready."""
    own_step(engine, principal, step_id)
    args = None if body is None else body.args
    return Activated(activated=engine.activate(step_id, args))
