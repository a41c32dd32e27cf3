"""Steps of a tenant: ``Step(tenant_id=…)``, ``Search(tenant_id=…)`` and ``Search(after_id=…)``.

The HTTP API gives every step it adds the tenant of the caller's key, and lists, counts,
re-executes and fails only that tenant's steps.
"""

from __future__ import annotations

import pytest

import flowkeeper as fk


def test_a_step_keeps_its_tenant_and_searches_filter_by_it(engine: fk.Engine) -> None:
    acme = engine.add_step(fk.Step("a", tenant_id="acme"))
    other = engine.add_step(fk.Step("a", tenant_id="other"))
    default = engine.add_step(fk.Step("a"))
    assert engine.get_step(acme).tenant_id == "acme"
    assert engine.get_step(default).tenant_id is None

    def ids(tenant: str) -> list[int]:
        return [r.id for r in engine.search(fk.Search(tenant_id=tenant))["ready"]]

    assert ids("acme") == [acme]
    assert ids("other") == [other]
    assert ids("") == [default]
    assert ids("nobody") == []
    assert engine.count(fk.Search(tenant_id="acme")) == {"ready": 1, "done": 0, "failed": 0}
    assert engine.count() == {"ready": 3, "done": 0, "failed": 0}


def test_an_empty_tenant_is_the_default_tenant(engine: fk.Engine) -> None:
    assert fk.Step("a", tenant_id="").tenant_id is None
    step_id = engine.add_step(fk.Step("a", tenant_id=""))
    assert engine.get_step(step_id).tenant_id is None
    assert [r.id for r in engine.search(fk.Search(tenant_id=""))["ready"]] == [step_id]


def test_fail_and_reexecute_stay_within_the_tenant(engine: fk.Engine) -> None:
    mine = engine.add_step(fk.Step("job", tenant_id="acme"))
    theirs = engine.add_step(fk.Step("job", tenant_id="other"))
    assert engine.fail_steps(fk.Search(name="job", tenant_id="acme")) == [mine]
    assert engine.get_step(theirs).queue == "ready"
    copies = engine.reexecute(fk.Search(tenant_id="acme"))
    assert len(copies) == 1
    assert engine.get_step(copies[0]).tenant_id == "acme"


def test_a_child_step_inherits_its_parents_tenant_unless_it_names_one(
    engine: fk.Engine,
) -> None:
    @engine.step("parent")
    def parent(step: fk.StepContext) -> fk.Outcome:
        return step.done(fk.Step("child"), fk.Step("child", tenant_id="elsewhere"))

    @engine.step("child")
    def child(step: fk.StepContext) -> None:
        return None

    engine.add_step(fk.Step("parent", tenant_id="acme"))
    engine.run(workers=1, until_idle=True, handle_signals=False)
    children = engine.search(fk.Search(name="child"), queues=("done",))["done"]
    assert sorted(c.tenant_id or "" for c in children) == ["acme", "elsewhere"]


def test_after_id_pages_through_a_listing(engine: fk.Engine) -> None:
    ids = engine.add_steps(*(fk.Step("p", tenant_id="t") for _ in range(5)))
    first = engine.search(fk.Search(tenant_id="t"), limit=2)["ready"]
    assert [r.id for r in first] == ids[:2]
    rest = engine.search(fk.Search(tenant_id="t", after_id=first[-1].id), limit=10)["ready"]
    assert [r.id for r in rest] == ids[2:]
    assert engine.search(fk.Search(after_id=0))["ready"][0].id == ids[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tenant_id": 5}, "tenant_id must be a string"),
        ({"tenant_id": "x" * 256}, "tenant_id is 256 characters long"),
        ({"tenant_id": "a\x00b"}, "NUL"),
    ],
)
def test_a_bad_tenant_is_refused_before_any_write(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(fk.InvalidStep, match=message):
        fk.Step("a", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(fk.InvalidArgument, match=message):
        fk.Search(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("after_id", [-1, "3", 2**63, True])
def test_a_bad_after_id_is_refused(after_id: object) -> None:
    with pytest.raises(fk.InvalidArgument, match=r"Search\.after_id"):
        fk.Search(after_id=after_id)  # type: ignore[arg-type]
