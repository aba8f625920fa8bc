"""API shapes of the audit log. Hashes are standard base64, as in C2SP checkpoints."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field


class EntryOut(BaseModel):
    index: int = Field(description="Leaf index, 0-based.")
    kind: str
    subject: str | None
    recorded_at: dt.datetime
    payload: dict[str, Any] | None = Field(description="None once redacted.")
    redacted: bool
    leaf_hash: str = Field(description="base64 SHA-256(0x00 || leaf data).")
    leaf_data: str | None = Field(
        description="The exact bytes hashed into the leaf (UTF-8 JSON); None once redacted."
    )


class InclusionProofOut(BaseModel):
    index: int
    tree_size: int
    leaf_hash: str
    root_hash: str = Field(description="Root of the tree of tree_size, as in its checkpoint.")
    hashes: list[str] = Field(description="RFC 9162 §2.1.3 audit path, leaf side first.")


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    hashes: list[str] = Field(description="RFC 9162 §2.1.4 consistency proof.")


class VerifierKeyOut(BaseModel):
    origin: str
    verifier_key: str = Field(description="<name>+<hex key id>+<base64(0x01 || Ed25519 key)>")
