"""The audit API as a citizen's verifier uses it, on both databases: nothing is trusted but the
verifier key; every hash is recomputed on the client side."""

from __future__ import annotations

import base64
import hashlib

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from qamqor.audit import merkle, service
from qamqor.audit.note import Verifier, open_checkpoint
from qamqor.kit.db import session_scope
from qamqor.web.app import create_app
from tests.audit.builders import fill_log

API = "/api/v1/audit"


@pytest.fixture
def client(engine: Engine) -> TestClient:
    """A client signed in as an auditor: entries are for auditors (docs/privacy.md), the
    checkpoint and key are public, proofs need a signed-in caller."""
    from qamqor.privacy import identities

    with session_scope(engine) as session:
        auditor = identities.create_officer(
            session,
            login="auditor.one",
            password="correct horse battery staple",
            display_name="Auditor",
            role="auditor",
            institution="Audit office",
            regions=["all"],
        )
        token, _ = identities.issue_bearer(session, auditor)
    return TestClient(create_app(), headers={"Authorization": f"Bearer {token}"})


def test_the_checkpoint_and_key_are_public(engine: Engine) -> None:
    fill_log(engine, 2)
    anonymous = TestClient(create_app())
    verifier = Verifier.parse(anonymous.get(f"{API}/key").json()["verifier_key"])
    assert open_checkpoint(anonymous.get(f"{API}/checkpoint").text, verifier).tree_size == 2
    assert anonymous.get(f"{API}/entries/0").status_code == 401


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def test_a_citizen_proves_their_entries_are_in_the_signed_tree(
    client: TestClient, engine: Engine
) -> None:
    fill_log(engine, 11)
    key = client.get(f"{API}/key").json()
    verifier = Verifier.parse(key["verifier_key"])
    assert key["origin"] == "qamqor.local/audit"

    response = client.get(f"{API}/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    checkpoint = open_checkpoint(response.text, verifier, key["origin"])
    assert checkpoint.tree_size == 11
    assert client.get(f"{API}/checkpoint").text == response.text  # not re-signed: no growth

    with session_scope(engine) as session:
        mine = [e.leaf_index for e in service.entries_of_subject(session, "household:1")]
    assert mine == [1, 7, 10]  # entry 4 has no subject
    for index in mine:
        entry = client.get(f"{API}/entries/{index}").json()
        assert entry["subject"] == "household:1"
        leaf = hashlib.sha256(b"\x00" + entry["leaf_data"].encode()).digest()
        assert leaf == _b64(entry["leaf_hash"])
        proof = client.get(f"{API}/proofs/inclusion", params={"index": index}).json()
        assert proof["tree_size"] == checkpoint.tree_size
        assert _b64(proof["root_hash"]) == checkpoint.root_hash
        assert merkle.verify_inclusion(
            index,
            proof["tree_size"],
            leaf,
            [_b64(h) for h in proof["hashes"]],
            checkpoint.root_hash,
        )


def test_inclusion_default_signs_a_checkpoint_covering_new_entries(
    client: TestClient, engine: Engine
) -> None:
    fill_log(engine, 3, checkpoints=(3,))
    fill_log(engine, 2)  # indices 3, 4: after the checkpoint
    proof = client.get(f"{API}/proofs/inclusion", params={"index": 4}).json()
    assert proof["tree_size"] == 5
    with session_scope(engine) as session:
        latest = service.latest_checkpoint(session)
    assert latest is not None and latest.tree_size == 5
    explicit = client.get(f"{API}/proofs/inclusion", params={"index": 1, "tree_size": 3}).json()
    assert explicit["tree_size"] == 3


def test_consistency_between_two_published_checkpoints(client: TestClient, engine: Engine) -> None:
    verifier = Verifier.parse(client.get(f"{API}/key").json()["verifier_key"])
    fill_log(engine, 6)
    old = open_checkpoint(client.get(f"{API}/checkpoint").text, verifier)
    fill_log(engine, 9)
    new = open_checkpoint(client.get(f"{API}/checkpoint").text, verifier)
    proof = client.get(
        f"{API}/proofs/consistency", params={"first": old.tree_size, "second": new.tree_size}
    ).json()
    assert (_b64(proof["first_root"]), _b64(proof["second_root"])) == (
        old.root_hash,
        new.root_hash,
    )
    assert merkle.verify_consistency(
        old.tree_size,
        new.tree_size,
        old.root_hash,
        new.root_hash,
        [_b64(h) for h in proof["hashes"]],
    )


def test_redacted_entries_show_no_payload_but_keep_their_leaf_hash(
    client: TestClient, engine: Engine
) -> None:
    fill_log(engine, 3)
    before = client.get(f"{API}/entries/1").json()
    with session_scope(engine) as session:
        service.redact(session, 1, "retention")
    after = client.get(f"{API}/entries/1").json()
    assert (after["payload"], after["leaf_data"], after["redacted"]) == (None, None, True)
    assert after["leaf_hash"] == before["leaf_hash"]
    assert client.get(f"{API}/entries/3").json()["kind"] == "redaction"


def test_errors(client: TestClient, engine: Engine) -> None:
    fill_log(engine, 2)
    assert client.get(f"{API}/entries/2").status_code == 404
    assert client.get(f"{API}/proofs/inclusion", params={"index": 5}).status_code == 404
    too_big = client.get(f"{API}/proofs/inclusion", params={"index": 0, "tree_size": 9})
    assert too_big.status_code == 422
    bad = client.get(f"{API}/proofs/consistency", params={"first": 2, "second": 1})
    assert bad.status_code == 422
    assert client.get(f"{API}/proofs/inclusion", params={"index": -1}).status_code == 422
