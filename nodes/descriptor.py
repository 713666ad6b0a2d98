"""The node descriptor (``/.well-known/exchange-node``) and how a peer's is trusted.

The descriptor is public and unsigned: it names the node, its keys with their validity,
the schemas it offers, where its API is, and its latest audit checkpoint. Nothing in it is
believed for being there. A partner pins one key by its fingerprint, checked out of band;
later keys are accepted only with an endorsement by a key already trusted (see
:mod:`nodes.keys`), and only the end of life a trusted key signed can shorten a key's
validity. A man in the middle can hide keys (which denies service, as cutting the cable
would) but cannot add one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, model_validator
from sqlalchemy import Connection, Engine

from nodes import peers
from nodes.audit import log as audit_log
from nodes.database import writing
from nodes.identity import key_id, parse_public_key, public_key_text
from nodes.keys import Endorsement, InvalidEndorsementError, KeyInfo, check_endorsement
from nodes.times import utc_text
from schemas.errors import NotFoundError

PROTOCOL: Final = "crisis-exchange/1"
WELL_KNOWN = "/.well-known/exchange-node"

#: A time as endorsements sign it: the descriptor publishes exactly the signed strings.
SignedTime = Annotated[AwareDatetime, PlainSerializer(utc_text, return_type=str)]


class EndorsementDoc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    by: str = Field(description="Key id of the previous key, which signed this one")
    previous_valid_until: SignedTime
    signature: str = Field(description="Ed25519 signature, unpadded base64url")


class DescriptorKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(description="Fingerprint: unpadded base64url SHA-256 of the raw key")
    public_key: str = Field(description="Raw Ed25519 public key, unpadded base64url")
    alg: Literal["ed25519"] = "ed25519"
    current: bool
    valid_from: SignedTime | None
    valid_until: SignedTime | None
    endorsement: EndorsementDoc | None

    @model_validator(mode="after")
    def _fingerprint_matches(self) -> DescriptorKey:
        if key_id(parse_public_key(self.public_key)) != self.key_id:
            raise ValueError(f"key_id {self.key_id} is not the fingerprint of its public key")
        return self


class NodeDescriptor(BaseModel):
    """What ``GET /.well-known/exchange-node`` answers. Public, cacheable, no data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: Literal["crisis-exchange/1"] = PROTOCOL
    id: str
    name: str
    url: str = Field(description="The node's public base URL; requests are signed for it")
    api_base: str
    endpoints: dict[str, str]
    keys: tuple[DescriptorKey, ...] = Field(min_length=1)
    schemas: tuple[str, ...]
    checkpoint: str | None = Field(
        default=None, description="The latest signed audit checkpoint, as its one-line form"
    )

    def key(self, kid: str) -> DescriptorKey | None:
        return next((k for k in self.keys if k.key_id == kid), None)


def build(
    *,
    node_id: str,
    name: str,
    public_url: str,
    keys: list[KeyInfo],
    schemas: list[str],
    checkpoint: str | None,
) -> NodeDescriptor:
    base = public_url.rstrip("/")
    return NodeDescriptor(
        id=node_id,
        name=name,
        url=base,
        api_base=f"{base}/v1",
        endpoints={"releases": f"{base}/v1/releases", "descriptor": f"{base}{WELL_KNOWN}"},
        keys=tuple(
            DescriptorKey(
                key_id=k.kid,
                public_key=public_key_text(k.public_key),
                current=k.current,
                valid_from=k.valid_from,
                valid_until=k.valid_until,
                endorsement=None
                if k.endorsement is None
                else EndorsementDoc(
                    by=k.endorsement.by,
                    previous_valid_until=k.endorsement.previous_valid_until,
                    signature=k.endorsement.signature,
                ),
            )
            for k in keys
        ),
        schemas=tuple(schemas),
        checkpoint=checkpoint,
    )


