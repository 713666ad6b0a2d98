"""The node's ASGI application, built from settings by ``create_app`` (never at import time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from exchange import problems
from exchange.routes import health, reports, schemas
from nodes.node import Node
from nodes.settings import NodeSettings

DESCRIPTION = """
A node of the crisis data exchange. National agencies push reports into it; partner nodes
pull differentially private aggregates from it; auditors read its tamper-evident log.

Every error is `application/problem+json` (RFC 9457) with a human-readable `detail`.
"""


def create_app(settings: NodeSettings, *, node: Node | None = None) -> FastAPI:
    """Build the app. ``node`` lets tests share an already-open node with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = node is None
        app.state.node = node or Node.open(settings)
        try:
            yield
        finally:
            if opened:
                app.state.node.close()

    app = FastAPI(
        title=f"Crisis exchange node {settings.node_id}",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(reports.router)
    app.include_router(schemas.router)
    app.include_router(health.router)
    return app
