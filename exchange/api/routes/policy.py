"""The operator's policy routes: apply a new policy; check what a partner would get, and why.

Operator-only (bearer token with role ``operator``). ``POST /v1/policy`` makes a validated
policy the active one of every worker and replica (`Node.apply_policy`); ``/check``
evaluates the node's policy and reads the ledger, but releases nothing and spends nothing.
There is deliberately no partner-facing release route here: partners pull through signed
requests only.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from exchange.api.bodies import read_body
from exchange.api.dependencies import CurrentOperator, NodeDep
from exchange.api.problems import PROBLEM_JSON, Problem, documented
from nodes.releases import pipeline
from policies.document import PolicyError, dotted
from policies.query import ReleaseQuery
from schemas.errors import InvalidInputError

router = APIRouter(prefix="/v1/policy", tags=["operator"])

_UNPARSABLE = {
    "description": "The body is not JSON",
    "model": Problem,
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


#: A policy is a page or two of YAML; a megabyte is far more than any needs.
MAX_POLICY_BYTES = 1024 * 1024
_POLICY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The policy document, as YAML text (the content of a policy.yaml)",
        "content": {"application/yaml": {"schema": {"type": "string"}}},
    }
}


class AppliedPolicy(BaseModel):
    """The policy every worker now runs on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_hash: str
    agreements: int
    red_lines: int


class InvalidPolicyError(InvalidInputError):
    """A policy that does not validate; ``problem_extra`` lists file, place, line and reason."""

    def __init__(self, error: PolicyError) -> None:
        super().__init__(str(error))
        self.problem_extra = {
            "problems": [
                {
                    "file": error.source,
                    "place": dotted(p.place) or "the document",
                    "line": p.line,
                    "reason": p.reason,
                }
                for p in error.problems
            ]
        }


@router.post(
    "",
    responses={**documented(401, 403, 408, 413, 422)},
    openapi_extra=_POLICY_BODY,
    summary="Apply a new policy on every worker and replica; all or nothing",
)
async def apply_policy(request: Request, operator: CurrentOperator, node: NodeDep) -> AppliedPolicy:
    """Validate the YAML body and make it the active policy; a policy that does not
    validate changes nothing (422, naming each problem's place, line and reason)."""
    body = await read_body(request, MAX_POLICY_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("the policy must be UTF-8 text") from None
    try:
        policy = await run_in_threadpool(
            functools.partial(
                node.apply_policy,
                text,
                source="policy.yaml (POST /v1/policy)",
                actor=f"token:{operator.name}",
                now=dt.datetime.now(dt.UTC),
            )
        )
    except PolicyError as exc:
        raise InvalidPolicyError(exc) from None
    return AppliedPolicy(
        policy_hash=policy.hash,
        agreements=len(policy.document.agreements),
        red_lines=len(policy.document.red_lines),
    )


class PolicyCheck(BaseModel):
    """A partner and the query it would send."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partner_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,31}$", examples=["XB"])
    query: ReleaseQuery
    escalation: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="Also decide as if this escalation (proposed or in force) were in force",
    )


@router.post(
    "/check",
    responses={**documented(401, 403, 404, 422), 400: _UNPARSABLE},
    summary="Decide a partner's query without releasing or spending anything",
)
async def check_policy(
    body: PolicyCheck, _operator: CurrentOperator, node: NodeDep
) -> dict[str, Any]:
    """The decision, its reasons, the effective query, the cost and the budget it would leave.
    A denial is a normal answer here (``allowed: false``), not an error. When an escalation
    made the difference, ``without_escalation`` says what the policy alone would answer."""
    _decision, summary = await run_in_threadpool(
        functools.partial(
            pipeline.dry_run,
            node,
            partner_id=body.partner_id,
            query=body.query,
            now=dt.datetime.now(dt.UTC),
            escalation_id=body.escalation,
        )
    )
    return summary
