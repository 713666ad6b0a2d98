"""Partner-facing routes: the public node descriptor and signed release requests.

``POST /v1/releases`` takes no bearer token: a partner node is authenticated only by an
RFC 9421 signature with a key in this node's peer registry (see ``exchange.api.releasing``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from exchange.api import releasing
from exchange.api.bodies import read_body
from exchange.api.dependencies import NodeDep
from exchange.api.problems import PayloadTooLargeError, documented
from exchange.signing import witnessing
from exchange.signing.signatures import request_from_starlette
from nodes import keys
from nodes.descriptor import WELL_KNOWN, NodeDescriptor, build
from nodes.node import Node
from policies.query import ReleaseQuery

router = APIRouter(tags=["federation"])

#: ``?checkpoint_since=N`` of a signed request answered with a release (a pull, a period).
CheckpointSince = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**53,
        description="Tree size of the last checkpoint of ours you accepted: the signed "
        "answer carries a consistency proof from it (covered by your signature)",
    ),
]

#: A release query is a few hundred bytes; anything near this is not one.
MAX_QUERY_BYTES = 64 * 1024

#: The body as validated (`ReleaseQuery`), inline: it nests no other model.
_QUERY_BODY = {
    "requestBody": {
        "required": True,
        "description": "A release query (schema, measures, group_by, filters, since/until, "
        "purpose), signed per RFC 9421 with the partner node's registered Ed25519 key",
        "content": {"application/json": {"schema": ReleaseQuery.model_json_schema()}},
    }
}


def describe(node: Node, now: datetime) -> NodeDescriptor:
    return build(
        node_id=node.settings.node_id,
        name=node.settings.name,
        public_url=node.settings.public_url,
        keys=keys.key_ring(node.settings.keys_dir, now=now),
        schemas=[schema.id for schema in node.registry],
        checkpoint=witnessing.checkpoint_document(node, None)["checkpoint"],
    )


@router.get(
    WELL_KNOWN,
    response_model=NodeDescriptor,
    summary="Who this node is: id, keys with validity, schemas, API base, latest checkpoint",
)
async def node_descriptor(node: NodeDep, response: Response) -> NodeDescriptor:
    response.headers["Cache-Control"] = "public, max-age=300"
    return await run_in_threadpool(describe, node, datetime.now(UTC))


@router.post(
    "/v1/releases",
    responses={
        200: {"description": "The release, signed (RFC 9421 response signature)"},
        **documented(400, 401, 403, 408, 413, 415, 422, 429, 503),
    },
    openapi_extra=_QUERY_BODY,
    summary="A partner node asks for a differentially private aggregate",
)
async def create_release(
    request: Request,
    node: NodeDep,
    checkpoint_since: CheckpointSince = None,
) -> Response:
    try:
        body = await read_body(request, MAX_QUERY_BYTES)
    except PayloadTooLargeError:
        raise PayloadTooLargeError.coded("release_query_too_large", limit=MAX_QUERY_BYTES) from None
    message = await request_from_starlette(
        request, public_base_url=node.settings.public_url, body=body
    )
    answer = await run_in_threadpool(releasing.answer, node, message, now=datetime.now(UTC))
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))
