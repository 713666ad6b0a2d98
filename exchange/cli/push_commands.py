"""Pushing a report file to a node (filled in below)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Registered once the push client exists."""
