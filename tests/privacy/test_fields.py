"""Field encryption on SQLite and PostgreSQL: AES-GCM at rest, bound to its row, masked in
memory, sealed at ingest, rotated without an unreadable moment, never in a message."""

from __future__ import annotations

import datetime as dt
import json
import logging
import pickle
import traceback
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from qamqor.cli import app
from qamqor.kit.db import Base, session_scope
from qamqor.kit.errors import QamqorError
from qamqor.privacy import fields, keyring
from qamqor.privacy.fields import FieldEncryptionError, Secret
from qamqor.privacy.keyring import KeyringError
from qamqor.registry.catalogue import sources
from qamqor.registry.ingest import ingest_file
from qamqor.registry.models import FACT_TABLES, RAW_SEALED, DisabilityFact, Rejection
from qamqor.synth.defects import DEFECT_CLASSES as DEFECTS
from tests.registry.builders import to_csv_bytes, valid_iin

TODAY = dt.date(2026, 11, 29)
# Diagnoses a test stores; each must never show up in plain text anywhere but a Secret.
DIAGNOSES = ["G80.1", "Q90.9", "F84.0", "E10.7", "H54.0", "I69.4"]
BAD_DIAGNOSIS = "g80.1x"  # lower case and too long: not ICD-10


def disability_rows(n: int, diagnoses: list[str] | None = None) -> list[dict[str, str]]:
    codes = diagnoses or DIAGNOSES
    return [
        {
            "record_id": f"DIS-{k:08d}",
            "iin": valid_iin(k),
            "disability_group": ["1", "2", "3", "child"][k % 4],
            "diagnosis": codes[k % len(codes)],
            "assigned_on": "2020-03-01",
            "valid_until": "",
            "updated_on": "2026-10-01",
        }
        for k in range(n)
    ]


