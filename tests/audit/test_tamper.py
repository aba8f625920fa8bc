"""Tampering with the audit tables directly in SQL, on both databases: verify must see it all.

Each case builds the same log (13 entries, checkpoints at 8 and 13), changes the tables with
raw SQL as someone with database access could, then checks that ``service.verify`` reports
the expected problems and that ``qamqor audit verify`` exits 1 naming them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from typer.testing import CliRunner

from qamqor.audit import merkle, service
from qamqor.audit.models import AuditEntry
from qamqor.audit.note import Signer
from qamqor.cli import app
from qamqor.kit.db import session_scope
from tests.audit.builders import fill_log

runner = CliRunner()
SIZE = 13


@pytest.fixture
def log(engine: Engine) -> Engine:
    fill_log(engine, SIZE, checkpoints=(8, SIZE))
    with session_scope(engine) as session:
        assert service.verify(session).ok
    return engine


def _sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def _scalar(engine: Engine, statement: str, **params: object) -> object:
    with engine.connect() as conn:
        return conn.execute(text(statement), params).scalar_one()


def _codes(engine: Engine, published: list[str] | None = None) -> list[str]:
    with session_scope(engine) as session:
        report = service.verify(session, published)
    return [p.code for p in report.problems]


def _cli_codes(paths: list[Path] | None = None) -> tuple[int, list[str]]:
    args = ["audit", "verify", "--json"]
    for path in paths or []:
        args += ["--checkpoint", str(path)]
    result = runner.invoke(app, args)
    report = json.loads(result.stdout)
    return result.exit_code, [p["code"] for p in report["problems"]]


def _swap_indices(conn: Connection, a: int, b: int) -> None:
    # three steps: PostgreSQL checks the primary key row by row
    for old, new in ((a, -1), (b, a), (-1, b)):
        conn.execute(
            text("UPDATE audit_entry SET leaf_index = :new WHERE leaf_index = :old"),
            {"old": old, "new": new},
        )


def change_payload(engine: Engine) -> None:
    _sql(
        engine,
        "UPDATE audit_entry SET payload = replace(payload, 'officer-5', 'officer-9') "
        "WHERE leaf_index = 5",
    )


def change_payload_keep_json_equal(engine: Engine) -> None:
    # Same JSON value, other spelling: the leaf commits to the exact canonical text.
    _sql(
        engine,
        "UPDATE audit_entry SET payload = replace(payload, ',', ', ') WHERE leaf_index = 2",
    )


def change_subject(engine: Engine) -> None:
    _sql(engine, "UPDATE audit_entry SET subject = 'household:99' WHERE leaf_index = 4")


def change_time(engine: Engine) -> None:
    _sql(
        engine,
        "UPDATE audit_entry SET recorded_at = :t WHERE leaf_index = 1",
        t="2020-01-01 00:00:00+00:00",
    )


def change_leaf_hash(engine: Engine) -> None:
    _sql(engine, "UPDATE audit_entry SET leaf_hash = :h WHERE leaf_index = 6", h=b"\x07" * 32)


def change_last_leaf_hash(engine: Engine) -> None:
    # Leaf 12 of 13 has no parent node yet: only the checkpoint's root can catch it.
    _sql(engine, "UPDATE audit_entry SET leaf_hash = :h WHERE leaf_index = 12", h=b"\x07" * 32)


def delete_middle_row(engine: Engine) -> None:
    _sql(engine, "DELETE FROM audit_entry WHERE leaf_index = 3")


def delete_last_row(engine: Engine) -> None:
    _sql(engine, "DELETE FROM audit_entry WHERE leaf_index = :i", i=SIZE - 1)


def delete_last_row_and_cover_up(engine: Engine) -> None:
    # Also fix the head and drop the newest checkpoint: the older one still binds the rest,
    # and a published copy of the newest one catches the truncation (see the test below).
    _sql(engine, "DELETE FROM audit_entry WHERE leaf_index = :i", i=SIZE - 1)
    _sql(engine, "UPDATE audit_head SET tree_size = :n", n=SIZE - 1)
    _sql(engine, "DELETE FROM audit_checkpoint WHERE tree_size = :n", n=SIZE)


def insert_row_at_end(engine: Engine) -> None:
    with engine.begin() as conn:
        leaf = merkle.leaf_hash(b"forged")
        conn.execute(
            text(
                "INSERT INTO audit_entry (leaf_index, kind, subject, recorded_at, payload, "
                "leaf_hash) VALUES (:i, 'access', 'household:1', :t, '{}', :h)"
            ),
            {"i": SIZE, "t": "2026-11-29 00:00:00+00:00", "h": leaf},
        )


def insert_row_at_negative_index(engine: Engine) -> None:
    _sql(
        engine,
        "INSERT INTO audit_entry (leaf_index, kind, subject, recorded_at, payload, leaf_hash) "
        "SELECT -1, kind, subject, recorded_at, payload, leaf_hash FROM audit_entry "
        "WHERE leaf_index = 0",
    )


def replace_row_with_valid_forgery(engine: Engine) -> None:
    # A new row 5 whose leaf hash is right for its (forged) contents.
    with session_scope(engine) as session:
        original = service.get_entry(session, 5)
        kind, subject, recorded_at = original.kind, original.subject, original.recorded_at
    forged = '{"actor":"nobody"}'
    leaf = merkle.leaf_hash(service.leaf_data(5, kind, subject, recorded_at, forged))
    _sql(engine, "DELETE FROM audit_entry WHERE leaf_index = 5")
    with session_scope(engine) as session:
        session.add(
            AuditEntry(
                leaf_index=5,
                kind=kind,
                subject=subject,
                recorded_at=recorded_at,
                payload=forged,
                leaf_hash=leaf,
            )
        )


def swap_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        _swap_indices(conn, 3, 9)


def swap_sibling_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        _swap_indices(conn, 10, 11)


def change_node_hash(engine: Engine) -> None:
    _sql(
        engine,
        "UPDATE audit_node SET hash = :h WHERE level = 2 AND node_index = 1",
        h=b"\x01" * 32,
    )


def delete_node(engine: Engine) -> None:
    _sql(engine, "DELETE FROM audit_node WHERE level = 1 AND node_index = 4")


def insert_node(engine: Engine) -> None:
    _sql(engine, "INSERT INTO audit_node (level, node_index, hash) VALUES (1, 6, :h)", h=b"x" * 32)


def change_checkpoint_root(engine: Engine) -> None:
    _sql(engine, "UPDATE audit_checkpoint SET root_hash = :h WHERE tree_size = 8", h=b"\x02" * 32)


def change_checkpoint_signature(engine: Engine) -> None:
    note = str(_scalar(engine, "SELECT note FROM audit_checkpoint WHERE tree_size = 8"))
    signature = note.rsplit(" ", 1)[1]
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    _sql(
        engine,
        "UPDATE audit_checkpoint SET note = :n WHERE tree_size = 8",
        n=note.replace(signature, flipped),
    )


def re_sign_checkpoint_with_another_key(engine: Engine) -> None:
    note = str(_scalar(engine, "SELECT note FROM audit_checkpoint WHERE tree_size = 8"))
    body = note.split("\n\n", 1)[0] + "\n"
    forged = Signer.generate("qamqor.local/audit").sign(body)
    _sql(engine, "UPDATE audit_checkpoint SET note = :n WHERE tree_size = 8", n=forged)


def rewrite_history_consistently(engine: Engine) -> None:
    """Change a payload and rebuild every leaf hash and node so the tables agree again."""
    _sql(
        engine,
        "UPDATE audit_entry SET payload = replace(payload, 'officer-2', 'officer-0') "
        "WHERE leaf_index = 2",
    )
    with session_scope(engine) as session:
        leaves = []
        for index in range(SIZE):
            row = service.get_entry(session, index)
            leaf = service.entry_leaf_hash(row)
            assert leaf is not None
            leaves.append(leaf)
    created, _ = merkle.extend(0, [], leaves)
    with engine.begin() as conn:
        for index, leaf in enumerate(leaves):
            conn.execute(
                text("UPDATE audit_entry SET leaf_hash = :h WHERE leaf_index = :i"),
                {"h": leaf, "i": index},
            )
        conn.execute(text("DELETE FROM audit_node"))
        for level, index, h in created:
            conn.execute(
                text("INSERT INTO audit_node (level, node_index, hash) VALUES (:l, :i, :h)"),
                {"l": level, "i": index, "h": h},
            )


TAMPERS: list[tuple[Callable[[Engine], None], set[str]]] = [
    (change_payload, {"entry_hash"}),
    (change_payload_keep_json_equal, {"entry_hash"}),
    (change_subject, {"entry_hash"}),
    (change_time, {"entry_hash"}),
    (change_leaf_hash, {"entry_hash", "node_hash", "checkpoint_root"}),
    (change_last_leaf_hash, {"entry_hash", "checkpoint_root"}),
    (delete_middle_row, {"entry_missing", "checkpoint_unverifiable"}),
    (delete_last_row, {"head_size", "checkpoint_beyond_log"}),
    (insert_row_at_end, {"head_size", "entry_hash", "node_missing"}),
    (insert_row_at_negative_index, {"entry_extra"}),
    (replace_row_with_valid_forgery, {"node_hash", "checkpoint_root"}),
    (swap_rows, {"entry_hash", "node_hash", "checkpoint_root"}),
    (swap_sibling_rows, {"entry_hash", "node_hash", "checkpoint_root"}),
    (change_node_hash, {"node_hash"}),
    (delete_node, {"node_missing"}),
    (insert_node, {"node_extra"}),
    (change_checkpoint_root, {"checkpoint_mismatch", "checkpoint_root"}),
    (change_checkpoint_signature, {"checkpoint_signature"}),
    (re_sign_checkpoint_with_another_key, {"checkpoint_signature"}),
    (rewrite_history_consistently, {"checkpoint_root"}),
]


@pytest.mark.parametrize(("tamper", "expected"), TAMPERS, ids=[t.__name__ for t, _ in TAMPERS])
def test_verify_reports_each_kind_of_tampering(
    log: Engine, tamper: Callable[[Engine], None], expected: set[str]
) -> None:
    tamper(log)
    codes = _codes(log)
    assert set(codes) == expected, codes
    exit_code, cli_codes = _cli_codes()
    assert exit_code == 1
    assert cli_codes == codes


def test_cli_lists_the_problems_in_words(log: Engine) -> None:
    change_payload(log)
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1
    assert "1 problem(s)" in result.stderr
    assert "[entry_hash] entry 5 (access)" in result.stderr
    # (not a bare "OK": the root hash printed in base64 can contain those two letters)
    assert "the log verifies" not in result.stdout


def test_cli_verify_passes_on_an_intact_log(log: Engine) -> None:
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "13 entries" in result.stdout
    assert "the log verifies" in result.stdout


def test_a_published_checkpoint_catches_a_truncation_the_database_hides(
    log: Engine, tmp_path: Path
) -> None:
    published = tmp_path / "checkpoint.txt"
    published.write_text(
        str(_scalar(log, "SELECT note FROM audit_checkpoint WHERE tree_size = :n", n=SIZE))
    )
    delete_last_row_and_cover_up(log)
    assert _codes(log) == []  # leaf 12 had no inner node: the database alone looks whole
    exit_code, codes = _cli_codes([published])
    assert exit_code == 1
    assert "checkpoint_beyond_log" in codes


def test_a_published_checkpoint_catches_a_rewrite_with_all_checkpoints_replaced(
    log: Engine, tmp_path: Path
) -> None:
    published = tmp_path / "checkpoint.txt"
    published.write_text(str(_scalar(log, "SELECT note FROM audit_checkpoint WHERE tree_size = 8")))
    rewrite_history_consistently(log)
    _sql(log, "DELETE FROM audit_checkpoint")
    with session_scope(log) as session:
        service.checkpoint(session)  # the attacker has the key file too and re-signs
    assert _codes(log) == []
    exit_code, codes = _cli_codes([published])
    assert (exit_code, codes) == (1, ["checkpoint_root"])


def test_a_published_checkpoint_from_another_log_or_key_is_refused(
    log: Engine, tmp_path: Path
) -> None:
    other = Signer.generate("qamqor.local/audit")
    forged = tmp_path / "forged.txt"
    forged.write_text(other.sign("qamqor.local/audit\n1\n" + "A" * 43 + "=\n"))
    assert _cli_codes([forged]) == (1, ["published_signature"])


def test_tampering_with_a_redacted_entry_is_still_detected(log: Engine) -> None:
    with session_scope(log) as session:
        service.redact(session, 4, "retention")
        service.checkpoint(session)
    assert _codes(log) == []
    _sql(log, "UPDATE audit_entry SET subject = 'household:2' WHERE leaf_index = 4")
    assert _codes(log) == ["redaction_mismatch"]
    _sql(log, "UPDATE audit_entry SET subject = NULL WHERE leaf_index = 4")
    _sql(log, "UPDATE audit_entry SET leaf_hash = :h WHERE leaf_index = 4", h=b"\x03" * 32)
    assert set(_codes(log)) == {"redaction_mismatch", "node_hash", "checkpoint_root"}


def test_a_payload_removed_without_a_redaction_entry_is_reported(log: Engine) -> None:
    _sql(log, "UPDATE audit_entry SET payload = NULL WHERE leaf_index = 7")
    assert _codes(log) == ["redaction_unrecorded"]


def test_a_forged_redaction_entry_for_an_intact_entry_is_reported(log: Engine) -> None:
    with session_scope(log) as session:
        service.append(session, "redaction", None, {"index": 3, "reason": "forged"})
        service.checkpoint(session)
    assert _codes(log) == ["redaction_not_applied"]


def test_appends_continue_at_the_right_index_after_the_head_row_is_lost(log: Engine) -> None:
    _sql(log, "DELETE FROM audit_head")
    assert _codes(log) == ["head_size"]
    with session_scope(log) as session:
        assert service.append(session, "access", None, {"after": "head lost"}) == SIZE
    assert _codes(log) == []


def test_an_auditor_verifies_with_the_published_key_alone(log: Engine) -> None:
    published_key = runner.invoke(app, ["audit", "key"]).stdout.strip()
    service.key_path().unlink()  # the auditor has no private key file
    assert _codes(log) == ["key_missing"]  # roots still compared, signatures not checkable
    result = runner.invoke(app, ["audit", "verify", "--key", published_key])
    assert result.exit_code == 0, result.output
    other = str(Signer.generate("qamqor.local/audit").verifier)
    exit_code = runner.invoke(app, ["audit", "verify", "--key", other, "--json"])
    codes = [p["code"] for p in json.loads(exit_code.stdout)["problems"]]
    assert (exit_code.exit_code, set(codes)) == (1, {"checkpoint_signature"})
    assert runner.invoke(app, ["audit", "verify", "--key", "not a key"]).exit_code == 2
    assert not service.key_path().exists()  # verify never creates a key


def test_a_redaction_entry_naming_no_entry_is_reported(log: Engine) -> None:
    with session_scope(log) as session:
        service.append(session, "redaction", None, {"reason": "no index"})
    assert _codes(log) == ["redaction_malformed"]


def test_verify_pages_through_entries_and_nodes(
    log: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qamqor.audit import verify as verify_module

    # Pages of 3 rows: every keyset boundary of entries and of each level's nodes is crossed.
    monkeypatch.setattr(verify_module, "PAGE", 3)
    fill_log(log, 24)  # 37 entries in all
    with session_scope(log) as session:
        service.checkpoint(session)
        seen: list[tuple[int, int]] = []
        report = service.verify(session, progress=lambda done, total: seen.append((done, total)))
    assert report.ok, report.problems
    assert (report.entries_checked, report.nodes_checked) == (37, 37 - (37).bit_count())
    assert seen[-1] == (37, 37) and len(seen) == 13
    _sql(log, "UPDATE audit_node SET hash = :h WHERE level = 1 AND node_index = 16", h=b"z" * 32)
    change_payload(log)
    _sql(log, "DELETE FROM audit_entry WHERE leaf_index = 30")
    codes = _codes(log)
    assert codes == ["entry_hash", "entry_missing", "node_hash", "checkpoint_unverifiable"]
