"""``/api/v1/schemes``: upload scheme versions (OptimaJet XML or the JSON shape), read them."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from flowkeeper.api.auth import AdminOnly, AdminOrService, EngineDep
from flowkeeper.api.fields import NO_NUL, find_unstorable
from flowkeeper.api.problems import UNSUPPORTED_MEDIA_TYPE, ApiProblem
from flowkeeper.api.schemas import (
    SchemeOut,
    SchemeSaved,
    SchemeSummary,
)
from flowkeeper.engine import Engine
from flowkeeper.errors import SchemeError
from flowkeeper.processes.model import Scheme
from flowkeeper.storage.tables import NAME_LENGTH

router = APIRouter(prefix="/schemes", tags=["schemes"])

SchemeName = Annotated[
    str, Path(min_length=1, max_length=NAME_LENGTH, pattern=NO_NUL, description="Scheme name.")
]
Version = Annotated[
    int | None, Query(ge=1, le=2**31 - 1, description="A version; the newest when omitted.")
]

_XML_TYPES = ("application/xml", "text/xml")
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An OptimaJet Workflow Engine scheme as XML, or the scheme's JSON shape "
        "(as `GET /schemes/{name}` returns in `definition`).",
        "content": {
            "application/xml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object", "additionalProperties": True}},
        },
    }
}


def parse_scheme(media_type: str, body: bytes) -> Scheme:
    """A scheme from an upload's body; ``SchemeError`` naming what is wrong with it."""
    if media_type in _XML_TYPES or media_type.endswith("+xml"):
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise SchemeError([f"the XML is not UTF-8 text: {error}"]) from None
        # Only ever text that starts with '<': Scheme.from_xml reads anything else as a path.
        if not text.strip():
            raise SchemeError(["no XML given (the body is empty)"])
        if not text.lstrip().startswith("<"):
            raise SchemeError([f"not XML: the body starts with {text.lstrip()[:20]!r}"])
        return Scheme.from_xml(text)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise SchemeError([f"not JSON: {error}"]) from None
    if not isinstance(data, dict):
        raise SchemeError([f"the JSON shape of a scheme is an object, not {type(data).__name__}"])
    reason = find_unstorable(data, nul=True)
    if reason is not None:
        raise SchemeError([reason])
    return Scheme.from_dict(data)


def _save(engine: Engine, tenant: str | None, media_type: str, body: bytes) -> SchemeSaved:
    scheme = parse_scheme(media_type, body)
    version = engine.schemes.save(scheme, tenant_id=tenant)
    return SchemeSaved(name=scheme.name, version=version)


@router.post(
    "",
    status_code=201,
    response_model=SchemeSaved,
    openapi_extra=_UPLOAD_BODY,
    summary="Save a new version of a scheme",
)
async def upload_scheme(request: Request, principal: AdminOnly, engine: EngineDep) -> SchemeSaved:
    """Validate and save the scheme as the newest version of its name (admin keys)."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    is_json = media_type == "application/json" or media_type.endswith("+json")
    if not (is_json or media_type in _XML_TYPES or media_type.endswith("+xml")):
        raise ApiProblem(
            UNSUPPORTED_MEDIA_TYPE,
            f"send the scheme as application/xml or application/json, not {content_type!r}",
        )
    body = await request.body()
    return await run_in_threadpool(_save, engine, principal.tenant, media_type, body)


@router.get("", response_model=list[SchemeSummary], summary="List schemes")
def list_schemes(principal: AdminOrService, engine: EngineDep) -> list[SchemeSummary]:
    """The newest version of every scheme of the tenant, by name."""
    return [SchemeSummary.of(i) for i in engine.schemes.list(tenant_id=principal.tenant)]


def _load(engine: Engine, tenant: str | None, name: str, version: int | None) -> tuple[Scheme, int]:
    if version is None:
        version = engine.schemes.newest_version(name, tenant_id=tenant)
    return engine.schemes.get(name, version, tenant_id=tenant), version


@router.get("/{name}", response_model=SchemeOut, summary="Read a scheme (JSON shape)")
def get_scheme(
    name: SchemeName, principal: AdminOrService, engine: EngineDep, version: Version = None
) -> SchemeOut:
    """A version of the scheme (the newest by default) in its JSON shape."""
    scheme, number = _load(engine, principal.tenant, name, version)
    return SchemeOut(name=scheme.name, version=number, definition=scheme.to_dict())


@router.get(
    "/{name}/xml",
    response_class=Response,
    responses={200: {"content": {"application/xml": {"schema": {"type": "string"}}}}},
    summary="Read a scheme (OptimaJet XML)",
)
def get_scheme_xml(
    name: SchemeName, principal: AdminOrService, engine: EngineDep, version: Version = None
) -> Response:
    """A version of the scheme (the newest by default) as OptimaJet XML."""
    scheme, number = _load(engine, principal.tenant, name, version)
    return Response(
        scheme.to_xml(), media_type="application/xml", headers={"X-Scheme-Version": str(number)}
    )


@router.get(
    "/{name}/versions", response_model=list[SchemeSummary], summary="List a scheme's versions"
)
def list_versions(
    name: SchemeName, principal: AdminOrService, engine: EngineDep
) -> list[SchemeSummary]:
    """Every saved version of the scheme, oldest first (404 if it was never saved)."""
    found = engine.schemes.versions(name, tenant_id=principal.tenant)
    if not found:
        engine.schemes.newest_version(name, tenant_id=principal.tenant)  # raises SchemeNotFound
    return [SchemeSummary.of(i) for i in found]
