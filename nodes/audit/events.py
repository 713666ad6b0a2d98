"""Entries for requests that were refused: no act happened, so the entry is the only write.

Acts that change state append their entry inside their own transaction (`nodes.audit.log`).
A refused request (a bad or revoked credential, a role that may not use a route, a push
outside a token's scope) changes nothing, so its entry gets a small transaction of its own.
If even that cannot be written, the error propagates: a node that cannot log must not
pretend it did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import Engine

from nodes.audit.log import append
from nodes.audit.vocabulary import Action, Role
from nodes.database import writing

#: The actor (and role) of a request whose credential matches no token.
UNKNOWN: Final = "unknown"


def record_refusal(
    engine: Engine,
    *,
    actor: str,
    role: Role,
    action: Action,
    resource: str,
    reason: str,
    now: datetime,
    partner: str | None = None,
    request_digest: str | None = None,
) -> int:
    """Append a ``denied`` entry in a transaction of its own; return its seq.

    ``reason`` is the message the caller was given (never a credential).
    """
    with writing(engine) as conn:
        return append(
            conn,
            actor=actor,
            role=role,
            action=action,
            resource=resource,
            outcome="denied",
            reason=reason,
            partner=partner,
            request_digest=request_digest,
            now=now,
        )
