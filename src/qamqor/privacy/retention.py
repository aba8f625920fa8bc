"""Retention: personal data past its category's period is anonymised, and the run is audited.

The policy is data (``retention.yaml``, or the file ``QAMQOR_RETENTION_POLICY`` names): per
category a period, a legal basis, and what happens to which columns. A run never deletes a row,
so counts and aggregates stay; personal values become a salted hash, NULL or empty text, and
audit-log entries past their period lose their payload through ``qamqor.audit.service.redact``
(the leaf hash stays, so the log still verifies).

One run is one transaction, owned by the caller: the anonymised rows and the audit entry that
summarises them (rows and values per category, and the SHA-256 of the removed values) commit
together or not at all. On SQLite that holds the write lock for the run; the work is done in
batches of ``BATCH_ROWS`` so memory stays flat whatever the volume. A second run over the same
data changes nothing and appends nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Column, DateTime, Table, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from qamqor.kit.errors import QamqorError
from qamqor.kit.settings import get_settings
from qamqor.privacy import keyring as keyring_module
from qamqor.privacy.fields import EncryptedString

HANDLERS = ("rows", "subject", "rejections", "audit_entries")
ACTIONS = ("hash", "null", "empty", "year_start")
HASH_MARK = "~"  # no IIN, name or date starts with it: validated facts never do
HASH_CHARS = 52  # base32 of a SHA-256 is 52 characters (256 bits)
# 5,000 rows per round trip: an executemany of 5,000 UPDATEs by primary key takes ~0.1 s on
# either database, and the batch's old values (hashed into the digest) stay a few MB.
BATCH_ROWS = 5_000
SUBJECTS_PER_BATCH = 500  # IINs per IN list (SQLite allows 32,766 parameters)
LANGUAGES = ("ru", "kk", "en")

Progress = Callable[[str, int, int], None]


class RetentionPolicyError(QamqorError):
    code = "retention_policy"


@dataclass(frozen=True)
class Period:
    years: int = 0
    days: int = 0

    def cutoff(self, as_of: dt.date) -> dt.date:
        """The first day still kept: data dated before it are past the period."""
        year = as_of.year - self.years
        # 29 February minus a year is 28 February
        day = min(as_of.day, 28) if as_of.month == 2 and as_of.day == 29 else as_of.day
        return dt.date(year, as_of.month, day) - dt.timedelta(days=self.days)

    def __str__(self) -> str:
        parts = [f"{self.years} years"] if self.years else []
        if self.days or not parts:
            parts.append(f"{self.days} days")
        return " ".join(parts)


@dataclass(frozen=True)
class Category:
    code: str
    names: dict[str, str]
    basis: dict[str, str]
    period: Period
    handler: str
    table: str | None = None
    age_column: str | None = None
    anchor: tuple[str, str] | None = None  # (table, date column)
    subject: str | None = None
    tables: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)
    kinds: tuple[str, ...] = ()
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)  # column -> values kept in


@dataclass(frozen=True)
class Policy:
    categories: tuple[Category, ...]
    sha256: str
    source: str


def _tables() -> dict[str, Table]:
    from qamqor.kit.db import Base, import_every_models_module

    import_every_models_module()
    return dict(Base.metadata.tables)


def _category(code: str, spec: dict[str, Any], tables: dict[str, Table]) -> Category:
    def fail(problem: str) -> RetentionPolicyError:
        return RetentionPolicyError(f"retention policy: category {code}: {problem}")

    handler = spec.get("handler")
    if handler not in HANDLERS:
        raise fail(f"handler {handler!r} is not one of {', '.join(HANDLERS)}")
    period_spec = spec.get("period") or {}
    if not set(period_spec) <= {"years", "days"} or not period_spec:
        raise fail("period needs years and/or days")
    period = Period(int(period_spec.get("years", 0)), int(period_spec.get("days", 0)))
    if period.years < 0 or period.days < 0 or (period.years, period.days) == (0, 0):
        raise fail("the period must be positive")
    for part in ("names", "basis"):
        if set(spec.get(part) or {}) != set(LANGUAGES):
            raise fail(f"{part} needs ru, kk and en")
    columns = {str(k): str(v) for k, v in (spec.get("columns") or {}).items()}
    where_spec = spec.get("where") or {}
    if not isinstance(where_spec, dict) or not all(
        isinstance(v, list) and v for v in where_spec.values()
    ):
        raise fail("where maps a column to a non-empty list of values")
    where = {str(k): tuple(str(x) for x in v) for k, v in where_spec.items()}
    for name, action in columns.items():
        if action not in ACTIONS:
            raise fail(f"column {name}: action {action!r} is not one of {', '.join(ACTIONS)}")
    category = Category(
        code=code,
        names={lang: str(spec["names"][lang]) for lang in LANGUAGES},
        basis={lang: str(spec["basis"][lang]) for lang in LANGUAGES},
        period=period,
        handler=handler,
        table=spec.get("table"),
        age_column=spec.get("age_column"),
        anchor=(spec["anchor"]["table"], spec["anchor"]["column"]) if "anchor" in spec else None,
        subject=spec.get("subject"),
        tables=tuple(spec.get("tables") or ()),
        columns=columns,
        kinds=tuple(str(k) for k in spec.get("kinds") or ()),
        where=where,
    )
    needed: list[tuple[str, str]] = []
    if handler in ("rows", "subject") and not any(
        a in ("hash", "null", "empty") for a in columns.values()
    ):
        raise fail("needs at least one column to hash, null or empty")
    if where and handler != "rows":
        raise fail("only a rows category takes where")
    if handler == "rows":
        if not category.table or not category.age_column:
            raise fail("a rows category needs table and age_column")
        needed += [(category.table, category.age_column)]
        needed += [(category.table, name) for name in columns]
        needed += [(category.table, name) for name in where]
    elif handler == "subject":
        if category.anchor is None or not category.subject or not category.tables:
            raise fail("a subject category needs anchor, subject and tables")
        needed += [category.anchor, (category.anchor[0], category.subject)]
        needed += [(table, category.subject) for table in category.tables]
        if columns.get(category.subject) != "hash":
            raise fail(f"the subject column {category.subject} must be hashed")
        for name in columns:
            if not any(t in tables and name in tables[t].columns for t in category.tables):
                raise fail(f"no table of the category has a column {name}")
    elif handler == "audit_entries" and not category.kinds:
        raise fail("an audit_entries category needs kinds")
    for table, column in needed:
        if table not in tables:
            raise fail(f"no table {table}")
        if column not in tables[table].columns:
            raise fail(f"table {table} has no column {column}")
    for table_name in (category.table, *category.tables):
        for name, action in columns.items():
            found = tables.get(table_name or "")
            if found is None or name not in found.columns:
                continue
            if action == "empty" and found.columns[name].nullable is not False:
                raise fail(f"{found.name}.{name} may be NULL: null it rather than empty it")
            if action == "null" and found.columns[name].nullable is False:
                raise fail(f"{found.name}.{name} is NOT NULL: it cannot become null")
            if action == "null":
                continue
            if isinstance(found.columns[name].type, EncryptedString):
                raise fail(f"{found.name}.{name} is encrypted: it can only become null")
    return category


def load_policy(path: Path | None = None) -> Policy:
    """The policy of ``path``, ``QAMQOR_RETENTION_POLICY`` or the built-in one, checked."""
    path = path or get_settings().retention_policy
    if path is not None:
        text, source = path.read_text("utf-8"), str(path)
    else:
        text = resources.files("qamqor.privacy").joinpath("retention.yaml").read_text("utf-8")
        source = "built-in retention.yaml"
    try:
        data = yaml.safe_load(text)
        specs = data["categories"]
    except (yaml.YAMLError, TypeError, KeyError) as exc:
        raise RetentionPolicyError(f"{source}: not a retention policy ({exc})") from None
    tables = _tables()
    categories = tuple(_category(str(code), spec, tables) for code, spec in specs.items())
    return Policy(categories, hashlib.sha256(text.encode()).hexdigest(), source)


# --- anonymising values ------------------------------------------------------------------------


@cache
def _salt(path: Path) -> bytes:
    return keyring_module.load(create=True, path=path).pseudonym_salt


def salted_hash(column: str, value: str, length: int | None, salt: bytes) -> str:
    """``~`` and base32 of HMAC-SHA-256(salt, column, value), cut to fit ``length``.

    Keyed by the column name, so an IIN hashes alike in every table; salted with a secret,
    so nobody can hash every possible IIN and look the original up.
    """
    digest = hmac.new(salt, f"{column}\x1f{value}".encode(), hashlib.sha256).digest()
    text = base64.b32encode(digest).decode("ascii").rstrip("=").lower()
    keep = HASH_CHARS if length is None else min(HASH_CHARS, length - len(HASH_MARK))
    return HASH_MARK + text[:keep]


def _length(column: Column[Any]) -> int | None:
    return getattr(column.type, "length", None)


def _anonymised(column: Column[Any], action: str, value: Any, salt: bytes) -> Any:
    if value is None:
        return None
    if action == "null":
        return None
    if action == "empty":
        return ""
    if action == "year_start":
        return dt.date(value.year, 1, 1)
    text = str(value)
    if text.startswith(HASH_MARK):
        return value
    return salted_hash(column.name, text, _length(column), salt)


def _pending(table: Table, columns: dict[str, str]) -> ColumnElement[bool]:
    """Rows with something left to anonymise; none once a run has passed over them."""
    conditions: list[ColumnElement[bool]] = []
    for name, action in columns.items():
        if name not in table.columns:
            continue
        column = table.columns[name]
        if action == "hash":
            conditions.append(and_(column.is_not(None), ~column.startswith(HASH_MARK)))
        elif action == "null":
            conditions.append(column.is_not(None))
        elif action == "empty":
            conditions.append(column != "")
    return or_(*conditions)


# --- results -----------------------------------------------------------------------------------


@dataclass
class CategoryResult:
    code: str
    cutoff: dt.date
    rows: int = 0
    values: int = 0
    digest: Any = field(default_factory=hashlib.sha256, repr=False)

    @property
    def removed_sha256(self) -> str:
        return str(self.digest.hexdigest())

    def removed(self, table: str, key: Any, column: str, value: Any) -> None:
        """Feed one removed value to the category's SHA-256, in a fixed order and framing."""
        self.values += 1
        self.digest.update(f"{table}\x1f{key}\x1f{column}\x1f{value}\n".encode())

    def to_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "rows": self.rows,
            "values": self.values,
            "removed_sha256": self.removed_sha256,
        }


