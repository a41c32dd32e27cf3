"""The VacationRequest compat scheme (``SimpleWF``) and the Python rules it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flowkeeper as fk

VACATION_XML = (Path(__file__).parent / "compat" / "VacationRequest.xml").read_text(
    encoding="utf-8"
)
SCHEME = "SimpleWF"
ROLES = {"boss": "Big Boss", "accountant": "Accountant"}
MANAGERS = {"alice": "mike"}  # employee → manager


def register_rules(engine: fk.Engine) -> None:
    """Register CheckRole, Author and Manager, as the OptimaJet sample's C# code does."""

    @engine.rule("CheckRole")
    def check_role(process: Any, identity: str | None, role: str | None) -> bool:
        return ROLES.get(identity or "") == role

    @engine.rule("Author")
    def author(process: Any, identity: str | None, parameter: str | None) -> bool:
        return identity is not None and identity == process.parameters.get("Author")

    @engine.rule("Manager")
    def manager(process: Any, identity: str | None, parameter: str | None) -> bool:
        return identity is not None and MANAGERS.get(process.parameters.get("Author")) == identity
