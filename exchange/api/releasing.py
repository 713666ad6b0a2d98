"""Answering a partner's ``POST /v1/releases``: authenticate, release, sign the answer.

The order is the pull path of DESIGN.md: the signature and the nonce first (401 before
any policy or ledger work, unsigned: there is no verified request to bind a signature
to), then the policy and the ledger (``nodes.releases.pipeline.release``), then a response signed
with the node's current key and bound to the partner's request. Denials (403), exhausted
budgets (429) and invalid queries (422) are signed too, so a partner can prove it was
refused and why.

Nothing is charged or recorded as delivered unless the signed answer can be produced:
everything the answer needs besides the release (the signing key, the binding to the
request's own signature under whatever label its signer chose, our checkpoint and its
proof) is worked out before ``release`` commits the ledger, and a trial signature proves
the binding. What can still fail afterwards is the database itself.

The release document names both nodes, the query, the cells with their accuracy, the
epsilon spent, the policy hash, the release id and the time, plus this node's latest audit
checkpoint. The signature covers the exact bytes sent, which the partner stores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from exchange.api import problems, strict_json
from exchange.api.partner_auth import ACCEPT_SIGNATURE, Partner, PartnerAuthError, authenticate
from exchange.clients.pulling import DOCUMENT_TYPE
from exchange.signing import witnessing
from exchange.signing.signatures import (
    REQUIRED_PARAMETERS,
    RequestMessage,
    ResponseMessage,
    sign_response,
)
from nodes import keys
from nodes.node import Node
from nodes.releases import pipeline
from policies.query import ReleaseQuery
from schemas.errors import ExchangeError

Headers = tuple[tuple[str, str], ...]


def signed_json(document: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace: deterministic, and as fast as the standard library.

    Not RFC 8785: nobody re-serializes a release to check it, the signature covers the
    bytes sent and the partner keeps those bytes. (RFC 8785 costs 10 ms on a 1,000-cell
    release; statements that two parties build independently, such as checkpoints and key
    endorsements, are RFC 8785.)
    """
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Headers
    body: bytes


def problem_json(status: int, title: str, detail: str, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "type": f"urn:exchange:problem:{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return signed_json(body)


def unauthorized(exc: PartnerAuthError) -> Answer:
    """401, unsigned, saying which check failed and what a valid signature looks like."""
    body = problem_json(
        401,
        "Authentication required",
        str(exc),
        signature_error=exc.kind,
        required_parameters=list(REQUIRED_PARAMETERS),
    )
    headers = (
        ("Content-Type", problems.PROBLEM_JSON),
        ("WWW-Authenticate", 'Signature realm="exchange"'),
        ("Accept-Signature", ACCEPT_SIGNATURE),
        ("Cache-Control", "no-store"),
    )
    return Answer(401, headers, body)


def release_document(
    node: Node,
    partner: Partner,
    release: dict[str, Any],
    *,
    since: int | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The signed answer: who to whom, the release, and our checkpoint for witnessing
    (``checkpoint``: a :func:`witnessing.checkpoint_document` read earlier, else read now)."""
    if checkpoint is None:
        checkpoint = witnessing.checkpoint_document(node, since)
    return {
        "type": DOCUMENT_TYPE,
        "provider": {"id": node.settings.node_id, "name": node.settings.name},
        "recipient": {"id": partner.peer_id, "key_id": partner.key_id},
        "release": release,
        **checkpoint,
    }


#: Signs an answer (status, media type, body) to the request it was prepared for.
Signer = Callable[[int, str, bytes], Answer]


def response_signer(
    node: Node, message: RequestMessage, partner: Partner, *, now: datetime
) -> Signer:
    """Everything a signed answer to ``message`` needs, checked before anything is charged.

    The key is read once and a trial answer is signed over the very request and the label
    of its verified signature, so a request that cannot be bound, or a key that cannot be
    read, fails here (with
    nothing charged or recorded) rather than after the ledger committed. Raises whatever
    signing raises (ValueError, OSError).
    """
    key = keys.current_key(node.settings.keys_dir).get()

    def sign(status: int, media_type: str, body: bytes) -> Answer:
        headers = (("Content-Type", media_type), ("Cache-Control", "no-store"))
        response = ResponseMessage(status, headers, body, message)
        signed = sign_response(
            response, private_key=key.private_key, now=now, request_label=partner.signature.label
        )
        return Answer(signed.status, signed.headers, signed.body)

    sign(200, "application/json", b"")
    return sign


def _outcome(
    node: Node, partner: Partner, message: RequestMessage, now: datetime
) -> tuple[int, str, bytes]:
    try:
        # Strictly decoded (duplicate keys, huge integers, deep nesting refused), then
        # validated: only ever after the signature verified.
        query = ReleaseQuery.model_validate(strict_json.loads(message.body))
    except strict_json.StrictJsonError as exc:
        return 422, problems.PROBLEM_JSON, problem_json(422, "Invalid request", f"body: {exc}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        detail = f"{where}: {first.get('msg', 'invalid')}"
        return 422, problems.PROBLEM_JSON, problem_json(422, "Invalid request", detail)
    # Read before the release commits: a failure here must not follow a charge.
    checkpoint = witnessing.checkpoint_document(node, witnessing.since_of(message.url))
    try:
        made = pipeline.release(node, partner_id=partner.peer_id, query=query, now=now)
    except ExchangeError as exc:
        status, title = problems.status_of(exc)
        extra = dict(exc.problem_extra)
        return status, problems.PROBLEM_JSON, problem_json(status, title, str(exc), **extra)
    document = release_document(node, partner, made.as_document(), checkpoint=checkpoint)
    return 200, "application/json", signed_json(document)


def answer(node: Node, message: RequestMessage, *, now: datetime) -> Answer:
    """The whole partner-facing exchange; runs in a worker thread (it blocks on the database)."""
    try:
        partner = authenticate(node, message, now=now)
    except PartnerAuthError as exc:
        return unauthorized(exc)
    sign = response_signer(node, message, partner, now=now)
    return sign(*_outcome(node, partner, message, now))
