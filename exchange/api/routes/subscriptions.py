"""Routes of standing subscriptions (issue 13).

Partners (RFC 9421-signed POSTs, no bearer token; see ``exchange.api.subscribing``):
``POST /v1/subscriptions`` subscribes, ``/v1/subscriptions/list`` lists its own,
``/v1/subscriptions/{id}/cancel`` cancels one, ``/v1/subscriptions/{id}/periods/{period}``
delivers a due period's release. Every request is a signed POST because the signature
profile covers the body's digest. Operators (bearer token): ``GET /v1/subscriptions``
lists every partner's, with its cost forecast; ``POST /v1/subscriptions/{id}/end`` (bearer token) cancels.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from exchange.api import subscribing
from exchange.api.bodies import read_body
from exchange.api.dependencies import CurrentOperator, NodeDep
from exchange.api.problems import PayloadTooLargeError, documented
from exchange.api.releasing import Answer
from exchange.api.routes.federation import CheckpointSince
from exchange.signing.signatures import RequestMessage, request_from_starlette
from nodes import subscriptions
from nodes.node import Node

router = APIRouter(tags=["federation"])

MAX_BODY_BYTES = 64 * 1024
_SIGNED = {
    200: {"description": "Signed answer (RFC 9421 response signature)"},
    **documented(401, 403, 404, 409, 413, 422, 429, 503),
}
SubscriptionId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Period = Annotated[str, Path(max_length=16, pattern=r"^[0-9]{4}-(W[0-9]{2}|[0-9]{2})$")]


async def _answer(
    request: Request, node: Node, handle: Callable[[RequestMessage, datetime], Answer]
) -> Response:
    try:
        body = await read_body(request, MAX_BODY_BYTES)
    except PayloadTooLargeError:
        raise PayloadTooLargeError.coded("release_query_too_large", limit=MAX_BODY_BYTES) from None
    message = await request_from_starlette(
        request, public_base_url=node.settings.public_url, body=body
    )
    answer = await run_in_threadpool(handle, message, datetime.now(UTC))
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))


@router.post(
    "/v1/subscriptions", responses=_SIGNED, summary="A partner subscribes to a standing question"
)
async def subscribe(request: Request, node: NodeDep) -> Response:
    return await _answer(request, node, lambda m, now: subscribing.create(node, m, now=now))


@router.post(
    "/v1/subscriptions/list", responses=_SIGNED, summary="A partner lists its subscriptions"
)
async def list_own(request: Request, node: NodeDep) -> Response:
    return await _answer(request, node, lambda m, now: subscribing.listing(node, m, now=now))


@router.post(
    "/v1/subscriptions/{subscription_id:int}/cancel",
    responses=_SIGNED,
    summary="A partner cancels one of its subscriptions",
)
async def cancel_own(request: Request, node: NodeDep, subscription_id: SubscriptionId) -> Response:
    return await _answer(
        request, node, lambda m, now: subscribing.cancel(node, m, subscription_id, now=now)
    )


@router.post(
    "/v1/subscriptions/{subscription_id:int}/periods/{period}",
    responses=_SIGNED,
    summary="A partner fetches the release of a due period (made and charged once)",
)
async def fetch_period(
    request: Request,
    node: NodeDep,
    subscription_id: SubscriptionId,
    period: Period,
    checkpoint_since: CheckpointSince = None,
) -> Response:
    return await _answer(
        request,
        node,
        lambda m, now: subscribing.period(node, m, subscription_id, period, now=now),
    )


@router.get(
    "/v1/subscriptions",
    tags=["operator"],
    responses=documented(401, 403),
    summary="Every partner's subscriptions, periods made, ε spent and forecast",
)
async def list_all(node: NodeDep, _operator: CurrentOperator) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        views = subscriptions.listing(node, partner_id=None, now=datetime.now(UTC))
        return {"subscriptions": [subscriptions.as_document(v) for v in views]}

    return await run_in_threadpool(work)


@router.post(
    "/v1/subscriptions/{subscription_id:int}/end",
    tags=["operator"],
    responses=documented(401, 403, 404),
    summary="An operator cancels a subscription",
)
async def cancel_any(
    node: NodeDep, operator: CurrentOperator, subscription_id: SubscriptionId
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        now = datetime.now(UTC)
        sub = subscriptions.cancel(
            node, subscription_id, partner_id=None, actor=f"token:{operator.name}", now=now
        )
        view = subscriptions.overview(node, sub, now=now, partner_view=False)
        return {"subscription": subscriptions.as_document(view)}

    return await run_in_threadpool(work)