def write_disability(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_bytes(to_csv_bytes(rows, source="disability"))
    return path


def every_text(engine: Engine) -> str:
    """Every value of every table, as text: where a plain value must not be."""
    chunks = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                chunks.append(repr(tuple(row)))
    return "\n".join(chunks)


# --- values ---------------------------------------------------------------------------------


def test_a_value_round_trips_and_each_encryption_differs() -> None:
    one = fields.encrypt("G80.1", table="t", column="c", row=[1, 2])
    two = fields.encrypt("G80.1", table="t", column="c", row=[1, 2])
    assert one != two  # a fresh nonce per value
    assert one.startswith(f"v1:{keyring.load().active_id}:")
    assert fields.TOKEN.fullmatch(one)
    assert "G80.1" not in one
    assert fields.decrypt(one, table="t", column="c", row=[1, 2]).reveal() == "G80.1"
    assert fields.decrypt(two, table="t", column="c", row=["1", "2"]).reveal() == "G80.1"


@pytest.mark.parametrize(
    ("table", "column", "row"),
    [("other", "c", [1, 2]), ("t", "other", [1, 2]), ("t", "c", [1, 3]), ("t", "c", [2, 1])],
)
def test_a_value_moved_to_another_table_column_or_row_fails(
    table: str, column: str, row: list[int]
) -> None:
    token = fields.encrypt("Q90.9", table="t", column="c", row=[1, 2])
    with pytest.raises(FieldEncryptionError, match="does not authenticate") as refused:
        fields.decrypt(token, table=table, column=column, row=row)
    assert "Q90.9" not in str(refused.value)


def test_an_altered_or_malformed_value_fails_without_showing_anything() -> None:
    token = fields.encrypt("F84.0", table="t", column="c", row=[1])
    prefix, body = token.rsplit(":", 1)
    flipped = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    for bad in (f"{prefix}:{flipped}", token[:-8], "F84.0", "v1:k000:abc", f"{prefix}:!!"):
        with pytest.raises(FieldEncryptionError) as refused:
            fields.decrypt(bad, table="t", column="c", row=[1])
        assert "F84.0" not in str(refused.value)


def test_a_retired_or_foreign_key_is_named_not_guessed() -> None:
    token = fields.encrypt("E10.7", table="t", column="c", row=[1])
    old = keyring.load().active_id
    keyring.add_key()
    keyring.remove_material(old)
    with pytest.raises(KeyringError, match=f"key {old} was retired"):
        fields.decrypt(token, table="t", column="c", row=[1])
    with pytest.raises(KeyringError, match="not in the keyring"):
        fields.decrypt(token.replace(old, "k" + "0" * 12), table="t", column="c", row=[1])


def test_a_secret_never_shows_itself(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret("KZ86125KZT5004100100")
    shown = [str(secret), repr(secret), f"{secret}", f"{secret!r}", f"{secret:>30}", format(secret)]
    shown.append(repr({"iban": secret, "list": [secret]}))
    assert all("KZ86" not in s for s in shown)
    assert str(secret) == "***"
    with caplog.at_level(logging.INFO):
        logging.getLogger("qamqor.test").info("paying into %s / %r", secret, secret)
    assert "KZ86" not in caplog.text
    try:
        raise ValueError(f"no account {secret}")
    except ValueError as exc:
        assert "KZ86" not in str(exc)
    with pytest.raises(TypeError) as refused:
        json.dumps({"iban": secret})
    assert "KZ86" not in str(refused.value)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    assert secret.reveal() == "KZ86125KZT5004100100"
    assert secret == Secret("KZ86125KZT5004100100") and secret != Secret("other")
    with pytest.raises(TypeError):
        hash(secret)


# --- the column type ------------------------------------------------------------------------


def test_special_columns_of_the_catalogue_are_exactly_the_encrypted_fact_columns() -> None:
    special = {
        (f"fact_{code}", column.name)
        for code, source in sources().items()
        for column in source.columns
        if column.special
    }
    encrypted = {
        (target.table.name, target.column.name)
        for target in fields.encrypted_columns()
        if target.table.name.startswith("fact_")
    }
    assert special == encrypted == {("fact_disability", "diagnosis")}
    names = {target.name for target in fields.encrypted_columns()}
    assert {"registry_rejection.raw_sealed", "citizen_bank_account.iban"} <= names


def test_a_plain_value_is_refused_by_the_column_without_being_quoted(engine: Engine) -> None:
    from qamqor.payouts.models import CitizenBankAccount

    with pytest.raises(FieldEncryptionError) as refused:
        CitizenBankAccount(
            iin=valid_iin(1),
            iban="KZ86125KZT5004100100",
            bic="HSBKKZKX",
            added_at=dt.datetime.now(dt.UTC),
        )
    assert "KZ86" not in str(refused.value)
    account = CitizenBankAccount(iin=valid_iin(1), bic="HSBKKZKX", added_at=dt.datetime.now(dt.UTC))
    with pytest.raises(FieldEncryptionError):
        account.iban = Secret("KZ86125KZT5004100100")  # type: ignore[assignment]
    # the type refuses it too, for Core statements that bypass the ORM, and the error does
    # not quote the statement's parameters as SQLAlchemy's errors otherwise do
    table = FACT_TABLES["disability"]
    for parameters in ({"diagnosis": "G80.1"}, [{"diagnosis": "G80.1"}, {"diagnosis": "Q90.9"}]):
        with pytest.raises(FieldEncryptionError) as refused, engine.begin() as conn:
            conn.execute(table.insert(), parameters)
        told = "".join(traceback.format_exception(refused.value))
        assert "never a plain value" in told
        assert "G80.1" not in told and "Q90.9" not in told


# --- ingest ---------------------------------------------------------------------------------


def _facts(engine: Engine) -> list[DisabilityFact]:
    with session_scope(engine) as session:
        return list(session.scalars(select(DisabilityFact).order_by(DisabilityFact.line_no)))


def test_ingest_stores_diagnoses_encrypted_and_bound_to_their_row(
    engine: Engine, tmp_path: Path
) -> None:
    rows = disability_rows(12)
    rows[3]["diagnosis"] = ""  # optional
    report = ingest_file(write_disability(tmp_path / "dis.csv", rows), engine=engine, today=TODAY)
    assert (report.facts, report.rejections) == (12, 0)
    assert report.phases["seal"] >= 0

    facts = _facts(engine)
    for fact, row in zip(facts, rows, strict=True):
        if not row["diagnosis"]:
            assert fact.diagnosis is None
            assert fields.reveal(fact, "diagnosis") is None
            continue
        assert fact.diagnosis is not None and fact.diagnosis.startswith("v1:")
        revealed = fields.reveal(fact, "diagnosis")
        assert revealed is not None and revealed.reveal() == row["diagnosis"]
    stored = every_text(engine)
    assert not [code for code in DIAGNOSES if code in stored]

    # a diagnosis copied onto another person's fact does not decrypt there
    first, second = facts[0], facts[1]
    with engine.begin() as conn:
        conn.execute(
            update(DisabilityFact)
            .where(DisabilityFact.id == second.id)
            .values(diagnosis=first.diagnosis)
        )
    moved = next(f for f in _facts(engine) if f.id == second.id)
    with pytest.raises(FieldEncryptionError, match="copied from another row"):
        fields.reveal(moved, "diagnosis")


def test_rejected_rows_of_a_special_source_keep_their_text_encrypted(
    engine: Engine, tmp_path: Path
) -> None:
    rows = disability_rows(6)
    rows[1]["diagnosis"] = BAD_DIAGNOSIS
    rows[4]["iin"] = rows[4]["iin"][:-1] + str((int(rows[4]["iin"][-1]) + 1) % 10)
    path = write_disability(tmp_path / "dis.csv", rows)
    content = path.read_text("utf-8")
    extra = content + "only;three;fields\n"  # a structural rejection too
    path.write_text(extra, "utf-8")

    report = ingest_file(path, engine=engine, today=TODAY)

    assert (report.facts, report.rejections) == (4, 3)
    assert report.rejection_reasons["unknown_code:diagnosis"] == 1
    with session_scope(engine) as session:
        rejected = list(session.scalars(select(Rejection).order_by(Rejection.line_no)))
        assert [r.line_no for r in rejected] == [3, 6, 8]
        lines = extra.splitlines()
        for rejection in rejected:
            assert rejection.raw == RAW_SEALED
            assert rejection.raw_sealed is not None
            revealed = fields.reveal(rejection, "raw_sealed")
            assert revealed is not None
            assert revealed.reveal() == lines[rejection.line_no - 1]
            assert BAD_DIAGNOSIS not in rejection.reasons
    stored = every_text(engine)
    assert BAD_DIAGNOSIS not in stored
    assert not [code for code in DIAGNOSES if code in stored]

    # what an officer lists: reasons and a marker, never the diagnosis
    listing = CliRunner().invoke(app, ["batches", "rejections", str(report.batch_id), "--json"])
    assert listing.exit_code == 0, listing.output
    assert json.loads(listing.output)["items"][0]["raw"] == RAW_SEALED
    assert BAD_DIAGNOSIS not in listing.output
    assert not [code for code in DIAGNOSES if code in listing.output]


def test_rejections_of_other_sources_stay_readable(engine: Engine, tmp_path: Path) -> None:
    from tests.registry.builders import population_rows, write_csv

    rows = population_rows(3)
    rows[0]["sex"] = "X"
    report = ingest_file(write_csv(tmp_path / "pop.csv", rows), engine=engine, today=TODAY)
    with session_scope(engine) as session:
        (rejection,) = session.scalars(select(Rejection)).all()
        assert rejection.raw_sealed is None
        assert rejection.raw.startswith("POP-00000000;")
    assert report.rejections == 1


def test_a_failed_ingest_says_why_without_the_values(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keyring.load(create=True)
    path = keyring.keyring_path()
    path.chmod(0o644)  # an unusable keyring: sealing cannot happen, so nothing is stored
    keyring.forget_cache()
    rows = disability_rows(4)
    rows[2]["diagnosis"] = BAD_DIAGNOSIS
    with caplog.at_level(logging.DEBUG), pytest.raises(QamqorError) as failed:
        ingest_file(write_disability(tmp_path / "dis.csv", rows), engine=engine, today=TODAY)
    message = str(failed.value) + repr(failed.value) + caplog.text
    assert "chmod 600" in message
    assert BAD_DIAGNOSIS not in message
    assert not [code for code in DIAGNOSES if code in message]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM fact_disability")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM registry_batch")).scalar_one() == 0


# --- rotation and retirement ----------------------------------------------------------------


def _seed(engine: Engine, tmp_path: Path, n: int = 25) -> dict[str, Any]:
    from qamqor.payouts.service import set_bank_account

    rows = disability_rows(n)
    rows[2]["diagnosis"] = BAD_DIAGNOSIS
    ingest_file(write_disability(tmp_path / "dis.csv", rows), engine=engine, today=TODAY)
    with session_scope(engine) as session:
        set_bank_account(session, valid_iin(501), "KZ86 125K ZT50 0410 0100", "KCJBKZKX")
    return {"rows": rows}


def _plain_values(engine: Engine) -> dict[str, dict[Any, str]]:
    with engine.connect() as conn:
        return {
            target.name: {k: v.reveal() for k, v in fields.iter_decrypted(conn, target)}
            for target in fields.encrypted_columns()
        }


def test_rotation_reencrypts_everything_and_frees_the_old_key(
    engine: Engine, tmp_path: Path
) -> None:
    _seed(engine, tmp_path)
    before = _plain_values(engine)
    old = keyring.load().active_id
    assert set(fields.usage_by_key(engine)) == {old}
    with pytest.raises(KeyringError, match="still seals 26 values"):
        fields.retire_key(engine, old)
    with pytest.raises(KeyringError, match="active key"):
        keyring.remove_material(old)

    seen: list[tuple[str, int, int]] = []
    report = fields.rotate(engine, batch_rows=4, progress=lambda *a: seen.append(a))

    new = keyring.load().active_id
    assert report.key_id == new != old
    assert report.reencrypted == {
        "fact_disability.diagnosis": 24,
        "registry_rejection.raw_sealed": 1,
        "citizen_bank_account.iban": 1,
        "registry_event.payload_sealed": 0,
    }
    assert report.remaining == {}
    assert ("fact_disability.diagnosis", 24, 24) in seen
    assert len([s for s in seen if s[0] == "fact_disability.diagnosis"]) == 6  # 4 a batch
    assert _plain_values(engine) == before
    assert set(fields.usage_by_key(engine)) == {new}

    fields.retire_key(engine, old)
    assert keyring.load().keys[old].retired
    assert _plain_values(engine) == before


def test_a_rotation_stopped_halfway_leaves_every_value_readable(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(engine, tmp_path)
    before = _plain_values(engine)
    old = keyring.load().active_id
    calls = 0
    real = fields.encrypt

    def failing(*args: Any, **kwargs: Any) -> str:
        nonlocal calls
        calls += 1
        # the bank account (1 value) goes first, then two batches of 4 diagnoses commit
        # and the third batch dies halfway
        if calls > 9:
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(fields, "encrypt", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        fields.rotate(engine, batch_rows=4)
    monkeypatch.setattr(fields, "encrypt", real)
    new = keyring.load().active_id
    usage = fields.usage_by_key(engine)
    assert usage == {new: 9, old: 17}
    assert _plain_values(engine) == before  # both keys in the ring: all readable

    report = fields.reencrypt(engine)
    assert sum(report.reencrypted.values()) == 17
    assert fields.usage_by_key(engine) == {new: 26}
    assert _plain_values(engine) == before


def test_a_value_written_under_the_old_key_meanwhile_is_reported_and_resumed(
    engine: Engine, tmp_path: Path
) -> None:
    _seed(engine, tmp_path)
    stale = keyring.load()  # a process that has not seen the rotation yet
    report = fields.rotate(engine)
    assert report.remaining == {}
    with session_scope(engine) as session:
        fact = session.scalars(select(DisabilityFact).limit(1)).one()
        fact.diagnosis = fields.encrypt(
            "G80.1",
            table="fact_disability",
            column="diagnosis",
            row=[fact.batch_id, fact.line_no],
            keyring=stale,
        )
    with pytest.raises(KeyringError, match="still seals 1 values"):
        fields.retire_key(engine, stale.active_id)
    resumed = fields.reencrypt(engine)
    assert resumed.reencrypted["fact_disability.diagnosis"] == 1
    fields.retire_key(engine, stale.active_id)


def test_keys_commands(engine: Engine, tmp_path: Path) -> None:
    _seed(engine, tmp_path, n=5)
    runner = CliRunner()
    old = keyring.load().active_id

    listed = runner.invoke(app, ["keys", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert data["keys"] == [
        {
            "id": old,
            "status": "active",
            "created_at": data["keys"][0]["created_at"],
            "retired_at": None,
            "values": 6,
        }
    ]

    refused = runner.invoke(app, ["keys", "retire", old])
    assert refused.exit_code == 1
    assert "active key" in refused.output or "still seals" in refused.output

    rotated = runner.invoke(app, ["keys", "rotate", "--json"])
    assert rotated.exit_code == 0, rotated.output
    new = json.loads(rotated.output)["key_id"]
    assert new != old

    retired = runner.invoke(app, ["keys", "retire", old])
    assert retired.exit_code == 0, retired.output
    statuses = {
        k["id"]: (k["status"], k["values"])
        for k in json.loads(runner.invoke(app, ["keys", "list", "--json"]).output)["keys"]
    }
    assert statuses == {old: ("retired", 0), new: ("active", 6)}

    added = runner.invoke(app, ["keys", "new"])
    assert added.exit_code == 0
    resumed = runner.invoke(app, ["keys", "rotate", "--resume", "--json"])
    assert json.loads(resumed.output)["reencrypted"]["fact_disability.diagnosis"] == 4

    with engine.connect() as conn:
        logged = conn.execute(
            text("SELECT payload FROM audit_entry WHERE kind = 'keyring' ORDER BY leaf_index")
        ).scalars()
        events = [json.loads(payload) for payload in logged]
    assert [e["event"] for e in events] == ["rotate", "retire", "new_key", "resume_rotation"]
    assert events[0]["key_id"] == new and events[1]["key_id"] == old
    key_file = keyring.keyring_path().read_text()
    assert not [
        e
        for e in events
        if any(part in key_file for part in map(str, e.values()) if len(part) > 20)
    ]


def test_diagnoses_must_be_icd10_codes(engine: Engine, tmp_path: Path) -> None:
    good = ["F72", "G80.1", "E10.7", "U07.1", "M51.16", " Q90.9 "]
    bad = ["g80.1", "G8.1", "G80.", "80.1", "G80.12345", "G80,1", "ДЦП"]
    rows = disability_rows(len(good) + len(bad), diagnoses=good + bad)
    report = ingest_file(write_disability(tmp_path / "dis.csv", rows), engine=engine, today=TODAY)
    assert (report.facts, report.rejections) == (len(good), len(bad))
    assert report.rejection_reasons == {"unknown_code:diagnosis": len(bad)}
    revealed = [fields.reveal(f, "diagnosis") for f in _facts(engine)]
    assert [s.reveal() for s in revealed if s is not None] == [g.strip() for g in good]


def test_synth_writes_plausible_diagnoses_that_ingest_accepts(
    engine: Engine, tmp_path: Path
) -> None:
    import pyarrow.csv as pacsv

    from qamqor.synth.economy import DIAGNOSES
    from qamqor.synth.generate import generate

    generate(tmp_path / "out", 3_000, seed=5, defect_rates=dict.fromkeys(DEFECTS, 0.0))
    extract = pacsv.read_csv(
        tmp_path / "out" / "disability.csv",
        read_options=pacsv.ReadOptions(encoding="cp1251"),
        parse_options=pacsv.ParseOptions(delimiter=";"),
        convert_options=pacsv.ConvertOptions(column_types={"diagnosis": "string"}),
    ).to_pylist()
    assert len(extract) > 200
    with_code = [r for r in extract if r["diagnosis"]]
    assert 0.85 < len(with_code) / len(extract) < 0.97
    for row in with_code:
        assert row["diagnosis"] in DIAGNOSES[str(row["disability_group"])][0]
    report = ingest_file(tmp_path / "out" / "disability.csv", engine=engine, today=TODAY)
    assert report.rejections == 0 and report.facts == len(extract)
    revealed = sorted(
        s.reveal() for f in _facts(engine) if (s := fields.reveal(f, "diagnosis")) is not None
    )
    assert revealed == sorted(r["diagnosis"] for r in with_code)
