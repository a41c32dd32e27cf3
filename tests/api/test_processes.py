"""``/api/v1/processes``: every route's happy path, and the problems of commands and states."""

from __future__ import annotations

import pytest

from tests.api.conftest import Headers, MakeKey, TestClient, assert_problem, create_process
from tests.processes.vacation import SCHEME, VACATION_XML

P = "/api/v1/processes"


def test_create_read_and_list_a_process(client: TestClient, admin: Headers, vacation: str) -> None:
    created = create_process(client, admin)
    assert created["scheme"] == SCHEME
    assert created["scheme_version"] == 1
    assert created["activity"] == "VacationRequestCreated"
    assert created["status"] == "Idled"
    assert created["parameters"] == {"Author": "alice", "Sum": 80}
    assert created["tenant_id"] == "acme"
    assert created["created_at"].endswith("Z")

    read = client.get(f"{P}/{created['id']}", headers=admin)
    assert read.status_code == 200
    assert read.json() == created
    page = client.get(P, headers=admin).json()
    assert [p["id"] for p in page["items"]] == [created["id"]]
    assert page["next_cursor"] is None


def test_a_process_id_may_be_chosen_once(client: TestClient, admin: Headers, vacation: str) -> None:
    assert create_process(client, admin, process_id="vr-1")["id"] == "vr-1"
    response = client.post(P, json={"scheme": SCHEME, "process_id": "vr-1"}, headers=admin)
    assert_problem(response, 409, "process-exists")


