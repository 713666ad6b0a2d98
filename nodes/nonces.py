"""The replay store: each signature nonce is accepted once per key while it could be fresh.

Nonces live in the database under a unique ``(key_id, nonce)`` constraint, so every worker
and replica sees the same set and the database, not a check-then-insert race, decides
which of two concurrent replays wins. A nonce is kept until its signature would be stale
anyway (``created + max_age + clock_skew``); after that the age check rejects a replay and
the row can go. Expired rows are pruned on each insert (an indexed range delete).

Callers record a nonce only after the signature verified: recording first would let
anyone burn a partner's nonce with a forged request.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from nodes.access import AuthenticationError
from nodes.database import writing
from nodes.federation_tables import NONCE_MAX, nonces


class ReplayedNonceError(AuthenticationError):
    """This key already signed a request with this nonce: a replay, or a client bug."""


class InvalidNonceError(AuthenticationError):
    """The nonce is empty or too long to be one of ours."""


def record(engine: Engine, *, key_id: str, nonce: str, expires_at: datetime, now: datetime) -> None:
    """Accept ``nonce`` for ``key_id`` once, in a transaction of its own.

    Its own transaction, committed before the release is computed: a request that fails
    later (denied, budget exhausted, crash) has still used its nonce, so it can never be
    replayed. Raises ReplayedNonceError if seen before, InvalidNonceError if malformed.
    """
    if not nonce or len(nonce) > NONCE_MAX:
        raise InvalidNonceError(f"the signature nonce must be 1 to {NONCE_MAX} characters")
    try:
        with writing(engine) as conn:
            conn.execute(delete(nonces).where(nonces.c.expires_at < now))
            conn.execute(insert(nonces).values(key_id=key_id, nonce=nonce, expires_at=expires_at))
    except IntegrityError:
        raise ReplayedNonceError(
            "this signature nonce was used before: sign each request anew"
        ) from None
