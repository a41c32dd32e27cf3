"""The hot path's driver-level statements behave like the SQLAlchemy ones around them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import flowkeeper as fk
from flowkeeper.storage.driver import driver_cursor


def test_driver_errors_surface_as_sqlalchemy_errors(engine: fk.Engine) -> None:
    """So transact() reruns a deadlock and the worker replaces a broken connection."""
    with engine.database.connect() as connection, connection.begin():
        with (
            pytest.raises(sa.exc.DBAPIError) as raised,
            driver_cursor(connection) as cursor,
        ):
            cursor.execute("SELECT * FROM no_such_table")
        assert raised.value.orig is not None


def test_a_transient_error_from_the_driver_is_run_again(engine: fk.Engine) -> None:
    from flowkeeper.storage.database import transact

    attempts: list[int] = []

    def work(connection: sa.Connection) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            with driver_cursor(connection):
                raise connection.dialect.loaded_dbapi.OperationalError("database is locked")
        return "done"

    with engine.database.connect() as connection:
        assert transact(connection, work) == "done"
    assert len(attempts) == 3
