"""Signing a transparency review, and checking a signed one against an audit export.

`sign` puts an Ed25519 signature over the review's RFC 8785 bytes with the node key.
`verify` checks a signed review the way an outside reader does, from nothing but the
export (verified by `nodes.reviews.verified_log`) and, optionally, the policy file: the
signature with a key the export trusts, the checkpoint the review names, then every figure
recomputed by `nodes.reviews.transparency.compute`; the first difference is named in words.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from nodes.identity import NodeKey, b64url, b64url_decode, key_id
from nodes.reviews.transparency import REVIEW_TYPE, Head, Period, budgets_as_of, compute
from nodes.reviews.verified_log import VerifiedLog
from policies.accounts import Charge, accounts_of

if TYPE_CHECKING:
    from policies.document import PolicyDocument


class ReviewError(Exception):
    """A review that does not hold: bad form, bad signature, or a figure the log does not give."""


def sign(review: dict[str, Any], key: NodeKey) -> dict[str, Any]:
    """The signed document: the review and an Ed25519 signature over its RFC 8785 bytes."""
    value = key.private_key.sign(rfc8785.dumps(review))
    return {
        "review": review,
        "signature": {"alg": "ed25519", "key_id": key.kid, "value": b64url(value)},
    }


def check_signature(document: Any, keys: Mapping[str, Ed25519PublicKey]) -> dict[str, Any]:
    """The review of a signed document whose signature verifies with one of ``keys``.

    Raises ReviewError saying what is wrong with the document or its signature.
    """
    if not isinstance(document, dict) or set(document) != {"review", "signature"}:
        raise ReviewError("not a signed transparency review (expected review and signature)")
    review, signature = document["review"], document["signature"]
    if not isinstance(review, dict) or review.get("type") != REVIEW_TYPE:
        raise ReviewError(f"the review is not of type {REVIEW_TYPE}")
    if not isinstance(signature, dict) or signature.get("alg") != "ed25519":
        raise ReviewError("the review's signature is not an ed25519 signature")
    kid, value = signature.get("key_id"), signature.get("value")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None or key_id(key) != kid:
        raise ReviewError(
            f"the review is signed by key {str(kid)[:64]!r}, which the export does not trust "
            "(neither the key you gave nor one it endorsed)"
        )
    try:
        raw = b64url_decode(str(value))
        key.verify(raw, rfc8785.dumps(review))
    except (InvalidSignature, binascii.Error, ValueError, rfc8785.CanonicalizationError):
        raise ReviewError(
            f"the review's signature does not verify with key {kid}: it was altered after "
            "signing, or signed by another key"
        ) from None
    return review


def charges_named(review: dict[str, Any]) -> tuple[Charge, ...]:
    """The accounts and caps the review states, to recompute their spending from the log."""
    try:
        return tuple(
            Charge(
                scope=b["scope"],
                partner_id=b["partner"],
                schema_id=b["schema"],
                period=b["period"],
                cap_micro=b["cap_micro"],
            )
            for b in review["budgets"]
        )
    except (KeyError, TypeError, ValueError):
        raise ReviewError("the review's budgets are not in the review format") from None


def verify(
    document: Any,
    log: VerifiedLog,
    *,
    policy: tuple[PolicyDocument, str] | None = None,
) -> dict[str, Any]:
    """Check a signed review against a verified export; return the review.

    The signature must verify with a key the export trusts, the export must hold the named
    checkpoint, and every figure must equal the one recomputed from the entries below it.
    With ``policy`` (the document and its hash), the review must name that hash and its caps
    must be the ones that policy sets; without, the caps are taken as the review states them.
    Raises ReviewError naming the first thing that does not hold.
    """
    review = check_signature(document, log.keys)
    try:
        period = Period.parse(str(review["period"]["name"]))
        named = review["checkpoint"]
        found = log.checkpoint(int(named["tree_size"]), str(named["root_hash"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReviewError(f"the review does not name its period and checkpoint ({exc})") from None
    if review.get("node_id") != log.node_id:
        raise ReviewError(
            f"the review is for node {review.get('node_id')!r}, the export for {log.node_id!r}"
        )
    if found is None:
        raise ReviewError(
            f"the export holds no checkpoint of tree size {named['tree_size']} with root "
            f"{named['root_hash']}: the review was not computed from this log (or the export "
            "is older than the review)"
        )
    head = Head.of_line(found)
    if policy is None:
        charges, policy_hash = charges_named(review), review.get("policy_hash")
    else:
        policy_document, policy_hash = policy
        if review.get("policy_hash") != policy_hash:
            raise ReviewError(
                f"policy_hash: the review names {review.get('policy_hash')}, the policy file "
                f"hashes to {policy_hash}"
            )
        charges = accounts_of(policy_document, budgets_as_of(period, head))
    recomputed = compute(
        log.entries,
        node_id=log.node_id,
        period=period,
        checkpoint=head,
        charges=charges,
        policy_hash=policy_hash if isinstance(policy_hash, str) else None,
    )
    difference = next(differences(review, recomputed), None)
    if difference is not None:
        raise ReviewError(difference)
    return review


_IDENTITY = ("scope", "partner", "schema", "period", "id")


def differences(claimed: Any, recomputed: Any, path: str = "review") -> Iterator[str]:
    """Each place where the review differs from the recomputation, in words."""
    if isinstance(claimed, dict) and isinstance(recomputed, dict):
        for name in sorted(set(claimed) | set(recomputed), key=str):
            where = f"{path}.{name}"
            if name not in recomputed:
                yield f"{where}: the review states it, the recomputation has no such figure"
            elif name not in claimed:
                yield f"{where}: missing from the review; the log gives {recomputed[name]!r}"
            else:
                yield from differences(claimed[name], recomputed[name], where)
    elif isinstance(claimed, list) and isinstance(recomputed, list):
        mine, theirs = _labelled(claimed), _labelled(recomputed)
        for label in list(mine) + [k for k in theirs if k not in mine]:
            where = f"{path}[{label}]"
            if label not in theirs:
                yield f"{where}: the review lists it, the log shows no such row"
            elif label not in mine:
                yield f"{where}: missing from the review; the log gives {theirs[label]!r}"
            else:
                yield from differences(mine[label], theirs[label], where)
    elif type(claimed) is not type(recomputed) or claimed != recomputed:
        yield f"{path}: the review says {claimed!r}, the log gives {recomputed!r}"


def _labelled(items: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index, item in enumerate(items):
        label = str(index)
        if isinstance(item, dict):
            label = " ".join(str(item[k]) for k in _IDENTITY if k in item) or label
        while label in out:
            label += "'"
        out[label] = item
    return out
