"""The `qamqor` command end to end on both databases (through Typer's runner)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from qamqor.cli import app
from tests.registry.builders import population_rows, write_csv

runner = CliRunner()


def test_ingest_json_reports_reconcile_and_reingest_is_a_no_op(
    engine: Engine, tmp_path: Path
) -> None:
    rows = population_rows(5)
    rows[3]["iin"] = "123"
    path = write_csv(tmp_path / "pop.csv", rows)
    result = runner.invoke(app, ["ingest", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == "loaded"
    assert (report["rows_read"], report["facts"], report["rejections"]) == (5, 4, 1)
    assert report["reconciles"] is True
    assert report["rejection_reasons"] == {"bad_format:iin": 1}

    again = runner.invoke(app, ["ingest", str(path), "--json"])
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "already_ingested"

    listing = runner.invoke(app, ["batches", "list"])
    assert "pop.csv" in listing.stdout
    shown = runner.invoke(
        app, ["batches", "rejections", str(report["batch_id"]), "--json", "--lang", "ru"]
    )
    item = json.loads(shown.stdout)["items"][0]
    assert item["line_no"] == 5
    assert item["explanations"] == ["iin: не 12 цифр"]


def test_unusable_file_exits_non_zero_with_a_clear_message(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    result = runner.invoke(app, ["ingest", str(path)])
    assert result.exit_code == 1
    assert "the file is empty" in result.output


def test_db_current_reports_the_head(engine: Engine) -> None:
    from qamqor.kit import migrate

    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 0
    assert result.stdout.strip() == migrate.heads()[0]
