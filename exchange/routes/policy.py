"""The operator's policy check: what would a partner get, at what cost, and why.

Operator-only (bearer token with role ``operator``). It evaluates the node's policy and
reads the ledger, but releases nothing and spends nothing. There is deliberately no
partner-facing release route here: partners pull through signed requests only.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from exchange.dependencies import CurrentOperator, NodeDep
from exchange.problems import PROBLEM_JSON, Problem, documented
from nodes import releases
from policies.query import ReleaseQuery

router = APIRouter(prefix="/v1/policy", tags=["operator"])

_UNPARSABLE = {
    "description": "The body is not JSON",
    "model": Problem,
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


class PolicyCheck(BaseModel):
    """A partner and the query it would send."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partner_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,31}$", examples=["XB"])
    query: ReleaseQuery


@router.post(
    "/check",
    responses={**documented(401, 403, 422), 400: _UNPARSABLE},
    summary="Decide a partner's query without releasing or spending anything",
)
async def check_policy(
    body: PolicyCheck, _operator: CurrentOperator, node: NodeDep
) -> dict[str, Any]:
    """The decision, its reasons, the effective query, the cost and the budget it would leave.
    A denial is a normal answer here (``allowed: false``), not an error."""
    decision = await run_in_threadpool(
        functools.partial(
            releases.check,
            node,
            partner_id=body.partner_id,
            query=body.query,
            now=dt.datetime.now(dt.UTC),
        )
    )
    return decision.summary()
