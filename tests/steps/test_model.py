"""The values of the steps API, without a database: Step, Search, Retry, StepRecord."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowkeeper as fk
from flowkeeper.steps.model import NAME_LENGTH, default_delay

AWARE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NAIVE = datetime(2024, 5, 1, 12, 0)

# -- Step ------------------------------------------------------------------------------------


def test_a_step_keeps_what_it_is_given() -> None:
    step = fk.Step(
        "v1/orders/fetch",
        {"id": 7, "tags": ["a", "ü"]},
        run_at=AWARE,
        singleton=True,
        flow_id="f",
        correlation_id="c",
        search_key="k",
        description="d",
    )
    assert step.name == "v1/orders/fetch"
    assert step.state == {"id": 7, "tags": ["a", "ü"]}
    assert json.loads(step.state_json) == step.state
    assert (step.run_at, step.singleton, step.flow_id) == (AWARE, True, "f")
    assert (step.correlation_id, step.search_key, step.description) == ("c", "k", "d")


def test_run_at_is_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    step = fk.Step("x", run_at=datetime(2024, 5, 1, 14, 0, tzinfo=plus_two))
    assert step.run_at == AWARE
    assert step.run_at is not None
    assert step.run_at.tzinfo == UTC


def test_a_naive_run_at_is_refused_with_advice() -> None:
    with pytest.raises(fk.NaiveDatetimeError, match=r"run_at.*timezone-aware.*datetime.now\(UTC\)"):
        fk.Step("x", run_at=NAIVE)


def test_naive_datetime_error_is_an_invalid_argument_and_a_value_error() -> None:
    assert issubclass(fk.NaiveDatetimeError, fk.InvalidArgument)
    assert issubclass(fk.InvalidStep, fk.InvalidArgument)
    assert issubclass(fk.InvalidArgument, ValueError)
    assert issubclass(fk.InvalidArgument, fk.FlowkeeperError)


@pytest.mark.parametrize("run_at", ["2024-05-01T12:00:00Z", 1714564800, AWARE.date()])
def test_run_at_must_be_a_datetime(run_at: Any) -> None:
    with pytest.raises(fk.InvalidStep, match="run_at must be a datetime"):
        fk.Step("x", run_at=run_at)


@pytest.mark.parametrize(
    "run_at",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),  # before year 1 in UTC
        datetime(1, 1, 1, tzinfo=UTC),  # MySQL's DATETIME starts at year 1000
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),  # past year 9999
    ],
)
def test_run_at_outside_what_every_database_stores_is_refused(run_at: datetime) -> None:
    with pytest.raises(fk.InvalidStep, match="run_at must be between"):
        fk.Step("x", run_at=run_at)


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        (object(), "object is not JSON serializable"),
        ({1, 2}, "set is not JSON serializable"),
        (math.nan, "Out of range float"),
        ({"x": [math.inf]}, "Out of range float"),
        (b"bytes", "bytes is not JSON serializable"),
        ({("a", "b"): 1}, "keys must be"),
        (datetime.now(UTC), "datetime is not JSON serializable"),
    ],
)
def test_a_state_that_is_not_json_is_refused(state: Any, fragment: str) -> None:
    with pytest.raises(fk.InvalidStep, match="must be JSON-serialisable") as caught:
        fk.Step("x", state)
    assert fragment in str(caught.value)
    assert "'x'" in str(caught.value)  # says which step


def test_a_circular_or_absurdly_deep_state_is_refused() -> None:
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(fk.InvalidStep, match="JSON-serialisable"):
        fk.Step("x", circular)
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(fk.InvalidStep, match="JSON-serialisable"):
        fk.Step("x", deep)


@pytest.mark.parametrize("name", ["", " ", "\t\n"])
def test_an_empty_name_is_refused(name: str) -> None:
    with pytest.raises(fk.InvalidStep, match="step name must not be empty"):
        fk.Step(name)


def test_a_name_of_255_characters_is_fine_and_256_is_refused() -> None:
    assert fk.Step("n" * NAME_LENGTH).name == "n" * 255
    assert fk.Step("😀" * NAME_LENGTH).name == "😀" * 255  # characters, not bytes
    with pytest.raises(fk.InvalidStep, match="256 characters long; the limit is 255"):
        fk.Step("n" * 256)


@pytest.mark.parametrize("name", [None, 5, b"name", ["x"]])
def test_a_name_that_is_not_a_string_is_refused(name: Any) -> None:
    with pytest.raises(fk.InvalidStep, match="step name"):
        fk.Step(name)


@pytest.mark.parametrize("field", ["flow_id", "correlation_id", "search_key"])
def test_identifiers_are_checked_like_names(field: str) -> None:
    with pytest.raises(fk.InvalidStep, match=f"{field} must be a string"):
        fk.Step("x", **{field: 5})
    with pytest.raises(fk.InvalidStep, match=f"{field} is 256 characters long"):
        fk.Step("x", **{field: "k" * 256})
    assert getattr(fk.Step("x", **{field: "k" * 255}), field) == "k" * 255


@pytest.mark.parametrize("text", ["a\x00b", "bad \ud800 surrogate"])
@pytest.mark.parametrize(
    "field", ["name", "flow_id", "correlation_id", "search_key", "description"]
)
def test_text_no_database_can_store_is_refused(field: str, text: str) -> None:
    kwargs: dict[str, Any] = {"name": "x", field: text}
    with pytest.raises(fk.InvalidStep, match=f"{field if field != 'name' else 'step name'}"):
        fk.Step(**kwargs)


def test_description_and_singleton_are_type_checked() -> None:
    with pytest.raises(fk.InvalidStep, match="description must be a string"):
        fk.Step("x", description=5)  # type: ignore[arg-type]
    with pytest.raises(fk.InvalidStep, match="singleton must be True or False"):
        fk.Step("x", singleton=1)  # type: ignore[arg-type]


def test_a_state_with_a_lone_surrogate_is_kept_as_json_escapes() -> None:
    step = fk.Step("x", {"text": "half \ud83d of an emoji"})
    step.state_json.encode("utf-8")  # storable as UTF-8
    assert json.loads(step.state_json) == {"text": "half \ud83d of an emoji"}
    assert "ü" in fk.Step("x", "ü").state_json  # other text is not escaped


# Anything a caller might pass: either a valid Step, or InvalidStep (never another exception).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
json_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | any_text | st.binary()
)
any_state = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(any_text | st.integers(), children, max_size=4)
        | st.frozensets(st.integers(), max_size=3)
        | st.tuples(children)
    ),
    max_leaves=20,
)
any_name = st.one_of(any_text, st.none(), st.integers(), st.binary(), st.just(" " * 3))


@given(name=any_name, state=any_state, search_key=st.none() | any_text)
def test_step_validation_never_raises_anything_but_invalid_step(
    name: Any, state: Any, search_key: Any
) -> None:
    try:
        step = fk.Step(name, state, search_key=search_key)
    except fk.InvalidStep:
        return
    assert isinstance(step.name, str)
    assert step.name.strip()
    assert len(step.name) <= NAME_LENGTH
    step.name.encode("utf-8")
    step.state_json.encode("utf-8")
    json.loads(step.state_json)


# -- Search --------------------------------------------------------------------------------------


def test_an_empty_search_is_empty() -> None:
    assert fk.Search().is_empty()
    assert not fk.Search(name="x").is_empty()
    assert not fk.Search(created_from=AWARE).is_empty()


@pytest.mark.parametrize("field", ["created_from", "created_to"])
def test_a_search_refuses_naive_datetimes(field: str) -> None:
    with pytest.raises(fk.NaiveDatetimeError, match=f"Search.{field} must be a timezone-aware"):
        fk.Search(**{field: NAIVE})


@pytest.mark.parametrize("field", ["created_from", "created_to"])
def test_a_search_refuses_times_that_are_not_datetimes(field: str) -> None:
    with pytest.raises(fk.InvalidArgument, match=f"Search.{field} must be a datetime"):
        fk.Search(**{field: "2024-01-01"})


def test_a_search_converts_times_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    search = fk.Search(created_from=datetime(2024, 5, 1, 14, 0, tzinfo=plus_two))
    assert search.created_from == AWARE
    assert search.created_from is not None
    assert search.created_from.tzinfo == UTC


@pytest.mark.parametrize("value", ["7", 7.0, True])
def test_a_search_id_must_be_an_int(value: Any) -> None:
    with pytest.raises(fk.InvalidArgument, match=r"Search\.id must be an int"):
        fk.Search(id=value)


@pytest.mark.parametrize("value", [0, -5, 2**63, 10**30])
def test_a_search_id_must_be_a_possible_step_id(value: int) -> None:
    with pytest.raises(fk.InvalidArgument, match=r"between 1 and 2\*\*63-1"):
        fk.Search(id=value)
    assert fk.Search(id=2**63 - 1).id == 2**63 - 1


@pytest.mark.parametrize(
    "field", ["name", "flow_id", "correlation_id", "search_key", "description"]
)
def test_search_text_fields_must_be_strings(field: str) -> None:
    with pytest.raises(fk.InvalidArgument, match=f"Search.{field} must be a string"):
        fk.Search(**{field: 5})
    with pytest.raises(fk.InvalidArgument, match=f"Search.{field}"):
        fk.Search(**{field: "nul \x00"})


# -- Retry ---------------------------------------------------------------------------------------


def test_the_default_delay_is_cubic_and_capped_at_two_hours() -> None:
    assert default_delay(1) == timedelta(seconds=1)
    assert default_delay(3) == timedelta(seconds=27)
    assert default_delay(100) == timedelta(hours=2)
    assert fk.Retry().delay_for(2) == timedelta(seconds=8)


def test_retry_delays_take_seconds_timedeltas_or_functions() -> None:
    assert fk.Retry(delay=5).delay_for(9) == timedelta(seconds=5)
    assert fk.Retry(delay=timedelta(minutes=1)).delay_for(1) == timedelta(minutes=1)
    assert fk.Retry(delay=lambda n: 2**n).delay_for(3) == timedelta(seconds=8)
    assert fk.Retry(delay=lambda n: -1).delay_for(3) == timedelta(0)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3"])
def test_retry_max_attempts_must_be_a_positive_int(value: Any) -> None:
    with pytest.raises(fk.InvalidArgument, match="max_attempts must be an int >= 1"):
        fk.Retry(max_attempts=value)


def test_retry_refuses_a_negative_or_odd_delay() -> None:
    with pytest.raises(fk.InvalidArgument, match="must not be negative"):
        fk.Retry(delay=-1)
    with pytest.raises(fk.InvalidArgument, match=r"Retry\.delay must be"):
        fk.Retry(delay="5")  # type: ignore[arg-type]
    with pytest.raises(fk.InvalidArgument, match="must not be negative"):
        fk.Retry(delay=timedelta(seconds=-1))


def test_retry_gives_up_after_max_attempts() -> None:
    assert not fk.Retry().gives_up_after(10**6)
    assert not fk.Retry(max_attempts=3).gives_up_after(2)
    assert fk.Retry(max_attempts=3).gives_up_after(3)


# -- StepRecord ----------------------------------------------------------------------------------


def test_a_step_record_as_a_dict_is_json() -> None:
    row = {
        "id": 3,
        "name": "x",
        "state": '{"a":[1,"ü"]}',
        "singleton": 1,
        "flow_id": "f",
        "correlation_id": None,
        "search_key": None,
        "activation_args": '{"go":true}',
        "execution_count": 2,
        "run_at": AWARE,
        "created_at": AWARE,
        "created_by_step_id": None,
        "execution_started_at": None,
        "execution_duration_ms": None,
        "executed_by": None,
        "description": None,
        "tenant_id": None,
        "locked_by": "w",
        "locked_until": AWARE,
    }
    record = fk.StepRecord.from_row("ready", row)
    assert record.singleton is True
    data = record.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["state"] == {"a": [1, "ü"]}
    assert data["run_at"] == "2024-05-01T12:00:00+00:00"
    assert data["queue"] == "ready"
    assert set(data) >= {"id", "name", "state", "activation_args", "locked_until"}
