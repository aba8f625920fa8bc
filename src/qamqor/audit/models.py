"""Tables of the audit log: entries (the leaves), inner nodes, the head (lock) and checkpoints.

The leaf hash of entry i lives on the entry row; ``audit_node`` holds the hash of every
complete subtree of level >= 1, written once when its last leaf is appended and never changed.
With both, the root of any past size and any proof is a handful of primary-key lookups
(``merkle.perfect_subtrees``), never a scan. ``audit_head`` is a single row: appends lock it
(``UPDATE ... RETURNING``) so concurrent writers take turns and each sees the right edge its
predecessor committed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from qamqor.kit.db import Base, UTCDateTime

HASH = LargeBinary(32)


class AuditEntry(Base):
    """One leaf: what happened (``kind``), to whom (``subject``, a pseudonym), when, and the
    details as canonical JSON. ``payload`` is NULL once redacted; the leaf hash stays."""

    __tablename__ = "audit_entry"

    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(128), index=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str | None] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(HASH)


class AuditNode(Base):
    """Hash of the perfect subtree of 2**level leaves starting at leaf ``node_index << level``."""

    __tablename__ = "audit_node"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    node_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(HASH)


class AuditHead(Base):
    """The single row (id 1) appends lock; ``tree_size`` is the number of leaves committed."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tree_size: Mapped[int] = mapped_column(BigInteger)


class AuditCheckpoint(Base):
    """A signed tree head: the C2SP checkpoint note as published, and its parsed size and root."""

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(HASH)
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
