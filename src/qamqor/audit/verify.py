"""Recompute the whole audit log from its tables and report every inconsistency.

One streaming pass over the entries in leaf order (keyset pages, never the whole table in
memory) recomputes each leaf hash from its columns, rebuilds the tree from the *stored* leaf
hashes and compares every completed subtree with ``audit_node``, and compares the root at
every checkpointed size with the checkpoint. Using stored leaf hashes for the tree keeps the
report precise: a changed payload is one ``entry_hash`` problem; a changed leaf hash is that
plus the subtree above it; a changed node is that node.

What verification can and cannot catch: anything changed, removed, inserted or moved among
entries covered by a checkpoint (or a published checkpoint handed in) is detected, because
the checkpoint's signed root no longer matches. Entries appended after the latest checkpoint
are only as trustworthy as the database until the next checkpoint signs them; the report
counts them (``unsigned_entries``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from qamqor.audit import merkle
from qamqor.audit.models import AuditCheckpoint, AuditEntry, AuditHead, AuditNode
from qamqor.audit.note import (
    CheckpointBody,
    NoteError,
    Verifier,
    open_checkpoint,
    parse_note,
)
from qamqor.audit.service import HEAD_ID, format_time, leaf_data
from qamqor.audit.service import key_path as service_key_path
from qamqor.kit.settings import get_settings

PAGE = 10_000  # rows per keyset page: 10 M entries in 1,000 queries, ~5 MB in memory at once


@dataclass(frozen=True)
class Problem:
    """One inconsistency: a stable ``code``, the leaf or node it concerns, and words."""

    code: str
    message: str
    index: int | None = None

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


@dataclass
class VerifyReport:
    tree_size: int = 0  # leaves found (highest index + 1)
    head_size: int = 0  # what audit_head says
    entries_checked: int = 0
    redacted: int = 0
    nodes_checked: int = 0
    checkpoints_checked: int = 0
    published_checked: int = 0
    signed_size: int = 0  # largest size covered by a valid checkpoint
    root_hash: bytes = merkle.EMPTY_ROOT
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsigned_entries(self) -> int:
        return max(self.tree_size - self.signed_size, 0)

    def add(self, code: str, message: str, index: int | None = None) -> None:
        self.problems.append(Problem(code, message, index))


@dataclass
class _Target:
    """A root some checkpoint claims for a size."""

    label: str
    root: bytes
    signed: bool


class _NodeReader:
    """Stored inner nodes of one level in index order, paged by key."""

    def __init__(self, session: Session, level: int) -> None:
        self.session, self.level = session, level
        self.buffer: list[tuple[int, bytes]] = []
        self.position = 0
        self.next_from = 0
        self.exhausted = False

    def _fill(self) -> None:
        rows = self.session.execute(
            select(AuditNode.node_index, AuditNode.hash)
            .where(AuditNode.level == self.level, AuditNode.node_index >= self.next_from)
            .order_by(AuditNode.node_index)
            .limit(PAGE)
        ).all()
        self.buffer = [(int(i), bytes(h)) for i, h in rows]
        self.position = 0
        if rows:
            self.next_from = self.buffer[-1][0] + 1
        self.exhausted = len(rows) < PAGE

    def get(self, index: int) -> bytes | None:
        """The stored hash of node ``index`` (asked in increasing order), None if absent."""
        while True:
            if self.position >= len(self.buffer):
                if self.exhausted:
                    return None
                self._fill()
                continue
            node_index, h = self.buffer[self.position]
            if node_index > index:
                return None
            self.position += 1
            if node_index == index:
                return h


def _node(level: int, index: int) -> str:
    first = index << level
    return f"node level {level} index {index} (entries {first}-{first + (1 << level) - 1})"


def _entries(session: Session) -> Iterator[list[Any]]:
    """Every entry row in index order, a keyset page at a time (negative indices too)."""
    columns = (
        AuditEntry.leaf_index,
        AuditEntry.kind,
        AuditEntry.subject,
        AuditEntry.recorded_at,
        AuditEntry.payload,
        AuditEntry.leaf_hash,
    )
    after: int | None = None
    while True:
        statement = select(*columns).order_by(AuditEntry.leaf_index).limit(PAGE)
        if after is not None:
            statement = statement.where(AuditEntry.leaf_index > after)
        rows = session.execute(statement).all()
        if not rows:
            return
        yield list(rows)
        after = int(rows[-1][0])
        if len(rows) < PAGE:
            return


def _open(message: str, verifier: Verifier | None, origin: str) -> CheckpointBody:
    """The checkpoint in ``message``, its signature checked when a key is known."""
    if verifier is None:
        return CheckpointBody.parse(parse_note(message).text)
    return open_checkpoint(message, verifier, origin)


def _targets(
    session: Session, published: list[str], verifier: Verifier | None, report: VerifyReport
) -> dict[int, list[_Target]]:
    origin = get_settings().audit_origin
    signed = verifier is not None
    targets: dict[int, list[_Target]] = defaultdict(list)
    for row in session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.id)).scalars():
        report.checkpoints_checked += 1
        label = f"checkpoint {row.id} (size {row.tree_size})"
        targets[row.tree_size].append(_Target(label, bytes(row.root_hash), signed=False))
        try:
            body = _open(row.note, verifier, origin)
        except NoteError as exc:
            report.add("checkpoint_signature", f"{label}: {exc}")
            continue
        if body.tree_size != row.tree_size or body.root_hash != bytes(row.root_hash):
            report.add(
                "checkpoint_mismatch",
                f"{label}: the signed note says size {body.tree_size}, root "
                f"{body.root_hash.hex()[:16]}…, the row says size {row.tree_size}, root "
                f"{bytes(row.root_hash).hex()[:16]}…",
            )
        targets[body.tree_size].append(_Target(f"{label}, signed note", body.root_hash, signed))
    for number, message in enumerate(published, 1):
        report.published_checked += 1
        label = f"published checkpoint #{number}"
        try:
            body = _open(message, verifier, origin)
        except NoteError as exc:
            report.add("published_signature", f"{label}: {exc}")
            continue
        targets[body.tree_size].append(
            _Target(f"{label} (size {body.tree_size})", body.root_hash, signed)
        )
    if not signed and targets:
        report.add(
            "key_missing",
            "no verifier key: pass the log's published key (--key) or restore the key file "
            f"{service_key_path()}; checkpoint roots were compared but no signature checked",
        )
    return targets


def verify_log(
    session: Session,
    published: list[str],
    *,
    verifier: Verifier | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Recompute every leaf hash, inner node and checkpointed root; collect every problem.

    ``published`` are checkpoint notes kept outside the database (by witnesses, citizens,
    auditors): each must be signed by the log's key and its root must be the root the log's
    entries give at its size, i.e. the current log is an append-only extension of it.
    """
    from qamqor.audit import service

    report = VerifyReport()
    verifier = verifier or service.existing_verifier()
    head = session.execute(select(AuditHead.tree_size).where(AuditHead.id == HEAD_ID)).scalar()
    report.head_size = int(head or 0)
    last = session.execute(select(func.max(AuditEntry.leaf_index))).scalar()
    total = int(last) + 1 if last is not None else 0
    targets = _targets(session, published, verifier, report)

    readers: dict[int, _NodeReader] = {}
    edge: list[bytes | None] = []  # right edge; None where a missing leaf makes it unknown
    redacted: dict[int, tuple[str, str | None, str, bytes]] = {}
    redactions: dict[int, tuple[int, str | None, dict[str, Any]]] = {}
    size = 0

    def check_root() -> None:
        wanted = targets.get(size)
        if not wanted:
            return
        if any(h is None for h in edge):
            labels = sorted({target.label.split(",")[0] for target in wanted})
            report.add(
                "checkpoint_unverifiable",
                f"{'; '.join(labels)}: entries below size {size} are missing, so the root "
                "cannot be recomputed",
            )
            return
        root = merkle.root_from_frontier([h for h in edge if h is not None])
        for target in wanted:
            if target.root != root:
                report.add(
                    "checkpoint_root",
                    f"{target.label}: root {target.root.hex()[:16]}… but the entries give "
                    f"{root.hex()[:16]}…",
                )
            elif target.signed:
                report.signed_size = max(report.signed_size, size)

    def add_leaf(h: bytes | None) -> None:
        nonlocal size
        index, level = size, 0
        while index & 1:
            left = edge.pop()
            h = merkle.node_hash(left, h) if left is not None and h is not None else None
            level += 1
            index >>= 1
            reader = readers.get(level)
            if reader is None:
                reader = readers[level] = _NodeReader(session, level)
            stored = reader.get(index)
            report.nodes_checked += 1
            if stored is None:
                report.add("node_missing", f"{_node(level, index)} is missing from audit_node")
            elif h is not None and stored != h:
                report.add(
                    "node_hash", f"{_node(level, index)}: stored hash does not match its children"
                )
        edge.append(h)
        size += 1
        check_root()

    check_root()  # size 0
    for page in _entries(session):
        for index, kind, subject, recorded_at, payload, stored_hash in page:
            index = int(index)
            stored_hash = bytes(stored_hash)
            if index < 0:
                report.add("entry_extra", f"an entry with the impossible index {index}", index)
                continue
            if index > size:
                report.add(
                    "entry_missing",
                    f"entries {size}-{index - 1} are missing"
                    if index - 1 > size
                    else f"entry {size} is missing",
                    size,
                )
                while size < index:
                    add_leaf(None)
            report.entries_checked += 1
            if payload is None:
                report.redacted += 1
                redacted[index] = (kind, subject, format_time(recorded_at), stored_hash)
            else:
                computed = merkle.leaf_hash(leaf_data(index, kind, subject, recorded_at, payload))
                if computed != stored_hash:
                    report.add(
                        "entry_hash",
                        f"entry {index} ({kind}): its contents do not give its leaf hash "
                        "(changed, or moved from another index)",
                        index,
                    )
                elif kind == "redaction":
                    record = json.loads(payload)
                    target = record.get("index") if isinstance(record, dict) else None
                    if isinstance(target, int):
                        redactions[target] = (index, subject, record)
                    else:
                        report.add(
                            "redaction_malformed", f"redaction entry {index} names no entry", index
                        )
            add_leaf(stored_hash)
        if progress:
            progress(size, total)

    report.tree_size = size
    report.root_hash = (
        merkle.root_from_frontier([h for h in edge if h is not None])
        if all(h is not None for h in edge)
        else merkle.EMPTY_ROOT
    )
    if report.head_size != size:
        report.add(
            "head_size",
            f"audit_head says {report.head_size} entries, the table holds indices 0-{size - 1}"
            if size
            else f"audit_head says {report.head_size} entries, the table holds none",
        )
    for target_size, wanted in targets.items():
        if target_size > size:
            for label in sorted({target.label.split(",")[0] for target in wanted}):
                report.add(
                    "checkpoint_beyond_log",
                    f"{label} covers {target_size} entries, the log holds only {size} "
                    "(entries removed from its end?)",
                )
    _check_extra_nodes(session, size, report)
    _check_redactions(redacted, redactions, report)
    return report


