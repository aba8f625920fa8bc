"""C2SP signed notes and tlog checkpoints against published examples.

- golang.org/x/mod ``sumdb/note/note_test.go`` (TestSign, TestOpen, TestNewVerifier): the
  PeterNeumann signer/verifier keys and the exact signed note. Ed25519 signatures are
  deterministic (RFC 8032), so signing the same text with the same key must reproduce it.
- Two real checkpoints of the Go checksum database, signed by ``sum.golang.org``: one from
  transparency-dev/trillian-tessera ``internal/parse`` tests, verified with the key the Go
  command pins (``sum.golang.org+033de0ae+...``).
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from qamqor.audit.note import (
    CheckpointBody,
    NoteError,
    Signer,
    Verifier,
    key_id,
    load_or_create_signer,
    open_checkpoint,
    open_note,
    parse_note,
)

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpR"
    "Zb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33W"
    "Wd1RvMc+QQ=\n"
)
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINTS = [
    (
        "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n"
        "— sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8o"
        "W9/C8DJ87F61QqspBYwM=\n",
        31700353,
        "qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=",
    ),
    (
        "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
        "— sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cV"
        "tYspg3dxXABkGZZKdsQ8=\n",
        65209736,
        "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=",
    ),
]


def test_go_keys_round_trip_and_sign_the_published_note() -> None:
    signer = Signer.parse(GO_SKEY)
    assert str(signer) == GO_SKEY
    assert str(signer.verifier) == GO_VKEY
    assert str(Verifier.parse(GO_VKEY)) == GO_VKEY
    assert signer.sign(GO_TEXT) == GO_TEXT + "\n" + PETER_SIG


def test_key_id_is_the_c2sp_formula() -> None:
    verifier = Verifier.parse(GO_VKEY)
    assert key_id("PeterNeumann", verifier.public_bytes) == 0xC74F20A3
    assert verifier.key_id == 0xC74F20A3


def test_open_verifies_the_signer_and_ignores_other_keys() -> None:
    peter = Verifier.parse(GO_VKEY)
    enoch = Verifier.parse(ENOCH_VKEY)
    message = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(message, peter) == GO_TEXT
    assert open_note(message, enoch) == GO_TEXT  # Enoch's signature from note_test.go
    note = parse_note(message)
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert [s.key_id for s in note.signatures] == [0xC74F20A3, 0xAF0CFE78]


@pytest.mark.parametrize(
    "message",
    [
        GO_TEXT,  # no signatures
        GO_TEXT + "\n",
        GO_TEXT + "\n" + PETER_SIG[:-1] + "\x01\n",
        "\x01" + GO_TEXT + "\n" + PETER_SIG,
        GO_TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSN"
        "XgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
        GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        GO_TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes_are_refused(message: str) -> None:
    # the bad messages of note_test.go TestOpen
    with pytest.raises(NoteError):
        open_note(message, Verifier.parse(GO_VKEY))


def test_a_changed_text_or_signature_fails() -> None:
    peter = Verifier.parse(GO_VKEY)
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(GO_TEXT.replace("answer", "question") + "\n" + PETER_SIG, peter)
    broken = PETER_SIG[:60] + "ABCD" + PETER_SIG[64:]
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(GO_TEXT + "\n" + broken, peter)
    with pytest.raises(NoteError, match="not signed by"):
        open_note(GO_TEXT + "\n" + ENOCH_SIG, peter)


def test_verifier_key_manglings_are_refused() -> None:
    # note_test.go TestNewVerifier: every strict substring and every changed byte fails
    for i in range(len(GO_VKEY)):
        for j in range(i + 1, len(GO_VKEY) + 1):
            if (i, j) != (0, len(GO_VKEY)):
                with pytest.raises(NoteError):
                    Verifier.parse(GO_VKEY[i:j])
    for i in range(len(GO_VKEY)):
        changed = GO_VKEY[:i] + chr(ord(GO_VKEY[i]) + 1) + GO_VKEY[i + 1 :]
        with pytest.raises(NoteError):
            Verifier.parse(changed)
    for bad in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(NoteError):
            Verifier.parse(bad)


@pytest.mark.parametrize(("message", "size", "root"), SUMDB_CHECKPOINTS)
def test_real_go_checksum_database_checkpoints_verify(message: str, size: int, root: str) -> None:
    body = open_checkpoint(message, Verifier.parse(SUMDB_VKEY), origin="go.sum database tree")
    assert (body.tree_size, body.root_hash) == (size, base64.b64decode(root))
    assert body.text() + "\n" + message.split("\n\n", 1)[1] == message
    tampered = message.replace(str(size), str(size + 1))
    with pytest.raises(NoteError):
        open_checkpoint(tampered, Verifier.parse(SUMDB_VKEY))
    with pytest.raises(NoteError, match="not 'qamqor"):
        open_checkpoint(message, Verifier.parse(SUMDB_VKEY), origin="qamqor.local/audit")


def test_checkpoint_body_format() -> None:
    body = CheckpointBody("example.com/log", 42, bytes(range(32)))
    text = body.text()
    assert text == ("example.com/log\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
    assert CheckpointBody.parse(text) == body
    assert CheckpointBody.parse(text + "ext line\n").extensions == ("ext line",)
    for bad in (
        "example.com/log\n-42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "example.com/log\n042\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "example.com/log\n42\nthisisnotright\n",
        "42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "example.com/log\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ):
        with pytest.raises(NoteError):
            CheckpointBody.parse(bad)


def test_key_file_is_created_private_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-log.key"
    first = load_or_create_signer(path, "qamqor.test/log")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+qamqor.test/log+")
    second = load_or_create_signer(path, "qamqor.test/log")
    assert str(second) == str(first)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    with pytest.raises(NoteError, match="QAMQOR_AUDIT_ORIGIN"):
        load_or_create_signer(path, "another.origin")
    with pytest.raises(NoteError):
        Signer.generate("has space")
