"""Authenticating a partner node's request, before any policy, ledger or release work.

A request is a partner's only if: it carries exactly one RFC 9421 signature in our profile
(method, target URI, Content-Digest and content type covered; ``created``, ``nonce``,
``keyid`` and our tag present), ``created`` is inside the window, the key id names a
registered, unrevoked key of a peer not removed, the signature verifies, the body matches
its digest, and the nonce was never seen for that key. The nonce is recorded only then.

Any failure is an :class:`PartnerAuthError` (401): nothing is charged, nothing released,
nothing stored but an audit entry of the rejection, in a small transaction of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.signing.signatures import (
    REQUEST_COMPONENTS,
    DigestMismatchError,
    InvalidSignatureError,
    MissingComponentError,
    MissingSignatureError,
    RequestMessage,
    SignatureError,
    StaleSignatureError,
    UnknownKeyError,
    VerifiedSignature,
    verify_request,
)
from nodes import nonces, peers
from nodes.access import AuthenticationError
from nodes.database import reading
from nodes.node import Node

#: How far a partner's clock may run ahead of ours, in seconds. It is never added to the
#: signature's maximum age: a signature is accepted for exactly that long after ``created``.
CLOCK_SKEW: Final = 5
#: Partners' requests must also cover their content type: how the body is to be read.
PARTNER_COMPONENTS: Final = (*REQUEST_COMPONENTS, "content-type")
#: What we ask of partners, in RFC 9421 ``Accept-Signature`` form, sent with every 401.
#: Only what a signer can honour as written (§5.1): ``created`` has no value in a request
#: (generate one); ``alg`` and ``tag`` are values to use. ``keyid`` and ``nonce`` would be
#: Booleans here (``nonce=?1``), so they are not advertised, though the profile requires
#: them: the 401's problem lists every required parameter (``required_parameters``).
ACCEPT_SIGNATURE: Final = (
    'sig1=("@method" "@target-uri" "content-digest" "content-type");'
    'created;alg="ed25519";tag="crisis-exchange/request"'
)

_KINDS: Final[tuple[tuple[type[Exception], str], ...]] = (
    (MissingSignatureError, "missing_signature"),
    (MissingComponentError, "missing_component"),
    (UnknownKeyError, "unknown_key"),
    (StaleSignatureError, "stale_signature"),
    (DigestMismatchError, "digest_mismatch"),
    (InvalidSignatureError, "invalid_signature"),
    (nonces.ReplayedNonceError, "replayed_nonce"),
    (nonces.InvalidNonceError, "invalid_nonce"),
)
_KEYID = re.compile(r'keyid="([A-Za-z0-9_-]{1,64})"')
_DIGEST = re.compile(r"[A-Za-z0-9-]{1,16}=:[A-Za-z0-9+/=]{1,100}:")


class PartnerAuthError(AuthenticationError):
    """The request is not a registered partner's; ``kind`` says which check failed."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True)
class Partner:
    """An authenticated partner: which peer, which of its keys, what the signature covered."""

    peer_id: str
    signature: VerifiedSignature

    @property
    def key_id(self) -> str:
        return self.signature.key_id


def _kind(exc: Exception) -> str:
    return next((kind for cls, kind in _KINDS if isinstance(exc, cls)), "invalid_signature")


def authenticate(node: Node, message: RequestMessage, *, now: datetime) -> Partner:
    """Return the partner who signed ``message``, or raise PartnerAuthError.

    Database errors (the registry or replay store unreachable) propagate unchanged: an
    outage is not a forgery, and the caller answers it with a 5xx the partner may retry.
    """
    max_age = node.settings.signature_max_age_seconds
    owners: dict[str, str] = {}

    def resolve(kid: str) -> Ed25519PublicKey | None:
        with reading(node.engine) as conn:
            found = peers.resolve(conn, kid, now=now)
        if found is None:
            return None
        owners[kid] = found[0]
        return found[1]

    try:
        verified = verify_request(
            message,
            resolve_key=resolve,
            now=now,
            max_age=max_age,
            clock_skew=CLOCK_SKEW,
            required_components=PARTNER_COMPONENTS,
        )
        nonces.record(
            node.engine,
            key_id=verified.key_id,
            nonce=verified.nonce,
            expires_at=verified.created + timedelta(seconds=max_age),  # stale from then
            now=now,
        )
    except (SignatureError, nonces.ReplayedNonceError, nonces.InvalidNonceError) as exc:
        kind = _kind(exc)
        _audit_rejection(node, message, kind, str(exc), now)
        raise PartnerAuthError(kind, str(exc)) from exc
    return Partner(peer_id=owners[verified.key_id], signature=verified)


def _audit_rejection(
    node: Node, message: RequestMessage, kind: str, detail: str, now: datetime
) -> None:
    """Log who claimed to be asking (unverified, so only well-formed text goes in)."""
    claimed = _KEYID.search(message.header("signature-input") or "")
    digest = message.header("content-digest") or ""
    peers.audit_rejection(
        node.engine,
        claimed_key=claimed.group(1) if claimed else None,
        kind=kind,
        detail=detail,
        request_digest=digest if _DIGEST.fullmatch(digest) else None,
        now=now,
    )