def _check_extra_nodes(session: Session, size: int, report: VerifyReport) -> None:
    """Inner nodes the tree of ``size`` has no place for (inserted, or left by deleted leaves)."""
    levels = max(size.bit_length(), 1)
    beyond = [
        and_(AuditNode.level == level, AuditNode.node_index >= size >> level)
        for level in range(1, levels)
    ]
    statement = (
        select(AuditNode.level, func.count(), func.min(AuditNode.node_index))
        .where(or_(AuditNode.level < 1, AuditNode.level >= levels, *beyond))
        .group_by(AuditNode.level)
    )
    for level, count, first in session.execute(statement):
        report.add(
            "node_extra",
            f"{count} node(s) at level {level} from index {first} do not belong to a tree of "
            f"{size} entries",
        )


def _check_redactions(
    redacted: dict[int, tuple[str, str | None, str, bytes]],
    redactions: dict[int, tuple[int, str | None, dict[str, Any]]],
    report: VerifyReport,
) -> None:
    for index, (kind, subject, recorded_at, leaf) in sorted(redacted.items()):
        found = redactions.get(index)
        if found is None:
            report.add(
                "redaction_unrecorded",
                f"entry {index} has no payload but no redaction entry records its removal",
                index,
            )
            continue
        at, redaction_subject, record = found
        recorded = (record.get("kind"), redaction_subject, record.get("recorded_at"))
        if recorded != (kind, subject, recorded_at) or record.get("leaf_hash") != leaf.hex():
            report.add(
                "redaction_mismatch",
                f"redacted entry {index} no longer matches what redaction entry {at} recorded "
                "(kind, subject, time or leaf hash changed)",
                index,
            )
    for index, (at, _, _) in sorted(redactions.items()):
        if index not in redacted:
            report.add(
                "redaction_not_applied",
                f"redaction entry {at} records entry {index} as redacted, but that entry "
                "holds a payload or is missing",
                index,
            )
