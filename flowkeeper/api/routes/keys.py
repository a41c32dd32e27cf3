"""``/api/v1/keys``: admin keys make, list and revoke the keys of their own tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from flowkeeper.api.auth import AdminOnly, KeysDep
from flowkeeper.api.schemas import KeyCreate, KeyCreated, KeyOut
from flowkeeper.storage.tables import API_KEY_ID_LENGTH

router = APIRouter(prefix="/keys", tags=["keys"])

KeyId = Annotated[str, Path(min_length=1, max_length=API_KEY_ID_LENGTH, pattern=r"^[0-9a-f]+$")]


@router.post("", status_code=201, response_model=KeyCreated, summary="Make a key")
def create_key(body: KeyCreate, principal: AdminOnly, keys: KeysDep) -> KeyCreated:
    """Make a key in the caller's tenant; the response holds the key, shown this once."""
    made = keys.create(
        role=body.role,
        tenant_id=principal.tenant_id,
        identity=body.identity,
        description=body.description,
    )
    return KeyCreated(**KeyOut.of(made.key).model_dump(), key=made.secret)


@router.get("", response_model=list[KeyOut], summary="List keys")
def list_keys(principal: AdminOnly, keys: KeysDep) -> list[KeyOut]:
    """The tenant's keys, oldest first, revoked ones included; never their secrets."""
    return [KeyOut.of(k) for k in keys.list(tenant_id=principal.tenant_id)]


@router.delete("/{key_id}", response_model=KeyOut, summary="Revoke a key")
def revoke_key(key_id: KeyId, principal: AdminOnly, keys: KeysDep) -> KeyOut:
    """Revoke a key of the tenant; it stops working within the key cache's lifetime (5 s)."""
    return KeyOut.of(keys.revoke(key_id, tenant_id=principal.tenant_id))
