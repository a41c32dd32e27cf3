"""``flowkeeper keys``: make, list and revoke the keys of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from flowkeeper.api.keys import ApiKey, KeyStore, Role
from flowkeeper.cli.common import (
    DatabaseOption,
    JsonOption,
    console,
    errors,
    print_json,
    reports_errors,
    utc_text,
)
from flowkeeper.engine import Engine

keys_app = typer.Typer(
    help="Keys of the HTTP API (`flowkeeper serve`): make, list and revoke them.",
    no_args_is_help=True,
)


TenantOption = Annotated[
    str, typer.Option("--tenant", help="The tenant the key acts in ('' is the default tenant).")
]


def key_dict(key: ApiKey) -> dict[str, Any]:
    """A key as JSON (never its secret)."""
    return {
        "id": key.id,
        "tenant": key.tenant_id,
        "role": key.role,
        "identity": key.identity,
        "prefix": key.prefix,
        "created_at": utc_text(key.created_at),
        "revoked_at": utc_text(key.revoked_at) if key.revoked_at else None,
        "description": key.description,
    }


@keys_app.command("create")
@reports_errors
def create(
    role: Annotated[Role, typer.Option("--role", help="admin, service or user.")],
    tenant: TenantOption = "",
    identity: Annotated[
        str | None,
        typer.Option("--identity", help="The identity a user key acts as (required for user)."),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="What the key is for.")
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a key and print it: this is the only time it is shown."""
    with Engine(database) as engine:
        made = KeyStore(engine).create(
            role=role.value, tenant_id=tenant, identity=identity, description=description
        )
    if as_json:
        print_json({**key_dict(made.key), "key": made.secret})
        return
    errors.print(
        f"Made {made.key.role} key {made.key.id} for tenant {made.key.tenant_id or '(default)'}"
        f"{' as ' + made.key.identity if made.key.identity else ''}. Keep it now: it is not "
        "shown again.",
        highlight=False,
    )
    console.print(made.secret, highlight=False, soft_wrap=True)


@keys_app.command("list")
@reports_errors
def list_keys(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List keys (prefix, tenant, role, identity, dates); secrets are never stored."""
    with Engine(database) as engine:
        found = KeyStore(engine).list(tenant_id=tenant)
    if as_json:
        print_json([key_dict(k) for k in found])
        return
    table = Table("id", "prefix", "tenant", "role", "identity", "created", "revoked", "description")
    for key in found:
        table.add_row(
            key.id,
            key.prefix + "…",
            key.tenant_id or "(default)",
            key.role,
            key.identity or "-",
            utc_text(key.created_at),
            utc_text(key.revoked_at),
            key.description or "",
        )
    console.print(table)


@keys_app.command("revoke")
@reports_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `flowkeeper keys list`).")],
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: servers refuse it within seconds (they trust a checked key for 5 s)."""
    with Engine(database) as engine:
        key = KeyStore(engine).revoke(key_id)
    if as_json:
        print_json(key_dict(key))
    else:
        console.print(f"Revoked key {key.id} ({key.prefix}…) at {utc_text(key.revoked_at)}.")
