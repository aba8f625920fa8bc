"""How well ingest and the quality checks find the defects synth injected (recall, precision).

Each defect class the generator injects is caught either at ingest (a rejection reason, or an
exact duplicate) or by a quality check; ``CAUGHT_BY`` says which. Recall counts injected
instances found; an instance is *masked* when the same person also carries a defect that makes
ingest reject their rows (a broken IIN check digit, mojibake), because then no check can see
it — recall is reported with and without those. Precision counts findings explained by an
injected defect of a class the check is meant to catch, or of a class that causes it (a member
whose population row was rejected has no person record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from qamqor.kit.errors import InputFileError
from qamqor.quality.models import QualityIssue, QualityIssueSubject
from qamqor.registry.models import Batch, Rejection

REJECTING = ("invalid_iin_check_digit", "mojibake")
# defect class -> (how it is caught, what it is matched on)
CAUGHT_BY: dict[str, tuple[str, str]] = {
    "invalid_iin_check_digit": ("ingest:check_digit", "record"),
    "mojibake": ("ingest:mojibake", "record"),
    "duplicate_rows": ("ingest:duplicate", "count"),
    "person_in_two_households": ("person_in_two_households", "iin"),
    "deceased_still_listed": ("deceased_member", "iin"),
    "income_after_death": ("income_after_death", "iin"),
    "missing_income_months": ("employed_without_income", "iin"),
    "stale_records": ("employed_without_income", "iin"),
    "birth_date_iin_mismatch": ("iin_birth_mismatch", "iin"),
    "duplicate_person": ("duplicate_person", "iin"),
}
# check -> defect classes whose instances explain its findings, and the match key
EXPLAINED_BY: dict[str, tuple[tuple[str, ...], str]] = {
    "person_in_two_households": (("person_in_two_households",), "iin"),
    "deceased_member": (("deceased_still_listed",), "iin"),
    "income_after_death": (("income_after_death",), "iin"),
    # a wage row rejected at ingest leaves the month without wage, as a missing one would
    "employed_without_income": (("missing_income_months", "stale_records", *REJECTING), "iin"),
    "iin_birth_mismatch": (("birth_date_iin_mismatch",), "iin"),
    "member_without_person_record": (REJECTING, "iin"),
    "child_without_adult": (REJECTING, "household_id"),
    "duplicate_person": (("duplicate_person",), "iin"),
    "stale_source": ((), "iin"),
}


def _arrow(rows: list[tuple[Any, ...]], names: list[str]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pa.table(
        {n: pa.array(list(c), pa.string()) for n, c in zip(names, columns, strict=True)}
    )


def evaluate(session: Session, synth_dir: Path) -> dict[str, Any]:
    defects_path = synth_dir / "truth" / "defects.parquet"
    if not defects_path.exists():
        raise InputFileError(f"{defects_path} not found: pass the directory `qamqor synth` wrote")
    subjects = session.execute(
        select(
            QualityIssue.check_id,
            QualityIssue.id,
            QualityIssueSubject.iin,
            QualityIssueSubject.household_id,
        )
        .join(QualityIssueSubject, QualityIssueSubject.issue_id == QualityIssue.id, isouter=True)
        .where(QualityIssue.status == "open")
    ).all()
    rejections = session.execute(
        select(Batch.source, Rejection.source_record_id, Rejection.reasons).join(
            Batch, Batch.id == Rejection.batch_id
        )
    ).all()
    duplicates = {s: d for s, d in session.execute(select(Batch.source, Batch.duplicates))}
    con = duckdb.connect()
    try:
        con.register(
            "subject",
            _arrow(
                [(c, str(i), iin, h) for c, i, iin, h in subjects],
                ["check_id", "issue_id", "iin", "household_id"],
            ),
        )
        con.register(
            "rejection",
            _arrow([tuple(r) for r in rejections], ["source", "record_id", "reasons"]),
        )
        con.execute(
            f"CREATE TABLE defect AS SELECT * FROM read_parquet('{defects_path.as_posix()}')"
        )
        con.execute(
            "CREATE TABLE masked AS SELECT DISTINCT iin FROM defect WHERE defect IN "
            f"({', '.join(repr(d) for d in REJECTING)})"
        )
        recall = []
        found_total = injected_total = 0
        for defect, (caught_by, match) in CAUGHT_BY.items():
            injected = int(
                con.execute("SELECT count(*) FROM defect WHERE defect = ?", [defect]).fetchall()[0][
                    0
                ]
            )
            masked = 0
            if match == "record":
                reason = caught_by.split(":", 1)[1]
                found = con.execute(
                    "SELECT count(*) FROM defect d WHERE d.defect = ? AND EXISTS (SELECT 1 FROM "
                    "rejection r WHERE r.source = d.source AND r.record_id = d.record_id "
                    "AND r.reasons LIKE ?)",
                    [defect, f"%{reason}%"],
                ).fetchall()[0][0]
            elif match == "count":
                per_source = con.execute(
                    "SELECT source, count(*) FROM defect WHERE defect = ? GROUP BY source",
                    [defect],
                ).fetchall()
                found = sum(min(n, int(duplicates.get(s, 0) or 0)) for s, n in per_source)
            else:
                found, masked = con.execute(
                    "SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM subject s WHERE "
                    "s.check_id = ? AND s.iin = d.iin)), count(*) FILTER (WHERE d.iin IN "
                    "(SELECT iin FROM masked) AND NOT EXISTS (SELECT 1 FROM subject s WHERE "
                    "s.check_id = ? AND s.iin = d.iin)) FROM defect d WHERE d.defect = ?",
                    [caught_by, caught_by, defect],
                ).fetchall()[0]
            found, masked = int(found), int(masked)
            found_total += found
            injected_total += injected
            visible = injected - masked
            recall.append(
                {
                    "defect": defect,
                    "caught_by": caught_by,
                    "injected": injected,
                    "found": found,
                    "masked": masked,
                    "recall": round(found / injected, 6) if injected else None,
                    "recall_unmasked": round(found / visible, 6) if visible else None,
                }
            )
        precision = []
        findings_total = true_total = 0
        for check, (classes, key) in EXPLAINED_BY.items():
            names = ", ".join(repr(c) for c in classes) or "NULL"
            findings, true = con.execute(
                f"SELECT count(DISTINCT issue_id), count(DISTINCT issue_id) FILTER (WHERE "
                f"EXISTS (SELECT 1 FROM defect d WHERE d.defect IN ({names}) "
                f"AND d.{key} = s.{key})) FROM subject s WHERE s.check_id = ?",
                [check],
            ).fetchall()[0]
            findings, true = int(findings), int(true)
            findings_total += findings
            true_total += true
            precision.append(
                {
                    "check": check,
                    "findings": findings,
                    "true": true,
                    "precision": round(true / findings, 6) if findings else None,
                }
            )
        for caught_by, reason, defect in (
            ("ingest:check_digit", "check_digit", "invalid_iin_check_digit"),
            ("ingest:mojibake", "mojibake", "mojibake"),
        ):
            findings, true = con.execute(
                "SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM defect d WHERE "
                "d.defect = ? AND d.source = r.source AND d.record_id = r.record_id)) "
                "FROM rejection r WHERE r.reasons LIKE ?",
                [defect, f"%{reason}%"],
            ).fetchall()[0]
            findings_total += int(findings)
            true_total += int(true)
            precision.append(
                {
                    "check": caught_by,
                    "findings": int(findings),
                    "true": int(true),
                    "precision": round(true / findings, 6) if findings else None,
                }
            )
    finally:
        con.close()
    return {
        "recall": recall,
        "precision": precision,
        "overall": {
            "recall": round(found_total / injected_total, 6) if injected_total else 0.0,
            "precision": round(true_total / findings_total, 6) if findings_total else 1.0,
        },
    }
