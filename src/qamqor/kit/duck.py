"""DuckDB engines for the compute path (profiles, quality, rules): local, locked, no network.

Feature and rule expressions are untrusted input even after sqlglot has checked them, so once
the facts are loaded the engine is locked: no file or network access, no extension loading,
and no further ``SET`` can undo that (``lock_configuration``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from qamqor.kit.settings import get_settings


@contextmanager
def compute_engine(purpose: str, on_disk: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB with its own directory under ``var/staging``, deleted afterwards.

    ``on_disk`` keeps the database in a file there instead of in memory: for the whole
    country, whose facts exceed the memory limit, the buffer manager then evicts pages to the
    file rather than failing; a handful of households stays in memory.
    """
    settings = get_settings()
    settings.staging_dir.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=settings.staging_dir))
    con = duckdb.connect(
        str(spill / f"{purpose}.duckdb") if on_disk else ":memory:",
        config={
            "memory_limit": settings.compute_memory_limit,
            "threads": settings.compute_threads,
            "temp_directory": str(spill),
            "preserve_insertion_order": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )
    con.execute("SET enable_progress_bar = false")  # a session option, not a global one
    try:
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """From here on the engine reads only what is already loaded, and stays that way."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
