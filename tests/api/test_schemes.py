"""``/api/v1/schemes``: XML and JSON uploads, reading versions back, problems named."""

from __future__ import annotations

import httpx
import pytest

import flowkeeper as fk
from tests.api.conftest import Headers, MakeKey, TestClient, assert_problem
from tests.processes.vacation import SCHEME, VACATION_XML

XML = {"Content-Type": "application/xml"}


def upload(
    client: TestClient, headers: Headers, text: str, media: str = "application/xml"
) -> httpx.Response:
    response: httpx.Response = client.post(
        "/api/v1/schemes", content=text, headers={**headers, "Content-Type": media}
    )
    return response


def test_uploading_the_vacation_request_xml_makes_versions(
    client: TestClient, admin: Headers
) -> None:
    first = client.post("/api/v1/schemes", content=VACATION_XML, headers={**admin, **XML})
    assert (first.status_code, first.json()) == (201, {"name": SCHEME, "version": 1})
    second = client.post(
        "/api/v1/schemes",
        content=VACATION_XML.encode(),
        headers={**admin, "Content-Type": "text/xml; charset=utf-8"},
    )
    assert second.json() == {"name": SCHEME, "version": 2}

    listed = client.get("/api/v1/schemes", headers=admin).json()
    assert [(s["name"], s["version"], s["obsolete"]) for s in listed] == [(SCHEME, 2, False)]
    versions = client.get(f"/api/v1/schemes/{SCHEME}/versions", headers=admin).json()
    assert [(v["version"], v["obsolete"]) for v in versions] == [(1, True), (2, False)]


def test_a_scheme_reads_back_as_json_and_as_xml(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    original = fk.Scheme.from_xml(VACATION_XML)
    body = client.get(f"/api/v1/schemes/{vacation}", headers=admin).json()
    assert (body["name"], body["version"]) == (SCHEME, 1)
    assert fk.Scheme.from_dict(body["definition"]) == original

    xml = client.get(f"/api/v1/schemes/{vacation}/xml", headers=admin)
    assert xml.status_code == 200
    assert xml.headers["content-type"].startswith("application/xml")
    assert xml.headers["x-scheme-version"] == "1"
    assert fk.Scheme.from_xml(xml.text) == original


def test_the_json_shape_uploads_and_versions_are_read_by_number(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    definition = client.get(f"/api/v1/schemes/{vacation}", headers=admin).json()["definition"]
    definition["activities"][0]["state"] = "Draft"
    response = client.post("/api/v1/schemes", json=definition, headers=admin)
    assert response.json() == {"name": SCHEME, "version": 2}
    newest = client.get(f"/api/v1/schemes/{vacation}", headers=admin).json()
    assert (newest["version"], newest["definition"]["activities"][0]["state"]) == (2, "Draft")
    old = client.get(f"/api/v1/schemes/{vacation}?version=1", headers=admin).json()
    assert old["definition"]["activities"][0]["state"] == "VacationRequestCreated"
    old_xml = client.get(f"/api/v1/schemes/{vacation}/xml?version=1", headers=admin)
    assert old_xml.headers["x-scheme-version"] == "1"


def test_bad_xml_is_422_naming_the_element(client: TestClient, admin: Headers) -> None:
    broken = VACATION_XML.replace(
        'To="AccountingReview" From="BigBossSigning"', 'To="Nowhere" From="BigBossSigning"'
    )
    body = assert_problem(upload(client, admin, broken), 422, "scheme-invalid")
    assert any("BigBossSigning_Activity_1_1" in e and "Nowhere" in e for e in body["errors"])
    assert client.get("/api/v1/schemes", headers=admin).json() == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("<Process Name='x'>", "not well-formed"),
        ("", "empty"),
        ("   ", "empty"),
        ("/etc/passwd", "not XML"),
        ("tests/processes/compat/VacationRequest.xml", "not XML"),
        (
            '<!DOCTYPE p [<!ENTITY e "x">]><Process Name="p">&e;</Process>',
            "document type",
        ),
    ],
)
def test_what_is_not_a_scheme_is_422(
    client: TestClient, admin: Headers, text: str, words: str
) -> None:
    body = assert_problem(upload(client, admin, text), 422, "scheme-invalid")
    assert words in " ".join(body["errors"])


def test_xml_that_is_not_utf8_is_422(client: TestClient, admin: Headers) -> None:
    response = client.post(
        "/api/v1/schemes", content=b"<Process Name='\xff'/>", headers={**admin, **XML}
    )
    assert "UTF-8" in assert_problem(response, 422, "scheme-invalid")["detail"]


@pytest.mark.parametrize(
    ("content", "words"),
    [("{bad json", "not JSON"), ("[1, 2]", "object, not list"), ('{"name": 5}', "name")],
)
def test_json_that_is_not_a_scheme_is_422(
    client: TestClient, admin: Headers, content: str, words: str
) -> None:
    body = assert_problem(upload(client, admin, content, "application/json"), 422, "scheme-invalid")
    assert words in body["detail"]


def test_other_media_types_are_415(client: TestClient, admin: Headers) -> None:
    assert_problem(upload(client, admin, VACATION_XML, "text/plain"), 415, "unsupported-media-type")
    response = client.post("/api/v1/schemes", content=VACATION_XML, headers=admin)
    assert_problem(response, 415, "unsupported-media-type")


def test_unknown_schemes_and_versions_are_404(
    client: TestClient, admin: Headers, vacation: str
) -> None:
    for path in (
        "/api/v1/schemes/Nope",
        "/api/v1/schemes/Nope/xml",
        "/api/v1/schemes/Nope/versions",
    ):
        assert_problem(client.get(path, headers=admin), 404, "scheme-not-found")
    response = client.get(f"/api/v1/schemes/{vacation}?version=7", headers=admin)
    assert_problem(response, 404, "scheme-not-found")


def test_only_admins_upload_and_users_do_not_read(
    client: TestClient, make_key: MakeKey, vacation: str
) -> None:
    service, user = make_key("service"), make_key("user")
    assert_problem(upload(client, service, VACATION_XML), 403, "forbidden")
    assert client.get(f"/api/v1/schemes/{vacation}", headers=service).status_code == 200
    for path in ("/api/v1/schemes", f"/api/v1/schemes/{vacation}"):
        assert_problem(client.get(path, headers=user), 403, "forbidden")


def test_schemes_of_another_tenant_are_invisible(
    client: TestClient, make_key: MakeKey, vacation: str
) -> None:
    other = make_key("admin", tenant="other")
    assert client.get("/api/v1/schemes", headers=other).json() == []
    for suffix in ("", "/xml", "/versions"):
        response = client.get(f"/api/v1/schemes/{vacation}{suffix}", headers=other)
        assert_problem(response, 404, "scheme-not-found")
    assert upload(client, other, VACATION_XML).json() == {"name": SCHEME, "version": 1}
