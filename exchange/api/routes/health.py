"""Liveness and readiness for orchestrators.

Both answer without a token, and then say no more than alive, ready or not: the details of
``/readyz`` (migration state, audit log size, flagged peers) tell an outsider how busy the
node is and whom it distrusts, so they are shown to an operator token only. Any other
credential, valid or not, gets the anonymous answer: a probe must never fail on a token.
"""

from __future__ import annotations

import datetime as dt
import functools
from contextlib import suppress
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from exchange.api.dependencies import NodeDep
from nodes import migrate, tokens
from nodes.access import AuthenticationError
from nodes.audit import events as audit_events
from nodes.audit import status as audit_status
from nodes.database import ping
from nodes.node import Node

router = APIRouter(tags=["operations"])


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] | None = None  # operator token only
    details: dict[str, Any] | None = None  # operator token only


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _is_operator(request: Request, node: NodeDep) -> bool:
    """Whether the caller shows a valid operator token. Never raises: the rest get the
    anonymous answer. A bearer secret this node does not accept is audited (``auth.failed``)
    as on any other route, so /readyz is no quiet place to try tokens.

    The header is read by hand: FastAPI's ``HTTPBearer`` would tell the OpenAPI document
    (and every client generated from it) that the token is required here.
    """
    scheme, secret = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not secret:
        return False
    try:
        token = await run_in_threadpool(tokens.authenticate, node.engine, secret)
    except AuthenticationError as exc:
        await run_in_threadpool(_audit_failure, node, exc)
        return False
    except Exception:  # an unreachable database: the check below answers 503
        return False
    return token.role == "operator"


def _audit_failure(node: Node, exc: AuthenticationError) -> None:
    revoked = exc.token if isinstance(exc, tokens.RevokedTokenError) else None
    with suppress(Exception):  # a probe's answer must not depend on the audit log
        audit_events.record_refusal(
            node.engine,
            actor=f"token:{revoked.name}" if revoked else audit_events.UNKNOWN,
            role=revoked.role if revoked else audit_events.UNKNOWN,
            action="auth.failed",
            resource="route:GET /readyz",
            reason=str(exc),
            now=dt.datetime.now(dt.UTC),
        )


@router.get(
    "/readyz",
    summary="Ready or not (details: database, migrations, audit log, with an operator token)",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={503: {"description": "Not ready", "model": Readiness}},
    description="Without a token (or with any token but an operator's): `status` only. "
    "With `Authorization: Bearer <operator token>`: also `checks` and `details`.",
)
async def readyz(node: NodeDep, operator: Annotated[bool, Depends(_is_operator)]) -> JSONResponse:
    ready, checks, details = await readiness(node)
    body: dict[str, Any] = {"status": "ready" if ready else "not ready"}
    if operator:
        body |= {"checks": checks, "details": details}
    return JSONResponse(body, status_code=200 if ready else 503)


async def readiness(node: Node) -> tuple[bool, dict[str, str], dict[str, Any]]:
    """Ready or not, each check's verdict, and the audit log's details: what /readyz tells
    an operator, and what the dashboard's node page shows."""
    checks: dict[str, str] = {}
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
    except Exception as exc:  # any failure means not ready; say which (to an operator)
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values()) and "migrations" in checks
    return ready, checks, details
