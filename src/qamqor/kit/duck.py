"""DuckDB engines for the compute path (profiles, quality, rules): local, locked, no network.

Feature and rule expressions are untrusted input even after sqlglot has checked them, so once
the facts are loaded the engine is locked: no file or network access, no extension loading,
and no further ``SET`` can undo that (``lock_configuration``).

Two kinds of engine. ``compute_engine`` opens one for a run and deletes it afterwards: the
country-wide build and decision (on disk, with the configured memory limit), an
explanation, a simulation. ``compute_engine(..., resident=True)`` instead hands out a scratch
schema on the process's **resident engine**, opened once and locked from the start: the
worker builds and decides a micro-batch a second, and opening a DuckDB took 40-150 ms of each
(80 ms here, twice a cycle). Nothing of one use reaches the next: each gets a fresh cursor (a
connection of its own, whose temporary tables are its own and die with it) and a schema of
its own as the default for what it creates, dropped afterwards; uses take turns on a lock.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from qamqor.kit.settings import get_settings

_CONFIG = {
    "preserve_insertion_order": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


# Optimizer passes the resident engine leaves out. Its statements run over a micro-batch's few
# thousand rows, where any join order is fast, and every statement is planned anew each cycle
# (its tables are new). These two were among the costliest in planning the feature query (1.4
# and 0.8 ms of the optimizer's 5.9 ms at 50 households); alternating 1,000-event worker cycles
# took 5-6 % less CPU without them. Results do not depend on optimizer passes; the country-wide
# engine keeps them all.
RESIDENT_DISABLED_OPTIMIZERS = "join_order,statistics_propagation"


def _spill_dir(purpose: str) -> Path:
    settings = get_settings()
    settings.staging_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=settings.staging_dir))


@contextmanager
def compute_engine(
    purpose: str, on_disk: bool = False, resident: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB with its own directory under ``var/staging``, deleted afterwards.

    ``on_disk`` keeps the database in a file there instead of in memory: for the whole
    country, whose facts exceed the memory limit, the buffer manager then evicts pages to the
    file rather than failing; a handful of households stays in memory.

    ``resident`` (a worker's micro-batches; not with ``on_disk``): a scratch schema on the
    process's resident engine instead, already locked (see the module docstring).
    """
    if resident and not on_disk:
        with _scratch(purpose) as con:
            yield con
        return
    settings = get_settings()
    spill = _spill_dir(purpose)
    con = duckdb.connect(
        str(spill / f"{purpose}.duckdb") if on_disk else ":memory:",
        config={
            "memory_limit": settings.compute_memory_limit,
            "threads": settings.compute_threads,
            "temp_directory": str(spill),
            **_CONFIG,
        },
    )
    con.execute("SET enable_progress_bar = false")  # a session option, not a global one
    try:
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """From here on the engine reads only what is already loaded, and stays that way.

    The resident engine is locked from the start: nothing to do there (and no ``SET`` may
    run); an engine whose configuration is locked with external access still on is refused.
    """
    locked, external = con.execute(
        "SELECT current_setting('lock_configuration'), current_setting('enable_external_access')"
    ).fetchall()[0]
    if locked:
        if external:
            raise RuntimeError("a DuckDB engine locked with external access on")
        return
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


# --- the resident engine ----------------------------------------------------------------------

_resident: tuple[tuple[str, int, Path], duckdb.DuckDBPyConnection] | None = None
_resident_lock = threading.RLock()
_scratch_ids = itertools.count(1)


def _resident_engine() -> duckdb.DuckDBPyConnection:
    """The process's resident engine; opened again when the settings it was opened with
    changed (tests switch the var directory)."""
    global _resident
    settings = get_settings()
    key = (settings.compute_memory_limit, settings.resident_threads, settings.staging_dir)
    if _resident is not None and _resident[0] == key:
        return _resident[1]
    close_resident()
    spill = _spill_dir("resident")
    try:
        con = duckdb.connect(
            ":memory:",
            config={
                "memory_limit": settings.compute_memory_limit,
                "threads": settings.resident_threads,
                "temp_directory": str(spill),
                "disabled_optimizers": RESIDENT_DISABLED_OPTIMIZERS,
                **_CONFIG,
            },
        )
    except BaseException:
        shutil.rmtree(spill, ignore_errors=True)
        raise
    con.execute("SET enable_progress_bar = false")
    # locked before anything is loaded: the facts come in as Arrow, not from files
    lock_down(con)
    _resident = (key, con)
    return con


def close_resident() -> None:
    """Close the resident engine (if open) and delete its spill directory."""
    global _resident
    with _resident_lock:
        if _resident is None:
            return
        (_, _, staging), con = _resident
        spill = Path(con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0])
        con.close()
        _resident = None
        if spill.parent == staging:
            shutil.rmtree(spill, ignore_errors=True)


atexit.register(close_resident)


@contextmanager
def _scratch(purpose: str) -> Iterator[duckdb.DuckDBPyConnection]:
    with _resident_lock:
        cursor = _resident_engine().cursor()
        schema = f"{purpose.replace('-', '_')}_{next(_scratch_ids)}"
        try:
            cursor.execute(f'CREATE SCHEMA "{schema}"')
            cursor.execute(f"SET schema = '{schema}'")
            yield cursor
        finally:
            try:
                cursor.execute(f'DROP SCHEMA IF EXISTS memory."{schema}" CASCADE')
            finally:
                cursor.close()  # its temporary tables and registered views go with it
