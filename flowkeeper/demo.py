"""``flowkeeper demo``: a small order flow that shows what durable steps do.

One order fans out to a reservation per item and a payment; the payment gateway times out the
first time, so the engine retries the charge a second later. A join step waits (re-running
itself) until every reservation and the charge are done, then ships; shipping schedules a
follow-up email two seconds later. Everything runs on the database given, in a flow of its
own, so the demo can run again and again on the same database.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

import flowkeeper as fk
from flowkeeper.clock import utcnow
from flowkeeper.errors import InvalidArgument

PLACE = "demo/order/place"
RESERVE = "demo/order/reserve"
CHARGE = "demo/order/charge"
JOIN = "demo/order/join"
SHIP = "demo/order/ship"
EMAIL = "demo/order/follow-up-email"
STEP_NAMES = (PLACE, RESERVE, CHARGE, JOIN, SHIP, EMAIL)

CHARGE_RETRY = fk.Retry(max_attempts=5, delay=1.0)
"""The payment gateway gets a second try one second after it times out."""
JOIN_POLL = timedelta(seconds=0.2)
EMAIL_DELAY = timedelta(seconds=2)
TIMEOUT_S = 30.0
WORKERS = 4

ITEMS = (
    {"sku": "BOOK-042", "quantity": 1, "price": 24.90},
    {"sku": "MUG-007", "quantity": 2, "price": 9.50},
    {"sku": "TEA-003", "quantity": 3, "price": 4.20},
)


class GatewayTimeout(Exception):
    """The simulated payment gateway did not answer in time."""


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What one demo run did: its flow's steps (by id) and whether the flow finished."""

    database: str
    order_id: str
    flow_id: str
    steps: tuple[fk.StepRecord, ...]
    completed: bool
    elapsed_s: float
    timeout_s: float

    def named(self, name: str) -> list[fk.StepRecord]:
        """The flow's steps called ``name``, oldest first."""
        return [s for s in self.steps if s.name == name]

    @property
    def counts(self) -> dict[str, int]:
        """How many of the flow's steps each queue holds."""
        found = Counter(s.queue for s in self.steps)
        return {q: found.get(q, 0) for q in ("ready", "done", "failed")}

    def headline(self) -> str:
        """One line saying how the run went."""
        counts = self.counts
        line = (
            f"Order {self.order_id}: {len(self.steps)} steps in flow {self.flow_id[:8]} "
            f"({counts['done']} done, {counts['failed']} failed, {counts['ready']} ready) "
            f"in {self.elapsed_s:.1f} s"
        )
        charges = self.named(CHARGE)
        if charges:
            line += f"; the charge ran {charges[0].execution_count} times"
        ships, emails = self.named(SHIP), self.named(EMAIL)
        if ships and emails:
            ship_at, email_at = ships[0].execution_started_at, emails[0].execution_started_at
            if ship_at is not None and email_at is not None:
                line += f"; the follow-up email went {(email_at - ship_at).total_seconds():.1f} s"
                line += " after shipping"
        if not self.completed:
            line += f"; NOT FINISHED within {self.timeout_s:.0f} s"
        return line + "."

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dictionary of the run."""
        return {
            "database": self.database,
            "order_id": self.order_id,
            "flow_id": self.flow_id,
            "completed": self.completed,
            "elapsed_s": round(self.elapsed_s, 3),
            "counts": self.counts,
            "steps": [s.to_dict() for s in self.steps],
        }


def register_demo_steps(engine: fk.Engine) -> None:
    """Register the order flow's step implementations on ``engine``."""

    @engine.step(PLACE)
    def place(step: fk.StepContext) -> fk.Outcome:
        order = step.state
        order_id = order["order_id"]
        reservations = [
            fk.Step(
                RESERVE,
                {"order_id": order_id, **item},
                search_key=order_id,
                description=f"reserve {item['quantity']} x {item['sku']}",
            )
            for item in order["items"]
        ]
        amount = round(sum(i["quantity"] * i["price"] for i in order["items"]), 2)
        charge = fk.Step(
            CHARGE,
            {"order_id": order_id, "amount": amount},
            search_key=order_id,
            description=f"charge {amount:.2f} EUR",
        )
        join = fk.Step(
            JOIN,
            {"order_id": order_id, "waiting_for": len(reservations) + 1},
            search_key=order_id,
            description="wait for the reservations and the charge",
        )
        return step.done(*reservations, charge, join)

    # Implementations return step.done() rather than None: the same outcome, said explicitly.

    @engine.step(RESERVE)
    def reserve(step: fk.StepContext) -> fk.Outcome:
        time.sleep(0.01)  # a call to the warehouse
        return step.done()

    @engine.step(CHARGE, retry=CHARGE_RETRY)
    def charge(step: fk.StepContext) -> fk.Outcome:
        if step.execution_count == 1:
            raise GatewayTimeout("the payment gateway did not answer within 5 s")
        return step.done()

    @engine.step(JOIN)
    def join(step: fk.StepContext) -> fk.Outcome:
        found = engine.search(
            fk.Search(flow_id=step.flow_id), ("ready", "done", "failed"), limit=None
        )
        awaited = {q: [r for r in rs if r.name in (RESERVE, CHARGE)] for q, rs in found.items()}
        if awaited["failed"]:
            return step.fail(f"cannot ship: step {awaited['failed'][0].id} failed")
        done, wanted = len(awaited["done"]), step.state["waiting_for"]
        if done >= wanted:
            return step.done(
                fk.Step(SHIP, {"order_id": step.state["order_id"]}, description="hand to carrier")
            )
        return step.rerun(
            run_at=utcnow() + JOIN_POLL,
            description=f"check {step.execution_count}: {done} of {wanted} done; checking again",
        )

    @engine.step(SHIP)
    def ship(step: fk.StepContext) -> fk.Outcome:
        email = fk.Step(
            EMAIL,
            {"order_id": step.state["order_id"]},
            run_at=utcnow() + EMAIL_DELAY,
            description=f"ask how it went, {EMAIL_DELAY.total_seconds():.0f} s after shipping",
        )
        return step.done(email)

    @engine.step(EMAIL)
    def follow_up(step: fk.StepContext) -> fk.Outcome:
        return step.done()