@dataclass
class RunReport:
    as_of: dt.date
    dry_run: bool
    policy_sha256: str
    categories: dict[str, CategoryResult] = field(default_factory=dict)
    audit_index: int | None = None

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.categories.values())

    def payload(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "policy_sha256": self.policy_sha256,
            "categories": {code: c.to_dict() for code, c in self.categories.items()},
        }


# --- handlers ----------------------------------------------------------------------------------


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rewrite(
    session: Session,
    table: Table,
    where: ColumnElement[bool],
    columns: dict[str, str],
    result: CategoryResult,
    salt: bytes,
    progress: Callable[[int], None],
) -> None:
    """Anonymise the rows of ``table`` matching ``where``, by primary key, batch by batch."""
    (pk,) = table.primary_key.columns
    targets = [(table.columns[n], a) for n, a in columns.items() if n in table.columns]
    statement = (
        update(table)
        .where(pk == bindparam("_pk"))
        .values({column.name: bindparam(f"_{column.name}") for column, _ in targets})
    )
    last: Any = None
    while True:
        query = select(pk, *(column for column, _ in targets)).where(where)
        if last is not None:
            query = query.where(pk > last)
        rows = session.execute(query.order_by(pk).limit(BATCH_ROWS)).all()
        if not rows:
            return
        params = []
        for key, *values in rows:
            row = {"_pk": key}
            for (column, action), value in zip(targets, values, strict=True):
                new = _anonymised(column, action, value, salt)
                row[f"_{column.name}"] = new
                if new != value:
                    result.removed(table.name, key, column.name, value)
            params.append(row)
        session.connection().execute(statement, params)
        last = rows[-1][0]
        result.rows += len(rows)
        progress(len(rows))


