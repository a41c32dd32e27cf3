"""How ``flowkeeper serve`` builds each API process: its pool, its threads, and how it gets
over connections that died while idle (it does not ping each one before use)."""

from __future__ import annotations

import pytest

import flowkeeper as fk
from flowkeeper.api import DEFAULT_THREADS
from flowkeeper.cli.serve import DEFAULT_MAX_OVERFLOW, ServeSettings
from tests.api.conftest import TestClient, assert_problem
from tests.api.test_cli import invoke
from tests.steps.test_worker import kill_other_connections


def test_the_pool_matches_the_threads(db_url: str) -> None:
    engine = ServeSettings(database=db_url, threads=12).engine()
    try:
        pool = engine.database.pool
        assert pool.size() == 12  # type: ignore[attr-defined]
        assert pool._max_overflow == DEFAULT_MAX_OVERFLOW  # type: ignore[attr-defined]
        assert not pool._pre_ping
        app = ServeSettings(database=db_url, threads=12).app(engine)
        assert app.state.flowkeeper_threads.size == 12
    finally:
        engine.close()
    engine = ServeSettings(database=db_url, pool_size=3, max_overflow=0, pre_ping=True).engine()
    try:
        assert engine.database.pool.size() == 3  # type: ignore[attr-defined]
        assert engine.database.pool._pre_ping
    finally:
        engine.close()
    assert ServeSettings().threads == DEFAULT_THREADS


@pytest.mark.databases("postgresql", "mariadb")
def test_requests_get_over_connections_killed_while_idle(db_url: str) -> None:
    """After a failover, a request that meets a dead connection answers 503; the pool then
    replaces every older connection, so the next requests succeed."""
    settings = ServeSettings(database=db_url, threads=4)
    engine = settings.engine()
    try:
        app = settings.app(engine)
        secret = app.state.flowkeeper_keys.create(role="admin").secret
        headers = {"Authorization": f"Bearer {secret}"}
        with TestClient(app, raise_server_exceptions=False) as client:
            for _ in range(3):  # several connections in the pool
                assert client.get("/api/v1/processes", headers=headers).status_code == 200
            with fk.Engine(db_url) as admin:
                assert kill_other_connections(admin) >= 1
            answers = [client.get("/api/v1/processes", headers=headers) for _ in range(3)]
        assert_problem(answers[0], 503, "database-unavailable")
        assert [a.status_code for a in answers[1:]] == [200, 200]
    finally:
        engine.close()


def test_pool_options_go_with_database_not_app(db_url: str) -> None:
    code, out = invoke(
        "serve", "--database", db_url, "--app", "tests.api.server_app:engine", "--pool-size", "5"
    )
    assert code == 1
    assert "give them to your Engine" in out


def test_callback_address_options_reach_the_engine(db_url: str) -> None:
    strict = ServeSettings(database=db_url).engine()
    allowing = ServeSettings(
        database=db_url,
        callback_allowed_hosts=("127.0.0.1",),
        callback_blocked_networks=("10.0.0.0/8",),
    ).engine()
    try:
        with pytest.raises(fk.InvalidArgument, match=r"127\.0\.0\.1"):
            strict.callbacks.add("http://127.0.0.1:9/hooks", actions=["Stamp"])
        assert allowing.callbacks.add("http://127.0.0.1:9/hooks", actions=["Stamp"]).id
        with pytest.raises(fk.InvalidArgument, match=r"10\.1\.2\.3"):
            allowing.callbacks.add("http://10.1.2.3/hooks", actions=["Stamp"])
    finally:
        strict.close()
        allowing.close()
