"""Property-based tests of the whole API from its own OpenAPI document (schemathesis).

Every operation gets generated requests, valid ones and (where the schema allows) invalid
ones, with an admin key: no response may be a 5xx, and every response must match the
document (status documented, content type, body schema). Operations on a process, a scheme
and a step also run against objects that exist, so their success paths are fuzzed too.
The run is bounded: a few examples per operation and a time budget for the whole test.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import flowkeeper as fk
from flowkeeper.api import create_app
from tests.processes.vacation import SCHEME, VACATION_XML, register_rules

POSITIVE_EXAMPLES = 10
NEGATIVE_EXAMPLES = 5
BUDGET_S = 40.0
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.databases("sqlite")
def test_the_api_conforms_to_its_openapi_document(
    engine: fk.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    register_rules(engine)
    app = create_app(engine)
    secret = app.state.flowkeeper_keys.create(role="admin", tenant_id="acme").secret
    auth = {"Authorization": f"Bearer {secret}"}
    engine.schemes.save(fk.Scheme.from_xml(VACATION_XML), tenant_id="acme")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    deadline = time.monotonic() + BUDGET_S
    operations = examples = 0
    failures: list[str] = []

    def run(operation: Any, mode: GenerationMode, fixed: dict[str, Any]) -> None:
        nonlocal examples
        strategy = operation.as_strategy(generation_mode=mode, headers=auth, path_parameters=fixed)
        positive = mode is GenerationMode.POSITIVE
        count = POSITIVE_EXAMPLES if positive else NEGATIVE_EXAMPLES

        @settings(
            max_examples=count,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def one(case: Any) -> None:
            nonlocal examples
            if time.monotonic() > deadline:
                return
            examples += 1
            response = case.call()
            try:
                case.validate_response(response, checks=CHECKS)
            except (Failure, FailureGroup) as error:
                failures.append(f"{operation.label} [{mode.value}]: {error}"[:2000])

        try:
            one()
        except Exception as error:  # generation itself impossible (e.g. nothing to negate)
            name = type(error).__name__
            if "Unsatisfiable" not in name and "negat" not in str(error).lower():
                failures.append(f"{operation.label} [{mode.value}]: {name}: {error}")

    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1
        path = operation.path
        fixtures: list[dict[str, Any]] = [{}]
        if "{process_id}" in path:
            pid = engine.processes.create(SCHEME, parameters={"Author": "alice"}, tenant_id="acme")
            fixtures.append({"process_id": pid})
        if "{name}" in path:
            fixtures.append({"name": SCHEME})
        if "{step_id}" in path:
            fixtures.append({"step_id": engine.add_step(fk.Step("job", tenant_id="acme"))})
        for fixed in fixtures:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                run(operation, mode, fixed)

    summary = (
        f"schemathesis: {operations} operations, {examples} examples, {len(failures)} failures"
    )
    with capsys.disabled():
        print("\n" + summary)
    assert operations >= 20
    assert examples >= operations * 4
    assert not failures, summary + "\n" + "\n\n".join(failures[:10])
