"""The basic life of a step on every database: add, run, done."""

from __future__ import annotations

import flowkeeper as fk


def test_a_chain_of_steps_runs_to_done(engine: fk.Engine) -> None:
    @engine.step("count")
    def count(step: fk.StepContext) -> fk.Outcome | None:
        if step.state["n"] < 3:
            return step.done(fk.Step("count", {"n": step.state["n"] + 1}))
        return None

    first = engine.add_step(fk.Step("count", {"n": 0}))
    stats = engine.run(workers=2, until_idle=True)

    assert stats.executed == 4
    assert engine.count() == {"ready": 0, "done": 4, "failed": 0}
    done = engine.search(queues=["done"])["done"]
    assert [r.state["n"] for r in done] == [0, 1, 2, 3]
    assert done[0].id == first
    assert {r.flow_id for r in done} == {done[0].flow_id}
    assert [r.created_by_step_id for r in done] == [None, done[0].id, done[1].id, done[2].id]
