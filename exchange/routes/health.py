"""Liveness and readiness for orchestrators; no data, no authentication."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from exchange.dependencies import NodeDep
from nodes import migrate
from nodes.audit import status as audit_status
from nodes.database import ping

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and its migrations are current")
async def readyz(node: NodeDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    details: dict[str, Any] = {}
    try:
        await run_in_threadpool(ping, node.engine)
        checks["database"] = "ok"
        current = await run_in_threadpool(migrate.current_revision, node.engine)
        head = migrate.head_revision()
        checks["migrations"] = "ok" if current == head else f"at {current}, expected {head}"
        if current == head:  # flagged peers are reported, they do not make this node unready
            now = dt.datetime.now(dt.UTC)
            details["audit"] = await run_in_threadpool(
                functools.partial(audit_status.summary, node.engine, now=now)
            )
    except Exception as exc:  # any failure means not ready; say which
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values()) and "migrations" in checks
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks, "details": details},
        status_code=200 if ready else 503,
    )
