"""``engine.processes``: create process instances and move them with commands.

Every call that changes a process is one database transaction: the process row (locked for
the call), the history rows, timer steps armed and cancelled, and whatever actions write
through ``ctx.connection`` commit together, or not at all. An exception from an action rolls
it all back and reaches the caller unchanged.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from flowkeeper.clock import utcnow
from flowkeeper.errors import (
    CommandNotAvailable,
    ConcurrencyError,
    InvalidArgument,
    ProcessExists,
    ProcessNotFound,
    SchemeUpdateError,
    StateNotAvailable,
)
from flowkeeper.processes.context import LiveProcess
from flowkeeper.processes.inputs import apply_command_inputs, apply_parameters
from flowkeeper.processes.interpreter import Mover
from flowkeeper.processes.model import Scheme, TriggerType
from flowkeeper.processes.parameters import persistent_values
from flowkeeper.processes.records import (
    ANY_TENANT,
    Command,
    ExecutionResult,
    HistoryRecord,
    Process,
    ProcessStatus,
    TenantFilter,
)
from flowkeeper.processes.registry import ProcessRegistry
from flowkeeper.processes.schemes import SchemeStore
from flowkeeper.processes.store import (
    ProcessRows,
    encode_parameters,
    process_from_row,
    tenant_key,
)
from flowkeeper.processes.timers import AddSteps, TimerState, rearm
from flowkeeper.steps.context import Outcome, StepContext
from flowkeeper.storage.tables import NAME_LENGTH

Transaction = Callable[..., AbstractContextManager[sa.Connection]]
_FINISHED = (ProcessStatus.FINALIZED, ProcessStatus.TERMINATED)


class ProcessRuntime:
    """Process instances (``engine.processes``); see the README's walkthrough.

    Calls on one process take ``tenant_id``: given (``None`` for the default tenant), a
    process of another tenant raises ``ProcessNotFound`` as if it did not exist, checked on
    the row the call reads anyway. Left out, the process may belong to any tenant.
    """

    def __init__(
        self,
        transaction: Transaction,
        schemes: SchemeStore,
        registry: ProcessRegistry,
        add_steps: AddSteps,
        engine: Any,
        kind: str,
        *,
        max_auto_transitions: int,
        auto_scheme_update: bool,
    ) -> None:
        self._transaction = transaction
        self._schemes = schemes
        self._registry = registry
        self._add_steps = add_steps
        self._engine = engine
        self._rows = ProcessRows(kind)
        self.max_auto_transitions = max_auto_transitions
        self.auto_scheme_update = auto_scheme_update

    # -- creating ------------------------------------------------------------------------------

    def create(
        self,
        scheme_code: str,
        *,
        identity: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        process_id: str | None = None,
        tenant_id: str | None = None,
        connection: sa.Connection | None = None,
    ) -> str:
        """Start a process of the newest version of ``scheme_code``; return its id.

        The process enters the initial activity (its actions run), follows automatic
        transitions until none fires, and rests ``Idled`` (or ``Finalized`` on a final
        activity) with the timers of its activity armed.
        """
        pid = _check_id(process_id) if process_id is not None else str(uuid.uuid4())
        _check_identity(identity)
        tenant = tenant_key(tenant_id)
        with self._transaction(connection) as conn:
            scheme, version = self._schemes.load(conn, tenant, scheme_code, None)
            if self._rows.exists(conn, pid):
                raise ProcessExists(f"a process with id {pid!r} already exists; nothing created")
            initial = scheme.initial_activity
            assert initial is not None  # saved schemes are valid
            live = LiveProcess(
                id=pid,
                scheme=scheme,
                scheme_version=version,
                activity=initial.name,
                state=initial.state,
                status=ProcessStatus.RUNNING,
                parameters={},
                tenant_id=tenant_id,
                root_id=pid,
            )
            apply_parameters(scheme, parameters, live.parameters, initial_values=True)
            mover = self._mover(live, conn, identity)
            mover.enter(initial)
            mover.follow_automatic()
            mover.settle()
            now = utcnow()
            values = {
                "id": pid,
                "tenant_id": tenant,
                "scheme_code": scheme.name,
                "scheme_version": version,
                "activity": live.activity,
                "state": live.state,
                "status": live.status.value,
                "parameters": _stored_parameters(live),
                "parent_id": None,
                "root_id": pid,
                "created_at": now,
                "updated_at": now,
                "row_version": 1,
                "history_length": len(mover.moves),
            }
            if not self._rows.insert(conn, values):
                raise ProcessExists(f"a process with id {pid!r} already exists; nothing created")
            self._rows.append_history(conn, _history_rows(pid, mover.moves))
            rearm(conn, self._rows, self._add_steps, live, left=None, now=now)
        return pid

    # -- reading -------------------------------------------------------------------------------

    def get(
        self,
        process_id: str,
        *,
        tenant_id: TenantFilter = ANY_TENANT,
        connection: sa.Connection | None = None,
    ) -> Process:
        """The process as stored now (``ProcessNotFound`` if there is none)."""
        with self._transaction(connection, read_only=True) as conn:
            return process_from_row(self._row(conn, process_id, lock=False, tenant=tenant_id))

    def exists(
        self,
        process_id: str,
        *,
        tenant_id: TenantFilter = ANY_TENANT,
        connection: sa.Connection | None = None,
    ) -> bool:
        """Whether a process with this id exists (in ``tenant_id``, if given)."""
        with self._transaction(connection, read_only=True) as conn:
            if tenant_id is ANY_TENANT:
                return self._rows.exists(conn, _check_id(process_id))
            try:
                self._row(conn, process_id, lock=False, tenant=tenant_id)
            except ProcessNotFound:
                return False
            return True

    def history(
        self,
        process_id: str,
        *,
        tenant_id: TenantFilter = ANY_TENANT,
        connection: sa.Connection | None = None,
    ) -> builtins.list[HistoryRecord]:
        """The transitions the process made, oldest first."""
        with self._transaction(connection, read_only=True) as conn:
            self._row(conn, process_id, lock=False, tenant=tenant_id)
            return self._rows.history(conn, process_id)

    def list(
        self,
        *,
        scheme_code: str | None = None,
        status: ProcessStatus | str | None = None,
        activity: str | None = None,
        tenant_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
        connection: sa.Connection | None = None,
    ) -> builtins.list[Process]:
        """Processes matching the filters, by id; page with ``after`` = the last id seen."""
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidArgument(f"limit must be an integer from 1 to 10000, not {limit!r}")
        status_text = None if status is None else ProcessStatus(status).value
        with self._transaction(connection, read_only=True) as conn:
            return self._rows.search(
                conn,
                tenant_id=tenant_id,
                scheme_code=scheme_code,
                status=status_text,
                activity=activity,
                after=after,
                limit=limit,
            )

    def commands(
        self,
        process_id: str,
        identity: str | None = None,
        *,
        check_conditions: bool = False,
        tenant_id: TenantFilter = ANY_TENANT,
        connection: sa.Connection | None = None,
    ) -> builtins.list[Command]:
        """The commands ``identity`` may execute now, in scheme order.

        Restrictions are always checked; with ``check_conditions`` a command is listed only
        if executing it now would move the process.
        """
        _check_identity(identity)
        with self._transaction(connection, read_only=True) as conn:
            live = self._live(conn, self._row(conn, process_id, lock=False, tenant=tenant_id))
            if live.status in _FINISHED:
                return []
            self._auto_update(conn, live)  # in memory only: what execute would meet
            mover = self._mover(live, conn, identity)
            groups: dict[str, list[Any]] = {}
            for transition in live.scheme.transitions_from(live.activity):
                trigger = transition.trigger
                is_command = trigger.type is TriggerType.COMMAND and trigger.name
                if is_command and mover.permitted(transition, identity):
                    groups.setdefault(str(trigger.name), []).append(transition)
            result = []
            for name, transitions in groups.items():
                if check_conditions:
                    mover.context.command = live.command = name
                    if mover.choose(transitions) is None:
                        continue
                declared = live.scheme.command(name)
                result.append(
                    Command(
                        name=name,
                        classifier=transitions[0].classifier,
                        input_parameters=declared.input_parameters if declared else (),
                        caption=live.scheme.localized("Command", name),
                    )
                )
            return result

    def states_to_set(
        self,
        process_id: str,
        *,
        tenant_id: TenantFilter = ANY_TENANT,
        connection: sa.Connection | None = None,
    ) -> builtins.list[str]:
        """States ``set_state`` accepts for this process (activities marked for it)."""
        with self._transaction(connection, read_only=True) as conn:
            live = self._live(conn, self._row(conn, process_id, lock=False, tenant=tenant_id))
            self._auto_update(conn, live)  # in memory only: what set_state would meet
            return self._states(live.scheme)

    # -- moving --------------------------------------------------------------------------------

    def execute(
        self,
        process_id: str,
        command: str,
        *,
        identity: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        tenant_id: TenantFilter = ANY_TENANT,
        connection: sa.Connection | None = None,
    ) -> ExecutionResult:
        """Execute ``command`` as ``identity``: pick the first permitted transition whose
        conditions hold, move, run actions, follow automatic transitions, arm timers.

        ``CommandNotAvailable`` if the command cannot be executed here by that identity;
        ``executed`` is False (and nothing changes) if no transition's conditions hold.
        """
        if not isinstance(command, str) or not command:
            raise InvalidArgument(f"command must be a non-empty string, not {command!r}")
        _check_identity(identity)
        with self._transaction(connection) as conn:
            row = self._row(conn, process_id, lock=True, tenant=tenant_id)
            live = self._live(conn, row)
            left = self._auto_update(conn, live)
            if live.status in _FINISHED:
                raise CommandNotAvailable(
                    f"process {process_id!r} is {live.status.value}; it takes no more commands"
                )
            candidates = [
                t
                for t in live.scheme.transitions_from(live.activity)
                if t.trigger.type is TriggerType.COMMAND and t.trigger.name == command
            ]
            if not candidates:
                raise CommandNotAvailable(_unavailable(live, command))
            mover = self._mover(live, conn, identity, command, row)
            permitted = [t for t in candidates if mover.permitted(t, identity)]
            if not permitted:
                raise CommandNotAvailable(
                    f"identity {identity!r} may not execute {command!r} on process "
                    f"{process_id!r} in activity {live.activity!r}"
                )
            before = live.parameters.stored()
            apply_command_inputs(live.scheme, command, parameters, live.parameters)
            chosen = mover.choose(permitted)
            if chosen is None:  # nothing changes, but an automatic scheme update is kept
                if left is None:
                    return ExecutionResult(False, process_from_row(row))
                live.parameters.replace_all(before)
                return ExecutionResult(False, self._save(conn, row, live, [], left))
            start = (live.scheme, live.activity)
            mover.move(chosen, TriggerType.COMMAND.value)
            mover.follow_automatic()
            mover.settle()
            process = self._save(conn, row, live, mover.moves, left or start)
            return ExecutionResult(True, process, tuple(mover.moves))

    def set_state(
        self,
        process_id: str,
        state: str,
        *,
        identity: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        tenant_id: TenantFilter = ANY_TENANT,
        connection: sa.Connection | None = None,
    ) -> Process:
        """Move the process to the activity of ``state`` without a transition.

        The activity's actions run and automatic transitions are followed, as if the process
        had arrived there; the history records trigger ``SetState``.
        """
        _check_identity(identity)
        with self._transaction(connection) as conn:
            row = self._row(conn, process_id, lock=True, tenant=tenant_id)
            live = self._live(conn, row)
            left = self._auto_update(conn, live)
            target = next(
                (
                    a
                    for a in live.scheme.activities
                    if a.state == state and a.is_for_set_state and state
                ),
                None,
            )
            if target is None:
                raise StateNotAvailable(
                    f"process {process_id!r} cannot be set to state {state!r}; it accepts "
                    f"{', '.join(map(repr, self._states(live.scheme))) or 'none'}"
                )
            apply_parameters(live.scheme, parameters, live.parameters, initial_values=False)
            start = (live.scheme, live.activity)
            mover = self._mover(live, conn, identity, row=row)
            live.status = ProcessStatus.RUNNING
            mover.jump(target, "SetState")
            mover.follow_automatic()
            mover.settle()
            return self._save(conn, row, live, mover.moves, left or start)

    def update_scheme(
        self,
        process_id: str,
        *,
        tenant_id: TenantFilter = ANY_TENANT,
        connection: sa.Connection | None = None,
    ) -> Process:
        """Move the process to the newest version of its scheme (its history stays as it is).

        ``SchemeUpdateError`` if that version has no activity of the process's name.
        """
        with self._transaction(connection) as conn:
            row = self._row(conn, process_id, lock=True, tenant=tenant_id)
            live = self._live(conn, row)
            left = self._switch_to_newest(conn, live, strict=True)
            if left is None:
                return process_from_row(row)
            return self._save(conn, row, live, [], left)

    def delete(
        self,
        process_id: str,
        *,
        tenant_id: TenantFilter = ANY_TENANT,
        connection: sa.Connection | None = None,
    ) -> None:
        """Delete the process, its history and its pending timers."""
        with self._transaction(connection) as conn:
            self._row(conn, process_id, lock=True, tenant=tenant_id)
            self._rows.cancel_timers(conn, process_id)
            self._rows.delete(conn, process_id)

    # -- timers ---------------------------------------------------------------------------------

    def fire_timer(self, step: StepContext) -> Outcome:
        """The implementation of timer steps: fire the timer if the process still waits."""
        timer = TimerState.from_json(step.state)
        conn = step.connection
        row = self._rows.load(conn, timer.process_id, lock=True)
        if row is None:
            return step.done()
        live = self._live(conn, row)
        if live.status in _FINISHED or live.activity != timer.activity:
            return step.done()
        left = self._auto_update(conn, live)
        transitions = [
            t
            for t in live.scheme.transitions_from(live.activity)
            if t.trigger.type is TriggerType.TIMER and t.trigger.name == timer.timer
        ]
        mover = self._mover(live, conn, None, row=row)
        chosen = mover.choose(transitions)
        fired = (step.id, timer.timer)  # this step completes on its own: never cancel it
        if chosen is not None:
            start = (live.scheme, live.activity)
            mover.move(chosen, TriggerType.TIMER.value)
            mover.follow_automatic()
            mover.settle()
            self._save(conn, row, live, mover.moves, left or start, fired=fired)
        elif left is not None:
            self._save(conn, row, live, [], left, fired=fired)
        return step.done()

    # -- helpers ---------------------------------------------------------------------------------

    def _mover(
        self,
        live: LiveProcess,
        conn: sa.Connection,
        identity: str | None,
        command: str | None = None,
        row: Any = None,
    ) -> Mover:
        """A mover for ``live``; ``row`` (its stored row) numbers the history it adds."""
        return Mover(
            live,
            self._registry,
            conn,
            self._engine,
            identity=identity,
            command=command,
            max_auto_transitions=self.max_auto_transitions,
            history_length=0 if row is None else row.history_length,
        )

    def _row(
        self, conn: sa.Connection, process_id: str, *, lock: bool, tenant: TenantFilter
    ) -> Any:
        row = self._rows.load(conn, _check_id(process_id), lock=lock)
        if row is None or (tenant is not ANY_TENANT and row.tenant_id != tenant_key(tenant)):
            raise ProcessNotFound(f"no process has the id {process_id!r}")
        return row

    def _live(self, conn: sa.Connection, row: Any) -> LiveProcess:
        scheme, _ = self._schemes.load(conn, row.tenant_id, row.scheme_code, row.scheme_version)
        return LiveProcess(
            id=row.id,
            scheme=scheme,
            scheme_version=row.scheme_version,
            activity=row.activity,
            state=row.state,
            status=ProcessStatus(row.status),
            parameters=json.loads(row.parameters),
            tenant_id=row.tenant_id or None,
            parent_id=row.parent_id,
            root_id=row.root_id,
        )

    def _states(self, scheme: Scheme) -> builtins.list[str]:
        return list(
            dict.fromkeys(a.state for a in scheme.activities if a.is_for_set_state and a.state)
        )

    def _auto_update(self, conn: sa.Connection, live: LiveProcess) -> tuple[Scheme, str] | None:
        """Move to the newest scheme version first when configured and the activity allows."""
        activity = live.scheme.activity(live.activity)
        if not self.auto_scheme_update or activity is None or not activity.is_auto_scheme_update:
            return None
        return self._switch_to_newest(conn, live, strict=False)

    def _switch_to_newest(
        self, conn: sa.Connection, live: LiveProcess, *, strict: bool
    ) -> tuple[Scheme, str] | None:
        tenant = tenant_key(live.tenant_id)
        newest, version = self._schemes.load(conn, tenant, live.scheme.name, None)
        if version == live.scheme_version:
            return None
        activity = newest.activity(live.activity)
        if activity is None:
            if not strict:
                return None
            raise SchemeUpdateError(
                f"process {live.id!r} rests on activity {live.activity!r}, which version "
                f"{version} of scheme {live.scheme.name!r} does not have; set its state to one "
                "that exists in both versions first"
            )
        left = (live.scheme, live.activity)
        live.scheme, live.scheme_version = newest, version
        live.state = activity.state if activity.state is not None else live.state
        return left

    def _save(
        self,
        conn: sa.Connection,
        row: Any,
        live: LiveProcess,
        moves: builtins.list[HistoryRecord],
        left: tuple[Scheme, str],
        *,
        fired: tuple[int, str] | None = None,
    ) -> Process:
        now = utcnow()
        stored = persistent_values(live.scheme, live.parameters.stored())
        values = {
            "pid": live.id,
            "expected": row.row_version,
            "scheme_version": live.scheme_version,
            "activity": live.activity,
            "state": live.state,
            "status": live.status.value,
            "parameters": encode_parameters(stored),
            "updated_at": now,
            "row_version": row.row_version + 1,
            "history_length": row.history_length + len(moves),
        }
        if not self._rows.update(conn, values):
            raise ConcurrencyError(
                f"process {live.id!r} was changed by another transaction during this call; "
                "nothing was saved: try again"
            )
        self._rows.append_history(conn, _history_rows(live.id, moves))
        rearm(conn, self._rows, self._add_steps, live, left=left, now=now, fired=fired)
        return Process(
            id=live.id,
            scheme_code=row.scheme_code,
            scheme_version=live.scheme_version,
            activity=live.activity,
            state=live.state,
            status=live.status,
            parameters=stored,
            tenant_id=row.tenant_id or None,
            parent_id=row.parent_id,
            root_id=row.root_id,
            created_at=row.created_at,
            updated_at=now,
            row_version=row.row_version + 1,
        )


def _stored_parameters(live: LiveProcess) -> str:
    return encode_parameters(persistent_values(live.scheme, live.parameters.stored()))


_HISTORY_FIELDS = tuple(f.name for f in dataclasses.fields(HistoryRecord))


def _history_rows(pid: str, moves: builtins.list[HistoryRecord]) -> builtins.list[dict[str, Any]]:
    # Not dataclasses.asdict: it deep-copies every value, and cost 0.17 ms of an execute.
    return [
        {"process_id": pid, **{name: getattr(move, name) for name in _HISTORY_FIELDS}}
        for move in moves
    ]


def _unavailable(live: LiveProcess, command: str) -> str:
    here = sorted(
        {
            t.trigger.name
            for t in live.scheme.transitions_from(live.activity)
            if t.trigger.type is TriggerType.COMMAND and t.trigger.name
        }
    )
    if live.scheme.command(command) is None:
        reason = f"scheme {live.scheme.name!r} has no command {command!r}"
    else:
        reason = f"command {command!r} is not available in activity {live.activity!r}"
    listed = ", ".join(map(repr, here)) or "none"
    return f"{reason} (process {live.id!r}; commands there: {listed})"


def _storable(text: str) -> bool:
    """Text every database stores as given: no NUL, no lone surrogate."""
    return "\x00" not in text and (text.isascii() or _encodes(text))


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_id(process_id: object) -> str:
    if (
        not isinstance(process_id, str)
        or not process_id.strip()
        or len(process_id) > NAME_LENGTH
        or not _storable(process_id)
    ):
        raise InvalidArgument(
            f"a process id must be a non-empty string of at most {NAME_LENGTH} characters "
            f"without NUL or lone surrogates, not {process_id!r}"
        )
    return process_id


def _check_identity(identity: object) -> None:
    if identity is not None and (
        not isinstance(identity, str) or len(identity) > NAME_LENGTH or not _storable(identity)
    ):
        raise InvalidArgument(
            f"identity must be a string of at most {NAME_LENGTH} characters (no NUL, no lone "
            f"surrogates) or None, not {identity!r}"
        )