def test_listing_filters_and_pages_with_a_cursor(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    ids = [create_process(client, admin, process_id=f"p{n}")["id"] for n in range(5)]
    client.post(f"{P}/p0/commands/StartSigning", json={"identity": "alice"}, headers=admin)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get(P, params=params, headers=admin).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

    def listed(**params: str) -> list[str]:
        return [p["id"] for p in client.get(P, params=params, headers=admin).json()["items"]]

    assert listed(activity="ManagerSigning") == ["p0"]
    assert listed(scheme=SCHEME, status="Idled") == ids
    assert listed(scheme="Other") == []
    assert listed(status="Finalized") == []


@pytest.mark.parametrize(
    ("cursor", "slug"),
    [("!!!", "invalid-cursor"), ("", "invalid-cursor"), ("A" * 401, "validation-error")],
)
def test_a_cursor_we_did_not_make_is_422(
    client: TestClient, admin: Headers, cursor: str, slug: str
) -> None:
    assert_problem(client.get(P, params={"cursor": cursor}, headers=admin), 422, slug)


def test_a_cursor_continues_after_the_id_it_holds(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    for pid in ("a", "b", "c"):
        create_process(client, admin, process_id=pid)
    cursor = client.get(P, params={"limit": 1}, headers=admin).json()["next_cursor"]
    rest = client.get(P, params={"cursor": cursor}, headers=admin).json()["items"]
    assert [p["id"] for p in rest] == ["b", "c"]


def test_commands_execute_history_and_states(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    pid = create_process(client, admin)["id"]
    commands = client.get(f"{P}/{pid}/commands", params={"identity": "alice"}, headers=admin)
    assert [c["name"] for c in commands.json()] == ["StartSigning"]
    assert commands.json()[0]["classifier"] == "Direct"
    assert (
        client.get(f"{P}/{pid}/commands", params={"identity": "mike"}, headers=admin).json() == []
    )

    executed = client.post(
        f"{P}/{pid}/commands/StartSigning",
        json={"identity": "alice", "parameters": {"Comment": "please"}},
        headers=admin,
    )
    assert executed.status_code == 200, executed.text
    body = executed.json()
    assert body["executed"] is True
    assert body["process"]["activity"] == "ManagerSigning"
    assert [t["to_activity"] for t in body["transitions"]] == ["ManagerSigning"]

    history = client.get(f"{P}/{pid}/history", headers=admin).json()
    assert [(h["seq"], h["command"], h["identity"]) for h in history] == [
        (1, "StartSigning", "alice")
    ]
    states = client.get(f"{P}/{pid}/states", headers=admin).json()
    assert "AccountingReview" in states

    moved = client.post(
        f"{P}/{pid}/state", json={"state": "AccountingReview", "identity": "boss"}, headers=admin
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["activity"] == "AccountingReview"
    last = client.get(f"{P}/{pid}/history", headers=admin).json()[-1]
    assert (last["trigger"], last["identity"]) == ("SetState", "boss")


def test_execute_without_a_body_acts_as_the_keys_identity(
    client: TestClient, make_key: MakeKey, vacation: str
) -> None:
    service = make_key("service", identity="alice")
    pid = create_process(client, service)["id"]
    response = client.post(f"{P}/{pid}/commands/StartSigning", headers=service)
    assert response.status_code == 200, response.text
    assert client.get(f"{P}/{pid}/history", headers=service).json()[0]["identity"] == "alice"


def test_a_command_of_another_activity_is_409_and_one_not_permitted_is_403(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    pid = create_process(client, admin)["id"]
    for command in ("Paid", "NoSuchCommand"):
        response = client.post(
            f"{P}/{pid}/commands/{command}", json={"identity": "alice"}, headers=admin
        )
        assert_problem(response, 409, "command-not-available")
    response = client.post(
        f"{P}/{pid}/commands/StartSigning", json={"identity": "mike"}, headers=admin
    )
    assert "may not execute" in assert_problem(response, 403, "command-not-permitted")["detail"]
    response = client.post(f"{P}/{pid}/commands/StartSigning", json={}, headers=admin)
    assert_problem(response, 403, "command-not-permitted")


def test_a_finished_process_takes_no_commands(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    pid = create_process(client, admin)["id"]
    client.post(f"{P}/{pid}/state", json={"state": "RequestApproved"}, headers=admin)
    assert client.get(f"{P}/{pid}", headers=admin).json()["status"] == "Finalized"
    response = client.post(
        f"{P}/{pid}/commands/Paid", json={"identity": "accountant"}, headers=admin
    )
    assert_problem(response, 409, "command-not-available")
    assert (
        client.get(f"{P}/{pid}/commands", params={"identity": "alice"}, headers=admin).json() == []
    )


def test_an_unknown_state_is_422(client: TestClient, admin: Headers, vacation: str) -> None:
    pid = create_process(client, admin)["id"]
    response = client.post(f"{P}/{pid}/state", json={"state": "Nowhere"}, headers=admin)
    assert "Nowhere" in assert_problem(response, 422, "state-not-available")["detail"]


def test_update_scheme_moves_to_the_newest_version(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    pid = create_process(client, admin)["id"]
    client.post(
        "/api/v1/schemes",
        content=VACATION_XML,
        headers={**admin, "Content-Type": "application/xml"},
    )
    response = client.post(f"{P}/{pid}/update-scheme", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["scheme_version"] == 2


def test_update_scheme_that_lacks_the_activity_is_409(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    pid = create_process(client, admin)["id"]
    definition = client.get(f"/api/v1/schemes/{vacation}", headers=admin).json()["definition"]
    for activity in definition["activities"]:
        if activity["name"] == "VacationRequestCreated":
            activity["name"] = "Created"
    for transition in definition["transitions"]:
        for end in ("from", "to"):
            if transition.get(end) == "VacationRequestCreated":
                transition[end] = "Created"
    saved = client.post("/api/v1/schemes", json=definition, headers=admin)
    assert saved.status_code == 201, saved.text
    response = client.post(f"{P}/{pid}/update-scheme", headers=admin)
    assert_problem(response, 409, "scheme-update-failed")


def test_delete_removes_the_process(client: TestClient, admin: Headers, vacation: str) -> None:
    pid = create_process(client, admin)["id"]
    response = client.delete(f"{P}/{pid}", headers=admin)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get(f"{P}/{pid}", headers=admin), 404, "process-not-found")
    assert_problem(client.delete(f"{P}/{pid}", headers=admin), 404, "process-not-found")


def test_unknown_processes_are_404_on_every_route(client: TestClient, admin: Headers) -> None:
    for method, path in [
        ("GET", "/nope"),
        ("GET", "/nope/commands"),
        ("POST", "/nope/commands/Go"),
        ("GET", "/nope/states"),
        ("POST", "/nope/state"),
        ("GET", "/nope/history"),
        ("POST", "/nope/update-scheme"),
        ("DELETE", "/nope"),
    ]:
        body = {"state": "x"} if path.endswith("/state") else None
        response = client.request(method, P + path, json=body, headers=admin)
        assert_problem(response, 404, "process-not-found")


def test_creating_from_an_unknown_scheme_is_404(client: TestClient, admin: Headers) -> None:
    response = client.post(P, json={"scheme": "Nope"}, headers=admin)
    assert_problem(response, 404, "scheme-not-found")
