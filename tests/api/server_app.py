"""The engine ``flowkeeper serve --app tests.api.server_app:engine`` serves in the end-to-end
test: the database comes from ``--database`` (``$FLOWKEEPER_DATABASE_URL``)."""

from __future__ import annotations

import flowkeeper as fk
from tests.processes.vacation import register_rules

engine = fk.Engine()
register_rules(engine)
