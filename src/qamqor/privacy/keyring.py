"""The keyring of field encryption: 256-bit AES keys with ids, one of them active.

The keys live in one JSON file outside the database (``QAMQOR_KEYRING_PATH``, by default
``var/keys/keyring.json``), mode 0600, created on first use. A database dump therefore holds
only ciphertext; whoever has the file and the dump can read everything, so the file is backed
up apart from the database and never with it.

New values are encrypted under the active key; every key that still has values stays in the
file. Retiring a key deletes its material and keeps only its id and dates, so a value left
under it can no longer be read (``fields.retire_key`` refuses while any value uses it).

The file also holds the salt of retention's pseudonyms (``pseudonym_salt``), generated once
and never rotated: the pseudonym of an IIN must stay the same from one retention run to the
next so anonymised facts still group by person.

Every change is a read-modify-write under an exclusive ``flock`` on ``<file>.lock`` and lands
by an atomic rename of a fully written, fsynced temporary file, so a reader sees the old file
or the new one, never half of one.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qamqor.kit.errors import QamqorError
from qamqor.kit.settings import get_settings

FORMAT = "qamqor-keyring/1"
KEY_BYTES = 32  # AES-256
SALT_BYTES = 32
# 'k' and 12 hex digits: fixed length, so SQL can cut the id out of a stored value
# (``substr(value, 4, 13)``) when counting the values under each key.
KEY_ID = re.compile(r"k[0-9a-f]{12}")
KEY_ID_LENGTH = 13


class KeyringError(QamqorError):
    code = "keyring"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Key:
    """One key. ``material`` is None once the key is retired; it never shows in a repr."""

    id: str
    created_at: dt.datetime
    material: bytes | None = field(default=None, repr=False)
    retired_at: dt.datetime | None = None

    @property
    def retired(self) -> bool:
        return self.material is None


@dataclass(frozen=True)
class Keyring:
    path: Path
    active_id: str
    keys: dict[str, Key]
    pseudonym_salt: bytes = field(repr=False)

    @property
    def active(self) -> Key:
        return self.keys[self.active_id]

    def material(self, key_id: str) -> bytes:
        """The material of a key, or KeyringError naming the key (never any value)."""
        key = self.keys.get(key_id)
        if key is None:
            raise KeyringError(
                f"key {key_id} is not in the keyring {self.path}: the value was encrypted with "
                "a key file other than this one"
            )
        if key.material is None:
            raise KeyringError(f"key {key_id} was retired: values under it can no longer be read")
        return key.material

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "active": self.active_id,
            "pseudonym_salt": _b64(self.pseudonym_salt),
            "keys": [
                {
                    "id": key.id,
                    "created_at": key.created_at.isoformat(),
                    "material": None if key.material is None else _b64(key.material),
                    "retired_at": None if key.retired_at is None else key.retired_at.isoformat(),
                }
                for key in sorted(self.keys.values(), key=lambda k: (k.created_at, k.id))
            ],
        }


def keyring_path() -> Path:
    settings = get_settings()
    return settings.keyring_path or settings.var_dir / "keys" / "keyring.json"


def new_key_id(taken: set[str] | frozenset[str] = frozenset()) -> str:
    while True:
        key_id = "k" + secrets.token_hex(6)
        if key_id not in taken:
            return key_id


def _parse(path: Path, text: str) -> Keyring:
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        keys: dict[str, Key] = {}
        for item in data["keys"]:
            key_id = str(item["id"])
            if not KEY_ID.fullmatch(key_id):
                raise ValueError(f"key id {key_id!r} is not k + 12 hex digits")
            material = None
            if item.get("material") is not None:
                material = base64.b64decode(item["material"], validate=True)
                if len(material) != KEY_BYTES:
                    raise ValueError(f"key {key_id} is {len(material) * 8} bits, not 256")
            retired = item.get("retired_at")
            keys[key_id] = Key(
                id=key_id,
                created_at=dt.datetime.fromisoformat(item["created_at"]),
                material=material,
                retired_at=dt.datetime.fromisoformat(retired) if retired else None,
            )
        active = str(data["active"])
        if active not in keys or keys[active].material is None:
            raise ValueError(f"the active key {active!r} is missing or retired")
        salt = base64.b64decode(data["pseudonym_salt"], validate=True)
        if len(salt) != SALT_BYTES:
            raise ValueError("pseudonym_salt is not 32 bytes")
    except (ValueError, KeyError, TypeError) as exc:
        # Messages above name ids and sizes only; no key material can reach them.
        raise KeyringError(f"{path}: not a usable keyring ({exc})") from None
    return Keyring(path=path, active_id=active, keys=keys, pseudonym_salt=salt)


def _check_private(path: Path) -> os.stat_result:
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyringError(
            f"{path} is readable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            "`chmod 600` it: it holds the keys of every encrypted value"
        )
    return info


def _write(path: Path, keyring: Keyring) -> None:
    """Replace the file atomically: a private temporary file, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(keyring.to_json(), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _fresh(path: Path) -> Keyring:
    key = Key(id=new_key_id(), created_at=_now(), material=secrets.token_bytes(KEY_BYTES))
    return Keyring(
        path=path,
        active_id=key.id,
        keys={key.id: key},
        pseudonym_salt=secrets.token_bytes(SALT_BYTES),
    )


# The parsed file per path, with the (inode, mtime, size) it was read at: a key another process
# added is seen at the next ``load`` without re-reading an unchanged file for every value.
_cache: dict[Path, tuple[tuple[int, int, int], Keyring]] = {}


def load(*, create: bool = False, path: Path | None = None) -> Keyring:
    """The keyring; created with one fresh key when ``create`` and there is none yet."""
    path = path or keyring_path()
    if not path.exists():
        if not create:
            raise KeyringError(
                f"no keyring at {path}: encrypted values cannot be read without it (set "
                "QAMQOR_KEYRING_PATH to the key file)"
            )
        with _locked(path):
            if not path.exists():
                _write(path, _fresh(path))
    info = _check_private(path)
    signature = (info.st_ino, info.st_mtime_ns, info.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    keyring = _parse(path, path.read_text("utf-8"))
    _cache[path] = (signature, keyring)
    return keyring


def forget_cache() -> None:
    _cache.clear()


def add_key(*, activate: bool = True, path: Path | None = None) -> Key:
    """Add a fresh key (the active one for new values unless ``activate`` is false)."""
    path = path or keyring_path()
    load(create=True, path=path)
    with _locked(path):
        keyring = _parse(path, path.read_text("utf-8"))
        key = Key(
            id=new_key_id(set(keyring.keys)),
            created_at=_now(),
            material=secrets.token_bytes(KEY_BYTES),
        )
        updated = replace(
            keyring,
            keys={**keyring.keys, key.id: key},
            active_id=key.id if activate else keyring.active_id,
        )
        _write(path, updated)
    return key


def remove_material(key_id: str, *, path: Path | None = None) -> Key:
    """Delete a key's material, keeping its id and dates. Checks nothing in the database:
    call ``fields.retire_key``, which first makes sure no value uses the key."""
    path = path or keyring_path()
    load(path=path)
    with _locked(path):
        keyring = _parse(path, path.read_text("utf-8"))
        key = keyring.keys.get(key_id)
        if key is None:
            raise KeyringError(f"no key {key_id} in {path}")
        if key_id == keyring.active_id:
            raise KeyringError(f"key {key_id} is the active key: add a new one first")
        if key.material is None:
            raise KeyringError(f"key {key_id} is already retired")
        retired = replace(key, material=None, retired_at=_now())
        _write(path, replace(keyring, keys={**keyring.keys, key_id: retired}))
    return retired
