"""Background work of standing subscriptions inside ``exchange serve`` (issue 13)."""

from __future__ import annotations

import asyncio

from nodes.node import Node


def start(node: Node) -> list[asyncio.Task[None]]:
    """The tasks to run while the app serves; cancelled at shutdown."""
    return []