def _rows(
    session: Session,
    category: Category,
    result: CategoryResult,
    tables: dict[str, Table],
    salt: bytes,
    dry_run: bool,
    progress: Callable[[int, int], None],
) -> None:
    assert category.table and category.age_column
    table = tables[category.table]
    age = table.columns[category.age_column]
    limit: Any = result.cutoff
    if isinstance(getattr(age.type, "impl", age.type), DateTime):
        limit = dt.datetime.combine(result.cutoff, dt.time(), dt.UTC)
    where = and_(age < limit, _pending(table, category.columns))
    for name, values in category.where.items():
        where = and_(where, table.columns[name].in_(values))
    total = int(session.execute(select(func.count()).select_from(table).where(where)).scalar_one())
    if dry_run:
        result.rows = total
        return
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(done, total)

    _rewrite(session, table, where, category.columns, result, salt, advance)


def _subject(
    session: Session,
    category: Category,
    result: CategoryResult,
    tables: dict[str, Table],
    salt: bytes,
    dry_run: bool,
    progress: Callable[[int, int], None],
) -> None:
    assert category.anchor and category.subject
    anchor_table = tables[category.anchor[0]]
    anchor = anchor_table.columns[category.anchor[1]]
    subject = anchor_table.columns[category.subject]
    subjects = [
        value
        for (value,) in session.execute(
            select(subject)
            .where(anchor < result.cutoff, ~subject.startswith(HASH_MARK))
            .distinct()
            .order_by(subject)
        )
    ]
    if dry_run:
        for table_name in category.tables:
            table = tables[table_name]
            for chunk in _batches(subjects, SUBJECTS_PER_BATCH):
                result.rows += int(
                    session.execute(
                        select(func.count())
                        .select_from(table)
                        .where(table.columns[category.subject].in_(chunk))
                    ).scalar_one()
                )
        return
    done = 0
    for chunk in _batches(subjects, SUBJECTS_PER_BATCH):
        for table_name in category.tables:
            table = tables[table_name]
            where = table.columns[category.subject].in_(chunk)
            _rewrite(session, table, where, category.columns, result, salt, lambda n: None)
        done += len(chunk)
        progress(done, len(subjects))


