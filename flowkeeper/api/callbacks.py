"""``/api/v1/callbacks``: admin keys register the HTTP services that serve their tenant's
actions, conditions and rules (the wire format is in :mod:`flowkeeper.processes.callbacks`
and ``docs/callbacks.md``).

A registration takes effect at once on this server and within the engine's
``callback_cache_seconds`` (5 s) on every other server and worker. Tokens are write-only:
listings say whether a callback has one, never what it is, and show URLs without their
query (which may hold a secret). URLs with credentials (``user:password@``) and hosts the
engine's address policy refuses (loopback, link-local, … unless the operator allows them)
are 422s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field, StringConstraints

from flowkeeper.api.auth import AdminOnly, EngineDep
from flowkeeper.api.fields import NO_NUL, Name
from flowkeeper.api.schemas import Input
from flowkeeper.processes.callbacks import (
    DEFAULT_TIMEOUT_MS,
    MAX_NAMES,
    MAX_TIMEOUT_MS,
    MAX_URL_LENGTH,
    Callback,
)
from flowkeeper.storage.tables import NAME_LENGTH

router = APIRouter(prefix="/callbacks", tags=["callbacks"])

CallbackId = Annotated[
    str, Path(min_length=1, max_length=NAME_LENGTH, pattern=NO_NUL, description="Callback id.")
]
Names = Annotated[list[Name], Field(max_length=MAX_NAMES)]


class CallbackCreate(Input):
    """A service that serves some of the tenant's actions, conditions and rules."""

    url: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_URL_LENGTH, pattern=r"^https?://\S+$")
    ] = Field(
        description="Where requests are POSTed (http:// or https://), query included. No "
        "credentials (`user:password@`): send the secret as `token`. Its host may not be a "
        "loopback, link-local, unspecified, multicast or reserved address (nor resolve to one "
        "when a request is sent) unless the server's operator allows it. Listings show the "
        "URL without its query."
    )
    token: Annotated[str, StringConstraints(max_length=NAME_LENGTH, pattern=r"^[!-~]*$")] | None = (
        Field(default=None, description="Sent as `Authorization: Bearer <token>`.")
    )
    actions: Names = Field(default_factory=list)
    conditions: Names = Field(default_factory=list)
    rules: Names = Field(default_factory=list)
    timeout_ms: int = Field(
        default=DEFAULT_TIMEOUT_MS,
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="How long one request may take, answer included.",
    )


class CallbackOut(BaseModel):
    """A registered callback; ``has_token`` says whether a token is sent (never which)."""

    id: str
    tenant_id: str | None
    url: str = Field(
        description="The URL requests are POSTed to, without its query (which may hold a "
        "secret); requests go to the full URL registered."
    )
    has_token: bool
    actions: list[str]
    conditions: list[str]
    rules: list[str]
    timeout_ms: int
    created_at: datetime

    @classmethod
    def of(cls, callback: Callback) -> CallbackOut:
        """The body of a registered callback."""
        return cls(
            id=callback.id,
            tenant_id=callback.tenant_id or None,
            url=callback.shown_url,
            has_token=callback.token is not None,
            actions=list(callback.actions),
            conditions=list(callback.conditions),
            rules=list(callback.rules),
            timeout_ms=callback.timeout_ms,
            created_at=callback.created_at,
        )


@router.post("", status_code=201, response_model=CallbackOut, summary="Register a callback")
def create_callback(body: CallbackCreate, principal: AdminOnly, engine: EngineDep) -> CallbackOut:
    """Register a service for the tenant's processes: the names it lists are POSTed to it,
    in preference to Python functions of the same names (422 if another callback of the
    tenant already serves one of them)."""
    made = engine.callbacks.add(
        body.url,
        tenant_id=principal.tenant,
        token=body.token,
        actions=body.actions,
        conditions=body.conditions,
        rules=body.rules,
        timeout_ms=body.timeout_ms,
    )
    return CallbackOut.of(made)


@router.get("", response_model=list[CallbackOut], summary="List callbacks")
def list_callbacks(principal: AdminOnly, engine: EngineDep) -> list[CallbackOut]:
    """The tenant's callbacks, oldest first."""
    return [CallbackOut.of(c) for c in engine.callbacks.list(tenant_id=principal.tenant)]


@router.get("/{callback_id}", response_model=CallbackOut, summary="Read a callback")
def get_callback(callback_id: CallbackId, principal: AdminOnly, engine: EngineDep) -> CallbackOut:
    """One of the tenant's callbacks."""
    return CallbackOut.of(engine.callbacks.get(callback_id, tenant_id=principal.tenant))


@router.delete(
    "/{callback_id}", status_code=204, response_class=Response, summary="Remove a callback"
)
def delete_callback(callback_id: CallbackId, principal: AdminOnly, engine: EngineDep) -> Response:
    """Remove one of the tenant's callbacks: its names are served by Python functions (or
    nothing) again, at once on this server, within seconds on the others."""
    engine.callbacks.remove(callback_id, tenant_id=principal.tenant)
    return Response(status_code=204)
