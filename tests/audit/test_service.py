"""The audit service on both databases: appends, roots, proofs, checkpoints, redaction."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from qamqor.audit import merkle, service
from qamqor.audit.models import AuditEntry, AuditNode
from qamqor.audit.note import CheckpointBody, open_checkpoint
from qamqor.kit.db import session_scope
from qamqor.kit.errors import NotFoundError
from tests.audit.builders import entry, fill_log


def _leaf_hashes(engine: Engine) -> list[bytes]:
    with session_scope(engine) as session:
        rows = session.execute(select(AuditEntry.leaf_hash).order_by(AuditEntry.leaf_index))
        return [bytes(h) for (h,) in rows]


def test_append_returns_consecutive_indices_and_stores_canonical_json(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert service.append(session, "access", "household:7", {"b": 2, "a": "ә ң"}) == 0
        assert service.append(session, "decision", None, {"x": [1, 2]}) == 1
        assert service.append_many(session, [entry(i) for i in range(5)]) == [2, 3, 4, 5, 6]
        assert service.append_many(session, []) == []
    with session_scope(engine) as session:
        first = service.get_entry(session, 0)
        assert first.payload == '{"a":"ә ң","b":2}'
        assert first.subject == "household:7"
        assert first.recorded_at.tzinfo is not None
        data = service.leaf_data(0, "access", "household:7", first.recorded_at, first.payload)
        assert json.loads(data) == {
            "index": 0,
            "kind": "access",
            "payload": {"a": "ә ң", "b": 2},
            "recorded_at": service.format_time(first.recorded_at),
            "subject": "household:7",
        }
        assert data == service.canonical_json(json.loads(data)).encode()
        assert bytes(first.leaf_hash) == hashlib.sha256(b"\x00" + data).digest()
        assert service.tree_size(session) == 7


def test_append_refuses_bad_input_before_taking_an_index(engine: Engine) -> None:
    with session_scope(engine) as session:
        for kind, subject, payload in [
            ("Access", None, {}),
            ("", None, {}),
            ("access", "", {}),
            ("access", "x" * 129, {}),
            ("access", None, {"n": float("nan")}),
            ("access", None, {"when": object()}),
            ("access", None, [1, 2]),
        ]:
            with pytest.raises(service.AuditError):
                service.append(session, kind, subject, payload)  # type: ignore[arg-type]
        assert service.append(session, "access", None, {}) == 0


def test_the_stored_tree_matches_the_rfc_root_at_every_size(engine: Engine) -> None:
    fill_log(engine, 1)
    with session_scope(engine) as session:
        service.append_many(session, [entry(i) for i in range(1, 23)])
    with session_scope(engine) as session:
        service.append_many(session, [entry(i) for i in range(23, 41)])
    leaves = _leaf_hashes(engine)
    assert len(leaves) == 41
    with session_scope(engine) as session:
        for size in range(0, 42):
            assert service.root_hash(session, size) == merkle.root_of_leaf_hashes(leaves[:size])
        nodes = session.execute(select(func.count()).select_from(AuditNode)).scalar_one()
        assert nodes == 41 - (41).bit_count()  # every complete inner node, once


def test_inclusion_and_consistency_proofs_match_the_reference_and_verify(engine: Engine) -> None:
    with session_scope(engine) as session:
        service.append_many(session, [entry(i) for i in range(37)])
    leaves = _leaf_hashes(engine)
    with session_scope(engine) as session:
        for size in (1, 2, 5, 8, 13, 32, 37):
            for index in range(size):
                proof = service.inclusion_proof(session, index, size)
                assert proof.hashes == merkle.inclusion_proof(index, leaves[:size])
                assert proof.root_hash == merkle.root_of_leaf_hashes(leaves[:size])
                assert proof.verifies()
            for first in range(0, size + 1):
                consistency = service.consistency_proof(session, first, size)
                assert consistency.hashes == merkle.consistency_proof(first, leaves[:size])
                assert consistency.verifies()
        assert service.inclusion_proof(session, 36).tree_size == 37
        with pytest.raises(NotFoundError):
            service.inclusion_proof(session, 37)
        with pytest.raises(NotFoundError):
            service.inclusion_proof(session, 5, 5)
        with pytest.raises(service.AuditError):
            service.inclusion_proof(session, 1, 38)
        with pytest.raises(service.AuditError):
            service.consistency_proof(session, 9, 8)


def test_checkpoint_signs_the_tree_head_and_is_reused_until_the_tree_grows(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        empty = service.checkpoint(session)
        assert (empty.tree_size, empty.root_hash) == (0, merkle.EMPTY_ROOT)
        service.append_many(session, [entry(i) for i in range(6)])
    with session_scope(engine) as session:
        signed = service.checkpoint(session)
        assert service.checkpoint(session) == signed
        assert service.latest_checkpoint(session) == signed
    body = open_checkpoint(signed.note, service.verifier(), "qamqor.local/audit")
    assert body == CheckpointBody("qamqor.local/audit", 6, signed.root_hash)
    root_line = base64.b64encode(signed.root_hash).decode()
    assert signed.note.startswith(f"qamqor.local/audit\n6\n{root_line}\n\n— qamqor.local/audit ")
    assert signed.root_hash == merkle.root_of_leaf_hashes(_leaf_hashes(engine))
    assert stat.S_IMODE(service.key_path().stat().st_mode) == 0o600
    assert service.key_path().read_text().startswith("PRIVATE+KEY+qamqor.local/audit+")


def test_a_rolled_back_append_leaves_no_trace(engine: Engine) -> None:
    fill_log(engine, 3)
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        service.append_many(session, [entry(i) for i in range(3, 9)])
        raise RuntimeError("the caller's work failed")
    with session_scope(engine) as session:
        assert service.tree_size(session) == 3
        assert service.append(session, *entry(3)) == 3
        assert service.verify(session).ok


def test_entries_of_a_subject_are_found_by_index(engine: Engine) -> None:
    fill_log(engine, 12)
    with session_scope(engine) as session:
        found = service.entries_of_subject(session, "household:1")
        assert [e.leaf_index for e in found] == [1, 7, 10]
        assert [e.leaf_index for e in service.entries_of_subject(session, "x")] == []


def test_redaction_removes_the_payload_and_the_log_still_verifies(engine: Engine) -> None:
    fill_log(engine, 6, checkpoints=(6,))
    with session_scope(engine) as session:
        before = service.get_entry(session, 2)
        removed = before.payload
        leaf = bytes(before.leaf_hash)
        at = service.redact(session, 2, "retention period over")
        assert at == 6
    with session_scope(engine) as session:
        entry_2 = service.get_entry(session, 2)
        assert entry_2.payload is None
        assert bytes(entry_2.leaf_hash) == leaf
        record = json.loads(service.get_entry(session, 6).payload or "")
        assert record["index"] == 2
        assert record["reason"] == "retention period over"
        assert record["removed_sha256"] == hashlib.sha256((removed or "").encode()).hexdigest()
        assert service.get_entry(session, 6).kind == "redaction"
        assert service.inclusion_proof(session, 2).verifies()
        service.checkpoint(session)
        report = service.verify(session)
        assert report.ok, report.problems
        assert report.redacted == 1
        with pytest.raises(service.AuditError, match="already redacted"):
            service.redact(session, 2, "again")
        with pytest.raises(service.AuditError, match="redaction entry"):
            service.redact(session, 6, "hide the redaction")
        with pytest.raises(NotFoundError):
            service.redact(session, 99, "no such entry")


def test_verify_of_an_intact_log_is_clean(engine: Engine) -> None:
    fill_log(engine, 19, checkpoints=(1, 8, 19))
    with session_scope(engine) as session:
        earlier = [service.latest_checkpoint(session)]
        service.append_many(session, [entry(i) for i in range(19, 30)])
    with session_scope(engine) as session:
        report = service.verify(session, [c.note for c in earlier if c])
    assert report.ok, report.problems
    assert (report.tree_size, report.entries_checked, report.nodes_checked) == (30, 30, 26)
    assert (report.checkpoints_checked, report.published_checked) == (3, 1)
    assert report.unsigned_entries == 11
    assert report.root_hash == merkle.root_of_leaf_hashes(_leaf_hashes(engine))


def test_big_batches_give_the_same_tree_as_single_appends(engine: Engine) -> None:
    # Batches of BULK_FROM or more skip SQLAlchemy (COPY, raw executemany): same tree.
    size = service.BULK_FROM * 3 + 5
    for i in range(7):
        with session_scope(engine) as session:
            service.append(session, *entry(i))
    with session_scope(engine) as session:
        assert service.append_many(session, [entry(i) for i in range(7, size)]) == list(
            range(7, size)
        )
    with session_scope(engine) as session:
        service.checkpoint(session)
        report = service.verify(session)
        assert report.ok, report.problems
        assert report.nodes_checked == size - size.bit_count()
        stored = service.get_entry(session, size - 1)
        assert stored.payload == service.canonical_json(entry(size - 1)[2])
        assert stored.recorded_at.tzinfo is not None
        for index in (0, 6, 7, size // 2, size - 1):
            assert service.inclusion_proof(session, index).verifies()
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL stores a typed timestamptz; SQLite stores the text SQLAlchemy wrote
    # Stored in the same format: a single append (index 6) and a bulk one (index 7).
    with engine.connect() as conn:
        raw = conn.execute(
            text(
                "SELECT leaf_index, CAST(recorded_at AS TEXT) FROM audit_entry "
                "WHERE leaf_index IN (6, 7) ORDER BY leaf_index"
            )
        ).all()
    shapes = [re.sub(r"\d", "9", stored) for _, stored in raw]
    assert shapes[0] == shapes[1], raw