@dataclass
class KeyUpdate:
    """What a refresh changed: keys accepted, and keys offered but refused (with why)."""

    added: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def trust_endorsed_keys(
    conn: Connection, *, peer_id: str, descriptor: NodeDescriptor, now: datetime
) -> KeyUpdate:
    """Register the descriptor's keys that a trusted key of ``peer_id`` endorsed.

    Repeats until nothing changes, so a chain of rotations (A endorsed B, B endorsed C) is
    followed from whichever key we pinned. Each accepted endorsement also ends the
    endorsing key's validity when that key said it would end.
    """
    update = KeyUpdate()
    if descriptor.id != peer_id:
        update.refused["*"] = f"the descriptor is for node '{descriptor.id}', not '{peer_id}'"
        return update
    progress = True
    while progress:
        progress = False
        peer = peers.get(conn, peer_id)
        known = {k.key_id for k in peer.keys}
        trusted = {k.key_id: k for k in peer.usable_keys(now)}
        for offered in descriptor.keys:
            if offered.key_id in known or offered.key_id in update.refused:
                continue
            endorsed = offered.endorsement
            if endorsed is None or endorsed.by not in trusted:
                continue  # perhaps endorsed by a key accepted later in this loop
            if offered.valid_from is None:
                update.refused[offered.key_id] = "an endorsed key must say when it starts"
                continue
            try:
                check_endorsement(
                    trusted[endorsed.by].key,
                    Endorsement(endorsed.by, endorsed.previous_valid_until, endorsed.signature),
                    node_id=peer_id,
                    kid=offered.key_id,
                    public_key=offered.public_key,
                    valid_from=offered.valid_from,
                )
            except InvalidEndorsementError as exc:
                update.refused[offered.key_id] = str(exc)
                continue
            peers.insert_key(
                conn,
                peer_id=peer_id,
                new=peers.NewKey(offered.public_key, offered.valid_from, None, "endorsement"),
                now=now,
            )
            peers.shorten_validity(conn, kid=endorsed.by, valid_until=endorsed.previous_valid_until)
            update.added.append(offered.key_id)
            progress = True
    for offered in descriptor.keys:
        if offered.key_id not in update.added and offered.key_id not in known:
            update.refused.setdefault(offered.key_id, "not endorsed by a key we trust")
    return update


def add_pinned_peer(
    engine: Engine,
    *,
    descriptor: NodeDescriptor,
    fingerprint: str,
    name: str = "",
    url: str = "",
    now: datetime,
) -> tuple[peers.Peer, KeyUpdate]:
    """Register the node a descriptor describes, trusting only the key with ``fingerprint``.

    The fingerprint is what the partner confirmed out of band; the other keys in the
    descriptor are accepted only if that key endorsed them. Audited in the same
    transaction. Raises NotFoundError if no key has that fingerprint.
    """
    pinned = descriptor.key(fingerprint)
    if pinned is None:
        offered = ", ".join(k.key_id for k in descriptor.keys)
        raise NotFoundError(
            f"the descriptor of '{descriptor.id}' has no key with fingerprint {fingerprint} "
            f"(it offers {offered}); do not add this peer until you and your partner agree "
            "on the fingerprint"
        )
    with writing(engine) as conn:
        peers.add(
            conn,
            peer_id=descriptor.id,
            name=name or descriptor.name,
            url=url or descriptor.url,
            keys=[peers.NewKey(pinned.public_key, pinned.valid_from, None, "fingerprint")],
            now=now,
        )
        update = trust_endorsed_keys(conn, peer_id=descriptor.id, descriptor=descriptor, now=now)
        peer = peers.get(conn, descriptor.id)
        endorsed = f"; endorsed keys {', '.join(update.added)}" if update.added else ""
        audit_log.append(
            conn,
            actor="operator",
            role="operator",
            action="peer.add",
            resource=f"partner:{peer.id}",
            outcome="allowed",
            reason=f"registered {peer.url} pinned to key {fingerprint}{endorsed}",
            partner=peer.id,
            now=now,
        )
    return peer, update
