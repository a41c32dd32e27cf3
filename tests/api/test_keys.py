"""The key store: secrets shown once and stored only as hashes, verification, revocation."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

import flowkeeper as fk
from flowkeeper.api.keys import ApiKeyNotFound, KeyStore, hash_secret
from flowkeeper.storage.tables import api_keys


def test_a_new_key_is_random_and_only_its_hash_is_stored(engine: fk.Engine) -> None:
    store = KeyStore(engine)
    made = store.create(role="service", tenant_id="acme", description="billing")
    other = store.create(role="service", tenant_id="acme")
    assert made.secret.startswith("fk_")
    assert len(made.secret) == 3 + 43
    assert made.secret != other.secret
    assert made.key.id != other.key.id
    assert made.key.prefix == made.secret[:10]
    with engine.database.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(api_keys)).mappings()]
    assert made.secret not in repr(rows)
    stored = next(r for r in rows if r["id"] == made.key.id)
    assert stored["key_hash"] == hashlib.sha256(made.secret.encode()).hexdigest()
    assert stored["key_hash"] == hash_secret(made.secret)
    assert (stored["tenant_id"], stored["role"], stored["description"]) == (
        "acme",
        "service",
        "billing",
    )


def test_verify_list_and_revoke(engine: fk.Engine) -> None:
    store = KeyStore(engine)
    made = store.create(role="user", tenant_id="acme", identity="alice")
    default = store.create(role="admin")
    verified = store.verify(made.secret)
    assert verified is not None
    assert (verified.id, verified.tenant_id, verified.identity) == (made.key.id, "acme", "alice")
    assert [k.id for k in store.list(tenant_id="acme")] == [made.key.id]
    assert [k.id for k in store.list(tenant_id="")] == [default.key.id]
    assert len(store.list()) == 2

    revoked = store.revoke(made.key.id)
    assert revoked.revoked
    assert revoked.revoked_at is not None
    assert store.verify(made.secret) is None
    assert store.revoke(made.key.id).revoked_at == revoked.revoked_at  # again: no change
    assert [k.id for k in store.list(include_revoked=False)] == [default.key.id]
    with pytest.raises(ApiKeyNotFound):
        store.revoke(default.key.id, tenant_id="acme")
    with pytest.raises(ApiKeyNotFound):
        store.get("0123")


@pytest.mark.parametrize(
    "secret", ["", "fk_", "fk_wrong", "no-prefix", "fk_" + "x" * 300, "fk_\ud800", None, 5]
)
def test_what_is_not_a_key_does_not_verify(engine: fk.Engine, secret: object) -> None:
    assert KeyStore(engine).verify(secret) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "root"}, "role must be one of admin, service, user"),
        ({"role": "user"}, "identity is required"),
        ({"role": "user", "identity": "  "}, "identity must not be empty"),
        ({"role": "admin", "tenant_id": "x" * 256}, "tenant_id is 256 characters"),
        ({"role": "admin", "tenant_id": None}, "tenant_id must be a string"),
        ({"role": "admin", "description": "d" * 1001}, "description is 1001 characters"),
    ],
)
def test_a_bad_key_is_refused(engine: fk.Engine, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(fk.InvalidArgument, match=message):
        KeyStore(engine).create(**kwargs)  # type: ignore[arg-type]


def test_verified_keys_are_cached_briefly(engine: fk.Engine) -> None:
    now = [0.0]
    store = KeyStore(engine, cache_seconds=5, clock=lambda: now[0])
    made = store.create(role="admin")
    assert store.verify(made.secret) is not None
    with engine.database.begin() as conn:  # revoked behind the store's back
        conn.execute(api_keys.update().values(revoked_at=sa.func.now()))
    assert store.verify(made.secret) is not None
    now[0] = 5.01
    assert store.verify(made.secret) is None

    uncached = KeyStore(engine, cache_seconds=0)
    assert uncached.verify(made.secret) is None


def test_the_key_store_needs_a_migrated_database(tmp_path: object) -> None:
    with fk.Engine(f"sqlite:///{tmp_path}/empty.db") as engine, pytest.raises(fk.MigrationRequired):
        KeyStore(engine).create(role="admin")
