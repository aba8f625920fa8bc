"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519, and tlog checkpoints.

A signed note is a text ending in a newline, a blank line, and signature lines
``— <key name> <base64(key id || signature)>``. The Ed25519 signature covers the text with its
final newline. The key id is the first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public
key), big-endian. Keys are written as golang.org/x/mod/sumdb/note does, so Go and other
standard verifiers read them unchanged:

- verifier key ``<name>+<hex key id>+<base64(0x01 || public key)>``;
- signer key ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || Ed25519 seed)>``.

A checkpoint (https://c2sp.org/tlog-checkpoint) is the note text ``<origin>\\n<tree size>\\n
<base64 root hash>\\n``, optionally followed by extension lines, signed by the log.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from qamqor.kit.errors import QamqorError

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "— "  # U+2014 EM DASH, then a space
MAX_SIGNATURES = 100  # golang.org/x/mod/sumdb/note rejects notes with more


class NoteError(QamqorError):
    """A key or note that is malformed or does not verify."""

    code = "bad_note"


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"not base64: {text!r}") from exc


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: int
    public_key: Ed25519PublicKey

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Read ``<name>+<hex id>+<base64(0x01 || key)>``; the id must match the key."""
        parts = vkey.split("+", 2)  # base64 may hold "+" too
        if len(parts) != 3 or not _valid_name(parts[0]) or len(parts[1]) != 8:
            raise NoteError(f"malformed verifier key {vkey!r}")
        name, hex_id, encoded = parts
        try:
            kid = int(hex_id, 16)
        except ValueError as exc:
            raise NoteError(f"malformed verifier key {vkey!r}") from exc
        raw = _b64decode(encoded)
        if len(raw) != 33 or raw[0] != ALG_ED25519 or hex_id != hex_id.lower():
            raise NoteError(f"verifier key {vkey!r} is not an Ed25519 key")
        if key_id(name, raw[1:]) != kid:
            raise NoteError(f"verifier key {vkey!r}: key id does not match the key")
        return cls(name, kid, Ed25519PublicKey.from_public_bytes(raw[1:]))

    @property
    def public_bytes(self) -> bytes:
        return self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_bytes).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def verifies(self, text: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> Signer:
        if not _valid_name(name):
            raise NoteError(f"key name {name!r} may not be empty or hold spaces or '+'")
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """Read ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>``."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not _valid_name(parts[2]):
            raise NoteError("malformed signer key")
        raw = _b64decode(parts[4])
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("signer key is not an Ed25519 key")
        signer = cls(parts[2], Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if f"{signer.verifier.key_id:08x}" != parts[3]:
            raise NoteError("signer key: key id does not match the key")
        return signer

    @property
    def verifier(self) -> Verifier:
        public = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, key_id(self.name, public), self.private_key.public_key())

    def __str__(self) -> str:
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        encoded = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id:08x}+{encoded}"

    def sign(self, text: str) -> str:
        """The signed note: ``text``, a blank line, and this key's signature line."""
        _check_text(text)
        signature = self.private_key.sign(text.encode())
        blob = self.verifier.key_id.to_bytes(4, "big") + signature
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("note text must end in one newline and hold no blank line")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note text may hold no control character but newline")


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: int
    signature: bytes


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[Signature, ...]


def parse_note(message: str) -> Note:
    """Split a signed note into its text and signature lines (nothing verified yet)."""
    if any(ord(c) < 0x20 and c != "\n" for c in message):
        raise NoteError("malformed note: control character")
    split = message.rfind("\n\n")
    if split < 0 or not message.endswith("\n"):
        raise NoteError("malformed note: no blank line before the signatures")
    text, lines = message[: split + 1], message[split + 2 :].splitlines()
    if not lines or len(lines) > MAX_SIGNATURES:
        raise NoteError("malformed note: no signature lines, or too many")
    signatures = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"malformed signature line {line!r}")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not _valid_name(name) or " " in encoded:
            raise NoteError(f"malformed signature line {line!r}")
        blob = _b64decode(encoded)
        if len(blob) < 5:
            raise NoteError(f"malformed signature line {line!r}")
        signatures.append(Signature(name, int.from_bytes(blob[:4], "big"), blob[4:]))
    return Note(text, tuple(signatures))


def open_note(message: str, verifier: Verifier) -> str:
    """The text of ``message`` if ``verifier``'s key signed it; NoteError otherwise.

    Signatures by other keys are ignored (a note may carry witnesses' cosignatures), as the
    signed-note spec asks; a signature by this key that does not verify rejects the note.
    """
    note = parse_note(message)
    mine = [s for s in note.signatures if (s.name, s.key_id) == (verifier.name, verifier.key_id)]
    if not mine:
        raise NoteError(f"note is not signed by {verifier.name}+{verifier.key_id:08x}")
    if not verifier.verifies(note.text.encode(), mine[0].signature):
        raise NoteError(f"invalid signature for key {verifier.name}+{verifier.key_id:08x}")
    return note.text


# --- checkpoints (c2sp.org/tlog-checkpoint) --------------------------------------------------


@dataclass(frozen=True)
class CheckpointBody:
    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [
            self.origin,
            str(self.tree_size),
            base64.b64encode(self.root_hash).decode(),
            *self.extensions,
        ]
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> CheckpointBody:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or not lines[0]:
            raise NoteError("malformed checkpoint: needs origin, size and root lines")
        size_text, root_text = lines[1], lines[2]
        if not size_text.isascii() or not size_text.isdigit() or size_text != str(int(size_text)):
            raise NoteError(f"malformed checkpoint tree size {size_text!r}")
        root_hash = _b64decode(root_text)
        if len(root_hash) != 32:
            raise NoteError("malformed checkpoint root hash: not 32 bytes")
        return cls(lines[0], int(size_text), root_hash, tuple(lines[3:-1]))


def open_checkpoint(message: str, verifier: Verifier, origin: str | None = None) -> CheckpointBody:
    """Verify a signed checkpoint and read it; ``origin`` (if given) must match its first line."""
    body = CheckpointBody.parse(open_note(message, verifier))
    if origin is not None and body.origin != origin:
        raise NoteError(f"checkpoint is for log {body.origin!r}, not {origin!r}")
    return body


# --- the log's key file ----------------------------------------------------------------------


def load_or_create_signer(path: Path, name: str) -> Signer:
    """The signer stored at ``path``, created (mode 0600) on first use.

    Creation is race-free across processes: the key is written to a private temporary file
    and hard-linked into place, which fails if another process got there first; then
    everyone reads the one file that won.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        signer = Signer.generate(name)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{signer}\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: use its key
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    signer = Signer.parse(path.read_text("ascii"))
    if signer.name != name:
        raise NoteError(
            f"the key in {path} is for log {signer.name!r}, but QAMQOR_AUDIT_ORIGIN is {name!r}"
        )
    return signer
