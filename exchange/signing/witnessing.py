"""Peers witness each other's audit logs through the releases they exchange.

The puller asks with ``?checkpoint_since=N``, N being the size of the last checkpoint it
accepted from that peer (the query string is part of ``@target-uri``, so the signature
covers it: nobody on the way can make the peer prove from another size and get it
flagged). The provider puts its latest signed checkpoint in the signed release document,
with a consistency proof from N to that size. The puller checks and records it with
``nodes.audit.witness``: a peer that rewrote or rolled back its log is flagged, with the
signed lines as evidence. A release is never refused for its checkpoint: the data is
judged by its signature, the peer's honesty about its history separately.

A node that declared new epochs of its log (`nodes.audit.epoch`) also sends ``epochs``: each
signed statement with a consistency proof from the restored tree it names to the checkpoint
sent. A witness that held the abandoned checkpoint then records a declared gap instead of
flagging (`nodes.audit.witness`). Nodes that never declared one send no ``epochs`` key.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nodes import peers
from nodes.audit import checkpoint_store, epoch, reading, verifier, witness
from nodes.audit.checkpoint import parse_signed_checkpoint
from nodes.audit.errors import AuditError
from nodes.database import writing
from nodes.node import Node
from schemas.errors import ExchangeError

log = logging.getLogger("exchange.signing.witnessing")

SINCE = "checkpoint_since"


def since_of(url: str) -> int | None:
    """The ``checkpoint_since`` a (verified) request asked for, if it is a sane integer."""
    values = parse_qs(urlsplit(url).query).get(SINCE, [])
    if len(values) != 1 or not values[0].isdigit() or len(values[0]) > 15:
        return None
    return int(values[0])


def checkpoint_document(node: Node, since: int | None) -> dict[str, Any]:
    """The latest checkpoint line and, when asked, the proof that it extends size ``since``."""
    signed = checkpoint_store.latest_checkpoint(node.engine)
    if signed is None:
        return {"checkpoint": None, "consistency_proof": None}
    size = signed.checkpoint.tree_size
    proof = None
    if since is not None and 0 < since < size:
        try:
            found = reading.consistency(node.engine, first=since, second=size)
            proof = {"from": since, "to": size, "proof": [p.hex() for p in found.proof]}
        except ExchangeError:
            proof = None  # a size we never signed: the puller will see no proof
    document: dict[str, Any] = {"checkpoint": signed.to_line().decode(), "consistency_proof": proof}
    statements = epoch.read_all(node.settings.keys_dir)
    if statements:
        document["epochs"] = [_served(node, s, size) for s in statements]
    return document


def _served(node: Node, statement: epoch.EpochStatement, size: int) -> dict[str, Any]:
    """A statement with the proof that the tree of ``size`` extends the one it goes on from."""
    restored = statement.fields["restored_tree_size"]
    hashes: list[str] | None = None
    if restored <= size:
        try:
            found = reading.consistency(node.engine, first=restored, second=size)
            hashes = [p.hex() for p in found.proof]
        except ExchangeError:
            hashes = None  # a later epoch left this one behind: no proof from its tree
    return {**statement.to_json(), "consistency_proof": hashes}


def served_epochs(document: dict[str, Any]) -> list[witness.ServedEpoch]:
    """The epoch statements in a peer's document; malformed ones are skipped (logged)."""
    found: list[witness.ServedEpoch] = []
    raw = document.get("epochs")
    for item in raw if isinstance(raw, list) else []:
        try:
            statement = epoch.parse(item)
            proof = item.get("consistency_proof")
            hashes = None if proof is None else [bytes.fromhex(h) for h in proof]
        except (AuditError, ValueError, TypeError, AttributeError) as exc:
            log.warning("an epoch statement in a peer's document is malformed: %s", exc)
            continue
        found.append(witness.ServedEpoch(statement=statement, proof=hashes))
    return found


def last_size(node: Node, peer_id: str) -> int:
    accepted = witness.last_accepted(node.engine, peer_id)
    return 0 if accepted is None else accepted.checkpoint.tree_size


def record(
    node: Node, peer_id: str, document: dict[str, Any], *, now: datetime
) -> witness.WitnessResult | None:
    """Check the peer's checkpoint in ``document`` (already signature-verified); None if absent
    or unusable (logged), else the verdict (``flagged`` means the peer lied about its log)."""
    line, proof = document.get("checkpoint"), document.get("consistency_proof")
    if not isinstance(line, str):
        return None
    try:
        checkpoint = parse_signed_checkpoint(line.encode()).checkpoint
        peer = peers.get_peer(node.engine, peer_id)
        keys = [
            k.key
            for k in peer.usable_keys(now)
            if verifier.key_id_matches(k.key, checkpoint.key_id)
        ]
        if not keys:
            log.warning("peer %s signed its checkpoint with a key we do not know", peer_id)
            return None
        hashes = None
        if isinstance(proof, dict) and proof.get("from") == last_size(node, peer_id):
            hashes = [bytes.fromhex(h) for h in proof.get("proof", [])]
        with writing(node.engine) as conn:
            return witness.record_peer_checkpoint(
                conn,
                peer_id=peer_id,
                public_key=keys[0],
                line=line.encode(),
                proof=hashes,
                now=now,
                epochs=served_epochs(document),
            )
    except (AuditError, ValueError, TypeError) as exc:
        log.warning("checkpoint from peer %s not recorded: %s", peer_id, exc)
        return None