def check_no_foreign_steps(engine: fk.Engine) -> None:
    """Refuse a database whose ready queue holds steps the demo cannot run.

    The demo's workers would postpone them (they have no implementation for them), which would
    delay someone's real work.
    """
    total = engine.count()["ready"]
    ours = sum(engine.count(fk.Search(name=name))["ready"] for name in STEP_NAMES)
    if total > ours:
        raise InvalidArgument(
            f"the database at {engine.url.render_as_string(hide_password=True)} has "
            f"{total - ours} ready steps that are not the demo's, and the demo's workers would "
            "postpone them; run the demo on a database of its own, e.g. "
            "--database sqlite:///flowkeeper-demo.db"
        )


def run_until_flow_finished(engine: fk.Engine, flow_id: str, deadline: float) -> bool:
    """Run workers until no step of ``flow_id`` is ready; False if ``deadline`` passed first."""
    while True:
        engine.run(workers=WORKERS, until_idle=True, handle_signals=False)
        ready = engine.search(fk.Search(flow_id=flow_id), ("ready",), limit=None)["ready"]
        if not ready:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        wait = (min(r.run_at for r in ready) - utcnow()).total_seconds()
        time.sleep(min(max(wait, 0.01), remaining))


def run_demo(url: str | None, console: Console, *, timeout: float = TIMEOUT_S) -> DemoSummary:
    """Migrate the database at ``url``, run one order through the demo flow, and report it.

    ``url`` None means the engine's default ($FLOWKEEPER_DATABASE_URL, else
    sqlite:///flowkeeper.db). The table of what happened and a one-line summary go to
    ``console``. Stops after ``timeout`` seconds at the latest.
    """
    started = time.monotonic()
    order_id = f"order-{uuid.uuid4().hex[:6]}"
    flow_id = uuid.uuid4().hex
    with fk.Engine(url) as engine:
        database = engine.url.render_as_string(hide_password=True)
        engine.migrate()
        check_no_foreign_steps(engine)
        register_demo_steps(engine)
        engine.add_step(
            fk.Step(
                PLACE,
                {"order_id": order_id, "items": list(ITEMS)},
                flow_id=flow_id,
                correlation_id=order_id,
                search_key=order_id,
                description=f"place {order_id}: {len(ITEMS)} items",
            )
        )
        console.print(
            f"Placed {order_id} (flow {flow_id}) on {database}.", highlight=False, soft_wrap=True
        )
        with console.status("Running the order flow with 4 workers..."):
            completed = run_until_flow_finished(engine, flow_id, started + timeout)
        found = engine.search(fk.Search(flow_id=flow_id), limit=None)
    steps = tuple(sorted((r for rs in found.values() for r in rs), key=lambda r: r.id))
    summary = DemoSummary(
        database=database,
        order_id=order_id,
        flow_id=flow_id,
        steps=steps,
        completed=completed,
        elapsed_s=time.monotonic() - started,
        timeout_s=timeout,
    )
    console.print(flow_table(summary))
    console.print(summary.headline(), highlight=False, soft_wrap=True)
    return summary


def _time_of_day(value: datetime | None) -> str:
    """ISO 8601 time of day in UTC, to the millisecond (the date is in the table's title)."""
    if value is None:
        return "-"
    return value.astimezone(UTC).time().isoformat(timespec="milliseconds")


def _first_line(text: str | None, width: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def flow_table(summary: DemoSummary) -> Table:
    """Every step of the demo's flow: what ran, who created it, when, and how it ended."""
    day = summary.steps[0].created_at.astimezone(UTC).date() if summary.steps else "-"
    table = Table(
        title=f"Flow {summary.flow_id} ({summary.order_id}); times in UTC on {day}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("queue")
    table.add_column("execs", justify="right")
    table.add_column("created by", justify="right")
    table.add_column("started at", no_wrap=True)
    table.add_column("duration", justify="right")
    table.add_column("description")
    for s in summary.steps:
        duration = "-" if s.execution_duration_ms is None else f"{s.execution_duration_ms} ms"
        table.add_row(
            str(s.id),
            Text(s.name),
            s.queue,
            str(s.execution_count),
            "-" if s.created_by_step_id is None else str(s.created_by_step_id),
            _time_of_day(s.execution_started_at),
            duration,
            Text(_first_line(s.description)),
        )
    return table
