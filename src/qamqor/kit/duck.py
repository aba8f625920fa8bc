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
def compute_engine(purpose: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB that spills to its own directory under ``var/staging``."""
    settings = get_settings()
    settings.staging_dir.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=settings.staging_dir))
    con = duckdb.connect(
        config={
            "memory_limit": settings.compute_memory_limit,
            "threads": settings.compute_threads,
            "temp_directory": str(spill),
            "preserve_insertion_order": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    try:
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """From here on the engine reads only what is already loaded, and stays that way."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
