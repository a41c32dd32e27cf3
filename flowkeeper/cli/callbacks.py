"""``flowkeeper callbacks``: register, list and remove tenants' HTTP callback services.

Servers and workers see a change within their engine's ``callback_cache_seconds`` (5 s).
URLs are shown without their query (which may hold a secret), tokens never.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from flowkeeper.cli.common import (
    DatabaseOption,
    JsonOption,
    console,
    fail,
    print_json,
    reports_errors,
    utc_text,
)
from flowkeeper.engine import Engine
from flowkeeper.processes.callbacks import DEFAULT_TIMEOUT_MS, Callback, CallbackNotFound

callbacks_app = typer.Typer(
    help="HTTP services that serve a tenant's actions, conditions and rules: add, list, remove.",
    no_args_is_help=True,
)

TenantOption = Annotated[
    str, typer.Option("--tenant", help="The tenant whose processes use it ('' is the default).")
]


def callback_dict(callback: Callback) -> dict[str, Any]:
    """A callback as JSON (never its token; its URL without the query)."""
    return {
        "id": callback.id,
        "tenant": callback.tenant_id,
        "url": callback.shown_url,
        "has_token": callback.token is not None,
        "actions": list(callback.actions),
        "conditions": list(callback.conditions),
        "rules": list(callback.rules),
        "timeout_ms": callback.timeout_ms,
        "created_at": utc_text(callback.created_at),
    }


@callbacks_app.command("add")
@reports_errors
def add(
    url: Annotated[str, typer.Option("--url", help="Where requests are POSTed (http(s)://…).")],
    tenant: TenantOption = "",
    token: Annotated[
        str | None,
        typer.Option("--token", help="Sent as 'Authorization: Bearer <token>'."),
    ] = None,
    actions: Annotated[
        list[str] | None, typer.Option("--action", help="An action it serves (repeatable).")
    ] = None,
    conditions: Annotated[
        list[str] | None, typer.Option("--condition", help="A condition it serves (repeatable).")
    ] = None,
    rules: Annotated[
        list[str] | None, typer.Option("--rule", help="A rule it serves (repeatable).")
    ] = None,
    timeout_ms: Annotated[
        int, typer.Option("--timeout-ms", help="How long one request may take.", min=1)
    ] = DEFAULT_TIMEOUT_MS,
    allowed_hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A host name, address or network callbacks may reach though it is loopback, "
            "link-local, … (repeatable): what the servers' Engine(callback_allowed_hosts=…) "
            "allows, so that a URL they accept is accepted here.",
        ),
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a service: the tenant's processes POST those names to it (see
    docs/callbacks.md for the requests and answers)."""
    with Engine(database, callback_allowed_hosts=allowed_hosts or ()) as engine:
        made = engine.callbacks.add(
            url,
            tenant_id=tenant,
            token=token,
            actions=actions or (),
            conditions=conditions or (),
            rules=rules or (),
            timeout_ms=timeout_ms,
        )
    if as_json:
        print_json(callback_dict(made))
    else:
        console.print(
            f"Registered callback {made.id} for tenant {made.tenant_id or '(default)'}: "
            f"{_served(made)} at {made.shown_url}",
            highlight=False,
            soft_wrap=True,
        )


@callbacks_app.command("list")
@reports_errors
def list_callbacks(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's ('' is the default).")
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List callbacks (every tenant's unless --tenant), oldest first; tokens are not shown."""
    with Engine(database) as engine:
        found = engine.callbacks.list(tenant_id=tenant, all_tenants=tenant is None)
    if as_json:
        print_json([callback_dict(c) for c in found])
        return
    table = Table("id", "tenant", "url", "serves", "token", "timeout", "created")
    for callback in found:
        table.add_row(
            callback.id,
            callback.tenant_id or "(default)",
            callback.shown_url,
            _served(callback),
            "yes" if callback.token else "no",
            f"{callback.timeout_ms} ms",
            utc_text(callback.created_at),
        )
    console.print(table)


@callbacks_app.command("remove")
@reports_errors
def remove(
    callback_id: Annotated[str, typer.Argument(help="Its id (see `flowkeeper callbacks list`).")],
    tenant: TenantOption = "",
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a tenant's callback: its names go back to the app's Python functions."""
    with Engine(database) as engine:
        try:
            removed = engine.callbacks.remove(callback_id, tenant_id=tenant)
        except CallbackNotFound:
            fail(
                f"CallbackNotFound: tenant {tenant or '(default)'} has no callback "
                f"{callback_id!r} (name its tenant with --tenant)"
            )
    if as_json:
        print_json(callback_dict(removed))
    else:
        console.print(
            f"Removed callback {removed.id} of tenant {removed.tenant_id or '(default)'}.",
            highlight=False,
        )


def _served(callback: Callback) -> str:
    parts = [
        f"{kind} {', '.join(names)}"
        for kind, names in (
            ("actions", callback.actions),
            ("conditions", callback.conditions),
            ("rules", callback.rules),
        )
        if names
    ]
    return "; ".join(parts)
