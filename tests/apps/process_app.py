"""An application for the ``flowkeeper processes`` tests: the rules VacationRequest.xml uses.

``--app tests.apps.process_app:engine`` is an engine built at import as ``fk.Engine()``, so
on ``$FLOWKEEPER_DATABASE_URL`` (which ``--database`` sets while the app is imported).
``--app tests.apps.process_app:make_engine`` builds a new engine on each call, for tests that
run many commands in one process on different databases.

The scheme (process name ``SimpleWF``) restricts its commands to ``Author`` and ``Manager``
(rules used directly) and to the actors ``BigBoss`` and ``Accountant`` (rule ``CheckRole``).
"""

from __future__ import annotations

from collections.abc import Sequence

import flowkeeper as fk

ROLES: dict[str, set[str]] = {
    "boss": {"Big Boss"},
    "alex": {"Accountant"},
    "mary": {"Manager"},
}
"""Who has which role (``CheckRole``'s parameter is the role)."""


class CheckRole:
    """Allowed when the identity has the role named by the actor's value."""

    def check(self, process: fk.LiveProcess, identity: str | None, parameter: str | None) -> bool:
        return parameter is not None and parameter in ROLES.get(identity or "", set())

    def identities(self, process: fk.LiveProcess, parameter: str | None) -> Sequence[str]:
        return sorted(name for name, roles in ROLES.items() if parameter in roles)


def author(process: fk.LiveProcess, identity: str | None, parameter: str | None) -> bool:
    """Allowed for the identity named by the process's ``Author`` parameter."""
    return identity is not None and identity == process.parameters.get("Author")


def manager(process: fk.LiveProcess, identity: str | None, parameter: str | None) -> bool:
    """Allowed for identities with the role ``Manager``."""
    return "Manager" in ROLES.get(identity or "", set())


def register(target: fk.Engine) -> fk.Engine:
    """Register the rules on ``target``; return it."""
    target.rule("CheckRole")(CheckRole)
    target.rule("Author")(author)
    target.rule("Manager")(manager)
    return target


def make_engine() -> fk.Engine:
    """A new engine on ``$FLOWKEEPER_DATABASE_URL`` with the rules registered."""
    return register(fk.Engine())


engine = make_engine()
