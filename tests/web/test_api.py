"""The API skeleton on both databases: health, docs, batches, reports and rejections."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from qamqor.registry.ingest import ingest_file
from qamqor.web.app import create_app
from tests.registry.builders import income_rows, population_rows, write_csv

TODAY = dt.date(2026, 11, 29)


@pytest.fixture
def client(engine: Engine) -> TestClient:
    """Signed in as a data-quality steward: batches and rejections are behind the policy."""
    from qamqor.kit.db import session_scope
    from tests.privacy.builders import bearer, make_officer

    with session_scope() as session:
        _, token = make_officer(session, "dq_steward", ("all",))
    return TestClient(create_app(), headers=bearer(token))


def test_health_names_the_database(client: TestClient, engine: Engine) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == engine.dialect.name
    assert response.json()["status"] == "ok"


def test_openapi_lists_the_registry_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/registry/batches" in paths
    assert "/api/v1/registry/batches/{batch_id}/rejections" in paths
    assert client.get("/docs").status_code == 200


def test_sources_catalogue(client: TestClient) -> None:
    sources = {s["code"]: s for s in client.get("/api/v1/registry/sources").json()}
    assert set(sources) == {
        "population",
        "household",
        "income",
        "employment",
        "property",
        "disability",
        "finance",
    }
    assert sources["population"]["names"]["kk"].startswith("«Жеке тұлғалар»")
    assert sources["population"]["columns"][1] == {
        "name": "iin",
        "type": "iin",
        "required": True,
        "values": [],
    }


def test_batches_report_and_paginated_rejections(
    client: TestClient, engine: Engine, tmp_path: Path
) -> None:
    rows = population_rows(12)
    for k in range(0, 12, 2):
        rows[k]["sex"] = "?"
    first = ingest_file(write_csv(tmp_path / "pop.csv", rows), engine=engine, today=TODAY)
    second = ingest_file(
        write_csv(tmp_path / "inc.csv", income_rows(3), source="income"), engine=engine, today=TODAY
    )

    listing = client.get("/api/v1/registry/batches").json()
    assert listing["total"] == 2
    assert [b["id"] for b in listing["items"]] == [second.batch_id, first.batch_id]
    only = client.get("/api/v1/registry/batches", params={"source": "income"}).json()
    assert [b["source"] for b in only["items"]] == ["income"]

    report = client.get(f"/api/v1/registry/batches/{first.batch_id}").json()
    assert (report["rows_read"], report["facts"], report["rejections"]) == (12, 6, 6)
    assert report["reconciles"] is True
    assert report["rejection_reasons"] == {"unknown_code:sex": 6}

    page = client.get(
        f"/api/v1/registry/batches/{first.batch_id}/rejections",
        params={"offset": 2, "limit": 2, "lang": "kk"},
    ).json()
    assert page["total"] == 6
    assert [r["line_no"] for r in page["items"]] == [6, 8]
    assert page["items"][0]["reasons"] == ["unknown_code:sex"]
    assert page["items"][0]["explanations"] == ["sex: рұқсат етілмеген код"]
    assert page["items"][0]["raw"].startswith("POP-00000004;")

    russian = client.get(
        f"/api/v1/registry/batches/{first.batch_id}/rejections",
        headers={"Accept-Language": "ru-RU,ru;q=0.9"},
    ).json()
    assert russian["items"][0]["explanations"] == ["sex: недопустимый код"]


def test_missing_batch_is_404(client: TestClient) -> None:
    assert client.get("/api/v1/registry/batches/999").status_code == 404
    assert client.get("/api/v1/registry/batches/999/rejections").status_code == 404


def test_page_size_is_capped_and_validated(client: TestClient) -> None:
    assert client.get("/api/v1/registry/batches", params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/registry/batches", params={"offset": -1}).status_code == 422


def test_timestamps_are_utc_on_both_databases(
    client: TestClient, engine: Engine, tmp_path: Path
) -> None:
    ingest_file(write_csv(tmp_path / "p.csv", population_rows(2)), engine=engine, today=TODAY)
    batch = client.get("/api/v1/registry/batches").json()["items"][0]
    for field in ("received_at", "loaded_at"):
        stamp = dt.datetime.fromisoformat(batch[field])
        assert stamp.utcoffset() == dt.timedelta(0), batch[field]
