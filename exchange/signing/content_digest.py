"""Content-Digest (RFC 9530): the body integrity that a message signature covers.

A signature covers the ``Content-Digest`` header, not the body; checking the body against
the digest is ours to do (``http-message-signatures`` leaves it to the caller).

The base of our signature errors lives here, in the lowest layer that can fail, so that
both this module and :mod:`exchange.signing.signatures` can raise them; import them from there.
"""

from __future__ import annotations

from typing import Final

from http_message_signatures import ContentDigest, HTTPMessageSignaturesException


class SignatureError(Exception):
    """The message is not authenticated; its text is safe to show the sender."""


class DigestMismatchError(SignatureError):
    """The body is not the one its Content-Digest describes."""


class _Sha512Digest(ContentDigest):
    algorithm = "sha-512"


_DIGESTS: Final[dict[str, type[ContentDigest]]] = {
    "sha-256": ContentDigest,
    "sha-512": _Sha512Digest,
}


def content_digest(body: bytes, algorithm: str = "sha-256") -> str:
    """The Content-Digest field value for ``body``: the bytes as sent, after any coding.

    ``algorithm`` is ``sha-256`` (what we send) or ``sha-512``; raises ``ValueError``
    for anything else.
    """
    if algorithm not in _DIGESTS:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return str(_DIGESTS[algorithm].create(body))


def verify_content_digest(value: str, body: bytes) -> None:
    """Check every member of a Content-Digest value (sha-256, sha-512) against ``body``.

    Stricter than RFC 9530, which lets a recipient skip algorithms it does not know: a
    digest we cannot check authenticates nothing. Raises DigestMismatchError for a
    malformed value, an unknown algorithm or a mismatch; returns None otherwise.
    """
    try:
        ContentDigest.verify(value, body)
    except HTTPMessageSignaturesException as exc:
        raise DigestMismatchError("the body does not match its Content-Digest") from exc
