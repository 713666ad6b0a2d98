"""Operators' emergency escalations: propose, approve (a second operator), revoke, list.

The operator's bearer token is the person: the approver's token must not be the
proposer's (`nodes.escalations`). A refusal is 403 with every reason (``reasons``) and,
when a red line refused it, that red line (``rule``).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from exchange.api.dependencies import CurrentOperator, NodeDep
from exchange.api.problems import documented
from nodes import escalations
from policies.document import MAX_ESCALATION_HOURS
from policies.escalation import Proposal, Widening

router = APIRouter(prefix="/v1/escalations", tags=["operator"])

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
EscalationId = Path(ge=1, le=2**31 - 1, description="The escalation's number")


class ProposalBody(BaseModel):
    """What an operator proposes: which agreement, for whom, what it widens, how long, why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agreement: str = Field(pattern=_ID, examples=["XB-epi-2026"])
    partners: tuple[str, ...] = Field(default=(), max_length=64, description="Default: all")
    widen: Widening
    hours: int = Field(ge=1, le=MAX_ESCALATION_HOURS)
    reason: str = Field(min_length=1, max_length=1000)


@router.get("", responses={**documented(401, 403)}, summary="Every escalation, newest first")
async def list_escalations(_operator: CurrentOperator, node: NodeDep) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    found = await run_in_threadpool(escalations.listing, node.engine)
    return [e.summary(now) for e in found]


@router.post(
    "",
    status_code=201,
    responses={**documented(400, 401, 403, 422)},
    summary="Propose an emergency escalation; nothing changes until a second operator approves",
)
async def propose(body: ProposalBody, operator: CurrentOperator, node: NodeDep) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    proposal = Proposal(body.agreement, body.partners, body.widen, body.hours)
    made = await run_in_threadpool(
        functools.partial(
            escalations.propose,
            node.engine,
            node.policy,
            operator=operator,
            proposal=proposal,
            reason=body.reason,
            now=now,
        )
    )
    return made.summary(now)


@router.post(
    "/{escalation_id}/approve",
    responses={**documented(401, 403, 404, 409)},
    summary="Approve another operator's proposal: in force at once, on every worker",
)
async def approve(
    operator: CurrentOperator, node: NodeDep, escalation_id: int = EscalationId
) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    done = await run_in_threadpool(
        functools.partial(
            escalations.approve,
            node.engine,
            node.policy,
            operator=operator,
            escalation_id=escalation_id,
            now=now,
        )
    )
    return done.summary(now)


@router.post(
    "/{escalation_id}/revoke",
    responses={**documented(401, 403, 404, 409)},
    summary="End an escalation now, or withdraw a proposal",
)
async def revoke(
    operator: CurrentOperator, node: NodeDep, escalation_id: int = EscalationId
) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    done = await run_in_threadpool(
        functools.partial(
            escalations.revoke,
            node.engine,
            operator=operator,
            escalation_id=escalation_id,
            now=now,
        )
    )
    return done.summary(now)
