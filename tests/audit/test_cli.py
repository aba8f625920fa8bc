"""`qamqor audit checkpoint`, `proof` and `key` on both databases (verify: test_tamper.py)."""

from __future__ import annotations

import base64
import json

from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from qamqor.audit import merkle
from qamqor.audit.note import Verifier, open_checkpoint
from qamqor.cli import app
from tests.audit.builders import fill_log

runner = CliRunner()


def test_checkpoint_proof_and_key_agree(engine: Engine) -> None:
    fill_log(engine, 9)
    key = runner.invoke(app, ["audit", "key"])
    assert key.exit_code == 0, key.output
    verifier = Verifier.parse(key.stdout.strip())

    signed = runner.invoke(app, ["audit", "checkpoint"])
    assert signed.exit_code == 0, signed.output
    checkpoint = open_checkpoint(signed.stdout, verifier, "qamqor.local/audit")
    assert checkpoint.tree_size == 9

    shown = runner.invoke(app, ["audit", "proof", "4"])
    assert shown.exit_code == 0, shown.output
    proof = json.loads(shown.stdout)
    assert proof["tree_size"] == 9
    assert base64.b64decode(proof["root_hash"]) == checkpoint.root_hash
    assert merkle.verify_inclusion(
        4,
        9,
        base64.b64decode(proof["leaf_hash"]),
        [base64.b64decode(h) for h in proof["hashes"]],
        checkpoint.root_hash,
    )
    older = json.loads(runner.invoke(app, ["audit", "proof", "4", "--tree-size", "5"]).stdout)
    assert older["tree_size"] == 5


def test_proof_of_a_missing_entry_fails_with_a_message(engine: Engine) -> None:
    fill_log(engine, 2)
    result = runner.invoke(app, ["audit", "proof", "7"])
    assert result.exit_code == 1
    assert "no audit entry 7 in a tree of 2" in result.stderr
