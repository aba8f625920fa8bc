"""``/api/v1/audit``: signed checkpoints, the verifier key, entries and proofs.

A citizen (or anyone) fetches the checkpoint and the key, then proves that an entry about them
is in the signed tree with an inclusion proof, and that a later checkpoint extends an earlier
one with a consistency proof; no trust in this server is needed beyond the key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from qamqor.audit import service
from qamqor.audit.schemas import (
    ConsistencyProofOut,
    EntryOut,
    InclusionProofOut,
    VerifierKeyOut,
)
from qamqor.kit.db import session_scope
from qamqor.kit.errors import NotFoundError, QamqorError
from qamqor.kit.settings import get_settings

router = APIRouter(prefix="/audit", tags=["audit"])


def db_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(db_session)]


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    summary="The latest signed checkpoint (C2SP tlog-checkpoint), signed anew if the log grew",
)
def get_checkpoint(session: SessionDep) -> PlainTextResponse:
    return PlainTextResponse(service.checkpoint(session).note)


@router.get("/key", response_model=VerifierKeyOut, summary="The log's verifier key")
def get_key() -> VerifierKeyOut:
    return VerifierKeyOut(origin=get_settings().audit_origin, verifier_key=str(service.verifier()))


@router.get("/entries/{index}", response_model=EntryOut, summary="One entry and its leaf hash")
def get_entry(index: int, session: SessionDep) -> EntryOut:
    try:
        entry = service.get_entry(session, index)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc
    data = (
        None
        if entry.payload is None
        else service.leaf_data(
            entry.leaf_index, entry.kind, entry.subject, entry.recorded_at, entry.payload
        ).decode()
    )
    return EntryOut(
        index=entry.leaf_index,
        kind=entry.kind,
        subject=entry.subject,
        recorded_at=entry.recorded_at,
        payload=None if entry.payload is None else json.loads(entry.payload),
        redacted=entry.payload is None,
        leaf_hash=b64(bytes(entry.leaf_hash)),
        leaf_data=data,
    )


@router.get(
    "/proofs/inclusion",
    response_model=InclusionProofOut,
    summary="Inclusion proof of an entry (default: in the latest checkpoint's tree)",
)
def get_inclusion_proof(
    session: SessionDep,
    index: Annotated[int, Query(ge=0)],
    tree_size: Annotated[int | None, Query(ge=1)] = None,
) -> InclusionProofOut:
    if tree_size is None:
        # Prove against a signed root: the latest checkpoint, signed now if it lags.
        tree_size = service.checkpoint(session).tree_size
    try:
        proof = service.inclusion_proof(session, index, tree_size)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc
    except QamqorError as exc:
        raise HTTPException(422, str(exc)) from exc
    return InclusionProofOut(
        index=proof.index,
        tree_size=proof.tree_size,
        leaf_hash=b64(proof.leaf_hash),
        root_hash=b64(proof.root_hash),
        hashes=[b64(h) for h in proof.hashes],
    )


@router.get(
    "/proofs/consistency",
    response_model=ConsistencyProofOut,
    summary="Consistency proof: the tree of `second` entries extends the tree of `first`",
)
def get_consistency_proof(
    session: SessionDep,
    first: Annotated[int, Query(ge=0)],
    second: Annotated[int, Query(ge=0)],
) -> ConsistencyProofOut:
    try:
        proof = service.consistency_proof(session, first, second)
    except QamqorError as exc:
        raise HTTPException(422, str(exc)) from exc
    return ConsistencyProofOut(
        first=proof.first,
        second=proof.second,
        first_root=b64(proof.first_root),
        second_root=b64(proof.second_root),
        hashes=[b64(h) for h in proof.hashes],
    )