def _rejections(
    session: Session,
    category: Category,
    result: CategoryResult,
    tables: dict[str, Table],
    salt: bytes,
    dry_run: bool,
    progress: Callable[[int, int], None],
) -> None:
    rejection, batch = tables["registry_rejection"], tables["registry_batch"]
    received = dt.datetime.combine(result.cutoff, dt.time(), dt.UTC)
    old_batches = select(batch.c.id).where(batch.c.received_at < received)
    where = and_(
        rejection.c.batch_id.in_(old_batches),
        or_(rejection.c.raw != "", rejection.c.raw_sealed.is_not(None)),
    )
    total = int(
        session.execute(select(func.count()).select_from(rejection).where(where)).scalar_one()
    )
    if dry_run:
        result.rows = total
        return
    last = None
    while True:
        query = select(rejection.c.id, rejection.c.raw, rejection.c.raw_sealed).where(where)
        if last is not None:
            query = query.where(rejection.c.id > last)
        rows = session.execute(query.order_by(rejection.c.id).limit(BATCH_ROWS)).all()
        if not rows:
            return
        for key, raw, sealed in rows:
            if raw:
                result.removed(rejection.name, key, "raw", raw)
            if sealed is not None:
                result.removed(rejection.name, key, "raw_sealed", sealed)
        session.execute(
            update(rejection)
            .where(rejection.c.id.in_([r[0] for r in rows]))
            .values(raw="", raw_sealed=None)
        )
        last = rows[-1][0]
        result.rows += len(rows)
        progress(result.rows, total)


def _audit_entries(
    session: Session,
    category: Category,
    result: CategoryResult,
    tables: dict[str, Table],
    salt: bytes,
    dry_run: bool,
    progress: Callable[[int, int], None],
) -> None:
    from qamqor.audit import service as audit
    from qamqor.audit.models import AuditEntry

    recorded = dt.datetime.combine(result.cutoff, dt.time(), dt.UTC)
    where = and_(
        AuditEntry.recorded_at < recorded,
        AuditEntry.payload.is_not(None),
        AuditEntry.kind.in_(category.kinds),
    )
    entries = session.execute(
        select(AuditEntry.leaf_index, AuditEntry.payload)
        .where(where)
        .order_by(AuditEntry.leaf_index)
    ).all()
    if dry_run:
        result.rows = len(entries)
        return
    reason = f"retention {category.code}: older than {category.period}"
    for k, (index, payload) in enumerate(entries, start=1):
        result.removed("audit_entry", index, "payload", payload)
        audit.redact(session, index, reason)
        result.rows += 1
        progress(k, len(entries))


HANDLER_FUNCTIONS = {
    "rows": _rows,
    "subject": _subject,
    "rejections": _rejections,
    "audit_entries": _audit_entries,
}


def run(
    session: Session,
    *,
    as_of: dt.date | None = None,
    policy: Policy | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RunReport:
    """Anonymise everything past its period as of ``as_of`` (default: today, UTC), in the
    caller's transaction, and append one ``retention`` audit entry summarising it.

    ``dry_run`` only counts the rows each category would change. Audit-log categories run
    last: a redaction locks the log's head until the caller commits, and other writers of the
    log should wait as short a time as possible.
    """
    from qamqor.audit import service as audit

    as_of = as_of or dt.datetime.now(dt.UTC).date()
    policy = policy or load_policy()
    tables = _tables()
    salt = b"" if dry_run else _salt(keyring_module.keyring_path())
    report = RunReport(as_of=as_of, dry_run=dry_run, policy_sha256=policy.sha256)
    ordered = sorted(policy.categories, key=lambda c: c.handler == "audit_entries")
    for category in ordered:
        result = CategoryResult(category.code, category.period.cutoff(as_of))
        report.categories[category.code] = result

        def advance(done: int, total: int, code: str = category.code) -> None:
            if progress is not None:
                progress(code, done, total)

        HANDLER_FUNCTIONS[category.handler](
            session, category, result, tables, salt, dry_run, advance
        )
    report.categories = {c.code: report.categories[c.code] for c in policy.categories}
    if not dry_run and report.rows:
        report.audit_index = audit.append(session, "retention", None, report.payload())
    return report
