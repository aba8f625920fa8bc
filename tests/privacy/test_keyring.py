"""The key file: created on first use, private, one active key, atomic changes, no leaks."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from qamqor.kit.settings import get_settings
from qamqor.privacy import keyring
from qamqor.privacy.keyring import KEY_ID, KeyringError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_use_creates_a_private_file_with_one_active_256_bit_key() -> None:
    path = keyring.keyring_path()
    assert path == get_settings().var_dir / "keys" / "keyring.json"
    assert not path.exists()

    ring = keyring.load(create=True)

    assert path.exists()
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert list(ring.keys) == [ring.active_id]
    assert KEY_ID.fullmatch(ring.active_id)
    assert ring.active.material is not None and len(ring.active.material) == 32
    assert len(ring.pseudonym_salt) == 32
    # the next load reads the same keys
    keyring.forget_cache()
    again = keyring.load()
    assert again.active_id == ring.active_id
    assert again.active.material == ring.active.material


def test_reading_without_a_keyring_is_an_error_naming_the_setting() -> None:
    with pytest.raises(KeyringError, match="QAMQOR_KEYRING_PATH"):
        keyring.load()
    assert not keyring.keyring_path().exists()


def test_the_setting_moves_the_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "vault" / "qamqor.keys"
    monkeypatch.setenv("QAMQOR_KEYRING_PATH", str(elsewhere))
    get_settings.cache_clear()
    ring = keyring.load(create=True)
    assert ring.path == elsewhere
    assert elsewhere.exists()
    assert not (get_settings().var_dir / "keys" / "keyring.json").exists()


def test_a_file_others_can_read_is_refused() -> None:
    path = keyring.load(create=True).path
    os.chmod(path, 0o644)
    keyring.forget_cache()
    with pytest.raises(KeyringError, match="chmod 600"):
        keyring.load()


def test_a_new_key_becomes_active_and_the_old_one_is_kept() -> None:
    first = keyring.load(create=True).active
    second = keyring.add_key()
    ring = keyring.load()
    assert ring.active_id == second.id != first.id
    assert set(ring.keys) == {first.id, second.id}
    assert ring.material(first.id) == first.material
    assert _mode(ring.path) == 0o600

    third = keyring.add_key(activate=False)
    assert keyring.load().active_id == second.id
    assert third.id in keyring.load().keys


def test_retiring_deletes_the_material_but_not_the_id() -> None:
    old = keyring.load(create=True).active
    new = keyring.add_key()
    with pytest.raises(KeyringError, match="active key"):
        keyring.remove_material(new.id)

    retired = keyring.remove_material(old.id)

    assert retired.retired and retired.retired_at is not None
    ring = keyring.load()
    assert ring.keys[old.id].material is None
    assert old.material is not None
    assert base64.b64encode(old.material).decode() not in ring.path.read_text()
    with pytest.raises(KeyringError, match="retired"):
        ring.material(old.id)
    with pytest.raises(KeyringError, match="already retired"):
        keyring.remove_material(old.id)
    with pytest.raises(KeyringError, match="not in the keyring"):
        ring.material("k000000000000")


def test_no_repr_and_no_error_shows_key_material() -> None:
    ring = keyring.load(create=True)
    material = base64.b64encode(ring.active.material or b"").decode()
    salt = base64.b64encode(ring.pseudonym_salt).decode()
    shown = repr(ring) + repr(ring.active) + str(ring.keys)
    assert material not in shown and salt not in shown
    assert repr(ring.active.material) not in shown

    data = json.loads(ring.path.read_text())
    data["keys"][0]["material"] = base64.b64encode(b"short").decode()
    ring.path.write_text(json.dumps(data))
    keyring.forget_cache()
    with pytest.raises(KeyringError, match="not 256") as refused:
        keyring.load()
    assert salt not in str(refused.value)


def test_another_process_s_new_key_is_seen_without_restarting() -> None:
    first = keyring.load(create=True)
    path = first.path
    data = json.loads(path.read_text())
    key_id = "k" + "ab" * 6
    data["keys"].append(
        {
            "id": key_id,
            "created_at": "2026-11-29T07:00:00+00:00",
            "material": base64.b64encode(b"\x01" * 32).decode(),
            "retired_at": None,
        }
    )
    data["active"] = key_id
    path.write_text(json.dumps(data))  # another process's write: the cache is not told
    assert keyring.load().active_id == key_id


def _create_and_report(path: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(keyring.load(create=True, path=Path(path)).active_id)


def test_processes_creating_it_at_once_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "keyring.json"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [
        context.Process(target=_create_and_report, args=(str(path), queue)) for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    ids = {queue.get(timeout=5) for _ in workers}
    assert len(ids) == 1
    assert keyring.load(path=path).active_id in ids
