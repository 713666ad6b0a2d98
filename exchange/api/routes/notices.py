"""Partner-facing correction notices: ``POST /v1/notices`` lists the caller's own, signed.

The same RFC 9421 profile as ``POST /v1/releases`` (``exchange.api.releasing``): the
signature and the nonce first (401, unsigned, nothing audited as fetched), then the
partner's notices after ``from``, in a response signed with the node's key and bound to
the request. An invalid body is a signed 422. POST, not GET: the profile covers the body's
digest and content type, and the nonce makes every fetch a request of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from exchange.api import problems, releasing, strict_json
from exchange.api.bodies import read_body
from exchange.api.dependencies import NodeDep
from exchange.api.partner_auth import Partner, PartnerAuthError, authenticate
from exchange.api.problems import PayloadTooLargeError, documented
from exchange.clients.notices import NOTICES_PATH, NOTICES_TYPE
from exchange.signing.signatures import RequestMessage, request_from_starlette
from nodes import notices
from nodes.node import Node

router = APIRouter(tags=["federation"])

#: ``{"from": N}`` is a few bytes; the bound is the release route's, so a fuzzer's
#: schema-violating body meets the 422 of validation, not a 413, as there.
MAX_NOTICE_QUERY_BYTES = 64 * 1024


class NoticeQuery(BaseModel):
    """Which notices: those with ids above ``from`` (0, or the last one you received)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    after: int = Field(default=0, alias="from", ge=0, le=2**53)


_QUERY_BODY = {
    "requestBody": {
        "required": True,
        "description": "Notices after this id, signed per RFC 9421 with the partner node's "
        "registered Ed25519 key",
        "content": {"application/json": {"schema": NoticeQuery.model_json_schema()}},
    }
}


def _invalid(detail: str) -> tuple[int, str, bytes]:
    problem = {
        "type": "urn:exchange:problem:invalid-request",
        "title": "Invalid request",
        "status": 422,
        "detail": detail,
    }
    return 422, problems.PROBLEM_JSON, releasing.signed_json(problem)


def _outcome(
    node: Node, partner: Partner, message: RequestMessage, now: datetime
) -> tuple[int, str, bytes]:
    try:
        asked = NoticeQuery.model_validate(strict_json.loads(message.body))
    except strict_json.StrictJsonError as exc:
        return _invalid(f"body: {exc}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return _invalid(f"{where}: {first.get('msg', 'invalid')}")
    page, more = notices.fetch(node.engine, partner_id=partner.peer_id, after=asked.after, now=now)
    document = {
        "type": NOTICES_TYPE,
        "provider": {"id": node.settings.node_id, "name": node.settings.name},
        "recipient": {"id": partner.peer_id, "key_id": partner.key_id},
        "notices": [notice.document() for notice in page],
        "more": more,
    }
    return 200, "application/json", releasing.signed_json(document)


def answer(node: Node, message: RequestMessage, *, now: datetime) -> releasing.Answer:
    """Authenticate, list, sign; runs in a worker thread (it blocks on the database)."""
    try:
        partner = authenticate(node, message, now=now)
    except PartnerAuthError as exc:
        return releasing.unauthorized(exc)
    sign = releasing.response_signer(node, message, partner, now=now)
    return sign(*_outcome(node, partner, message, now))


@router.post(
    NOTICES_PATH,
    responses={
        200: {"description": "The caller's correction notices, signed (RFC 9421)"},
        **documented(400, 401, 408, 413, 415, 422, 503),
    },
    openapi_extra=_QUERY_BODY,
    summary="A partner node fetches the correction notices about releases it received",
)
async def fetch_notices(request: Request, node: NodeDep) -> Response:
    try:
        body = await read_body(request, MAX_NOTICE_QUERY_BYTES)
    except PayloadTooLargeError:
        raise PayloadTooLargeError.coded(
            "notice_query_too_large", limit=MAX_NOTICE_QUERY_BYTES
        ) from None
    message = await request_from_starlette(
        request, public_base_url=node.settings.public_url, body=body
    )
    answered = await run_in_threadpool(answer, node, message, now=datetime.now(UTC))
    return Response(answered.body, status_code=answered.status, headers=dict(answered.headers))
