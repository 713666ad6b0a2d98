"""The node's ASGI application, built from settings by ``create_app`` (never at import time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import Depends, FastAPI

from exchange import ui
from exchange.api import metrics, problems, subscription_tasks
from exchange.api.checkpointing import keep_checkpoints
from exchange.api.dependencies import reject_unknown_query_parameters
from exchange.api.logs import RequestIdMiddleware
from exchange.api.request_guards import RequestGuardMiddleware
from exchange.api.routes import (
    audit,
    dhis2,
    escalations,
    federation,
    health,
    notices,
    policy,
    reports,
    schemas,
    subscriptions,
    uploads,
)
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
        tasks = [
            asyncio.create_task(keep_checkpoints(app.state.node)),
            *subscription_tasks.start(app.state.node),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError):
                    await task
            if opened:
                app.state.node.close()

    app = FastAPI(
        title=f"Crisis exchange node {settings.node_id}",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query_parameters)],
    )
    problems.install(app)
    metrics.install(app)
    app.add_middleware(RequestGuardMiddleware, openapi=lambda: app.openapi(), routes=app.routes)
    app.include_router(reports.router)
    app.include_router(uploads.router)
    app.include_router(schemas.router)
    app.include_router(health.router)
    app.include_router(audit.router)
    app.include_router(policy.router)
    app.include_router(federation.router)
    app.include_router(dhis2.router)
    app.include_router(escalations.router)
    app.include_router(notices.router)
    app.include_router(subscriptions.router)
    ui.install(app)
    app.add_middleware(RequestIdMiddleware)  # added last: outermost, so every answer has its id
    return app
