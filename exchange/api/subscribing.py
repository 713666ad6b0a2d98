"""Answering a partner's signed subscription requests, as ``exchange.api.releasing`` answers
pulls: the signature and nonce first (401, unsigned), then the work, then an answer signed
and bound to the request; refusals are signed problems.

Each delivered period is its own signed answer carrying the ``crisis-exchange/release``
document a pull gets, so the partner stores and verifies it like any received release.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exchange.api import problems, strict_json
from exchange.api.partner_auth import Partner, PartnerAuthError, authenticate
from exchange.api.releasing import (
    Answer,
    problem_json,
    release_document,
    response_signer,
    signed_json,
    unauthorized,
)
from exchange.signing import witnessing
from exchange.signing.signatures import RequestMessage
from nodes import subscriptions
from nodes.node import Node
from policies.query import ReleaseQuery
from schemas.errors import ExchangeError

Outcome = tuple[int, str, bytes]


class NewSubscription(BaseModel):
    """The body of ``POST /v1/subscriptions``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cadence: str = Field(max_length=8, examples=["week"])
    query: ReleaseQuery


def _ok(document: dict[str, Any]) -> Outcome:
    return 200, "application/json", signed_json(document)


def _refused(exc: ExchangeError) -> Outcome:
    status, title = problems.status_of(exc)
    return status, problems.PROBLEM_JSON, problem_json(status, title, str(exc), **exc.problem_extra)


def _signed(
    node: Node, message: RequestMessage, now: datetime, work: Callable[[Partner], Outcome]
) -> Answer:
    try:
        partner = authenticate(node, message, now=now)
    except PartnerAuthError as exc:
        return unauthorized(exc)
    sign = response_signer(node, message, partner, now=now)
    try:
        return sign(*work(partner))
    except ExchangeError as exc:
        return sign(*_refused(exc))


def create(node: Node, message: RequestMessage, *, now: datetime) -> Answer:
    def work(partner: Partner) -> Outcome:
        try:
            body = NewSubscription.model_validate(strict_json.loads(message.body))
        except (strict_json.StrictJsonError, ValidationError) as exc:
            return 422, problems.PROBLEM_JSON, problem_json(422, "Invalid request", str(exc)[:500])
        made = subscriptions.create(
            node, partner_id=partner.peer_id, query=body.query, cadence=body.cadence, now=now
        )
        return _ok({"subscription": subscriptions.as_document(made)})

    return _signed(node, message, now, work)


def listing(node: Node, message: RequestMessage, *, now: datetime) -> Answer:
    def work(partner: Partner) -> Outcome:
        views = subscriptions.listing(node, partner_id=partner.peer_id, now=now)
        return _ok({"subscriptions": [subscriptions.as_document(v) for v in views]})

    return _signed(node, message, now, work)


def cancel(node: Node, message: RequestMessage, subscription_id: int, *, now: datetime) -> Answer:
    def work(partner: Partner) -> Outcome:
        sub = subscriptions.cancel(
            node,
            subscription_id,
            partner_id=partner.peer_id,
            actor=f"partner:{partner.peer_id}",
            now=now,
        )
        view = subscriptions.overview(node, sub, now=now, partner_view=True)
        return _ok({"subscription": subscriptions.as_document(view)})

    return _signed(node, message, now, work)


def period(
    node: Node, message: RequestMessage, subscription_id: int, period: str, *, now: datetime
) -> Answer:
    def work(partner: Partner) -> Outcome:
        # Read before the release commits: a failure here must not follow a charge.
        checkpoint = witnessing.checkpoint_document(node, witnessing.since_of(message.url))
        made = subscriptions.deliver(
            node,
            partner_id=partner.peer_id,
            subscription_id=subscription_id,
            period=period,
            now=now,
        )
        return _ok(release_document(node, partner, made.as_document(), checkpoint=checkpoint))

    return _signed(node, message, now, work)
