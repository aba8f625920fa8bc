"""Documentation that cannot fall behind: every command, setting and route is in the README."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from qamqor.cli import app
from qamqor.kit.settings import Settings
from qamqor.web.app import create_app

ROOT = Path(__file__).parent.parent
# The README and the feature guides it links to under docs/ are one body of documentation.
README = "\n".join(
    p.read_text("utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
)


def _commands(group: Any, prefix: str) -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):
            found.extend(_commands(command, path))
        else:
            found.append(path)
    return found


def test_every_cli_command_is_documented() -> None:
    group = typer.main.get_command(app)
    commands = _commands(group, "qamqor")
    assert "qamqor ingest" in commands
    missing = [c for c in commands if f"`{c}" not in README]
    assert not missing, f"README does not document: {missing}"


def test_every_setting_is_documented() -> None:
    missing = [
        f"QAMQOR_{name.upper()}"
        for name in Settings.model_fields
        if f"QAMQOR_{name.upper()}" not in README
    ]
    assert not missing, f"README does not document: {missing}"


def _route_paths() -> list[str]:
    """Every route's full path. FastAPI 0.165 keeps included routers as objects of their own
    in ``app.routes`` (no ``path``); ``iter_route_contexts`` walks into them."""
    import fastapi.routing

    routes = create_app().routes
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    items = list(walk(routes)) if walk is not None else routes
    return [str(getattr(r, "path", "")) for r in items]


def test_every_api_route_is_documented() -> None:
    routes = [p for p in _route_paths() if p.startswith(("/api", "/healthz"))]
    assert "/api/v1/registry/sources" in routes and "/api/v1/quality/scorecard" in routes
    missing = [path for path in routes if f"`{path}`" not in README and f"{path}`" not in README]
    assert not missing, f"README does not document: {missing}"


def test_quick_start_begins_with_the_two_commands() -> None:
    quick = (ROOT / "README.md").read_text("utf-8").split("## Quick start", 1)[1]
    commands = [line.strip() for line in quick.splitlines() if line.strip().startswith("make ")]
    assert commands[:2] == ["make demo", "make test"]


def test_every_rejection_reason_is_documented() -> None:
    from qamqor.registry.validation import REASON_CHECKS

    missing = [code for code in REASON_CHECKS if f"`{code}" not in README]
    assert not missing, f"README does not document: {missing}"
