"""The peer registry, the replay store, key rotation and descriptor trust (nodes layer)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from nodes import federation_tables, keys, nonces, peers
from nodes.database import reading, writing
from nodes.descriptor import NodeDescriptor, add_pinned_peer, build, trust_endorsed_keys
from nodes.directory import init_node
from nodes.identity import key_id, load_current, public_key_text
from nodes.node import Node
from schemas.errors import ConflictError, InvalidInputError, NotFoundError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _key_text() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    return private, public_key_text(private.public_key())


def _add(node: Node, peer_id: str = "XB", *texts: str) -> peers.Peer:
    chosen = texts or (_key_text()[1],)
    return peers.add_peer(
        node.engine,
        peer_id=peer_id,
        name=f"Republic of {peer_id}",
        url=f"http://{peer_id.lower()}.test/",
        keys=[peers.NewKey(t) for t in chosen],
        now=T0,
    )


def _resolve(node: Node, kid: str, now: datetime = T0) -> str | None:
    with reading(node.engine) as conn:
        found = peers.resolve(conn, kid, now=now)
    return found[0] if found else None


# -- peers ------------------------------------------------------------------------------


def test_added_peer_resolves_and_url_is_normalized(node: Node) -> None:
    peer = _add(node)
    assert peer.url == "http://xb.test"
    assert _resolve(node, peer.keys[0].key_id) == "XB"
    assert [p.id for p in peers.list_peers(node.engine)] == ["XB"]


def test_unknown_key_resolves_to_nothing(node: Node) -> None:
    _add(node)
    assert _resolve(node, key_id(Ed25519PrivateKey.generate().public_key())) is None


@pytest.mark.parametrize(
    ("peer_id", "url", "text"),
    [
        ("X", "http://x.test", None),  # id too short
        ("XB", "ftp://x.test", None),
        ("XB", "http://x.test/?a=1", None),
        ("XB", "http://x.test", "not-a-key"),
    ],
)
def test_add_refuses_bad_input(node: Node, peer_id: str, url: str, text: str | None) -> None:
    with pytest.raises(InvalidInputError):
        peers.add_peer(
            node.engine,
            peer_id=peer_id,
            name="",
            url=url,
            keys=[peers.NewKey(text or _key_text()[1])],
            now=T0,
        )
    assert peers.list_peers(node.engine, include_removed=True) == []


def test_a_key_has_one_owner_and_a_peer_is_added_once(node: Node) -> None:
    _private, text = _key_text()
    _add(node, "XB", text)
    with pytest.raises(ConflictError, match="already registered for peer 'XB'"):
        _add(node, "XC", text)
    with pytest.raises(ConflictError, match="already registered"):
        _add(node, "XB")


def test_revocation_takes_effect_at_once_and_is_final(node: Node) -> None:
    _private, text = _key_text()
    kid = _add(node, "XB", text).keys[0].key_id
    peers.revoke_peer_key(node.engine, peer_id="XB", kid=kid, now=T0)
    assert _resolve(node, kid) is None
    peers.remove_peer(node.engine, peer_id="XB", now=T0)
    with pytest.raises(ConflictError, match="revoked"):
        _add(node, "XB", text)


def test_removed_peer_gets_nothing_and_can_be_added_again_with_a_new_key(node: Node) -> None:
    old = _add(node).keys[0].key_id
    peers.remove_peer(node.engine, peer_id="XB", now=T0)
    assert _resolve(node, old) is None
    with pytest.raises(NotFoundError):
        peers.get_peer(node.engine, "XB")
    new = _add(node).keys[-1].key_id
    assert _resolve(node, new) == "XB"
    assert _resolve(node, old) is None  # removal revoked it for good


def test_key_past_its_validity_does_not_resolve(node: Node) -> None:
    kid = _add(node).keys[0].key_id
    with writing(node.engine) as conn:
        peers.shorten_validity(conn, kid=kid, valid_until=T0 + timedelta(hours=1))
        peers.shorten_validity(conn, kid=kid, valid_until=T0 + timedelta(days=9))  # never later
    assert _resolve(node, kid, T0 + timedelta(minutes=59)) == "XB"
    assert _resolve(node, kid, T0 + timedelta(hours=1)) is None


# -- nonces ---------------------------------------------------------------------------


def test_a_nonce_is_accepted_once_per_key(node: Node) -> None:
    until = T0 + timedelta(minutes=5)
    nonces.record(node.engine, key_id="k1", nonce="n1", expires_at=until, now=T0)
    nonces.record(node.engine, key_id="k2", nonce="n1", expires_at=until, now=T0)
    with pytest.raises(nonces.ReplayedNonceError):
        nonces.record(node.engine, key_id="k1", nonce="n1", expires_at=until, now=T0)


@pytest.mark.parametrize("nonce", ["", "x" * 129])
def test_malformed_nonce_is_refused(node: Node, nonce: str) -> None:
    with pytest.raises(nonces.InvalidNonceError):
        nonces.record(node.engine, key_id="k", nonce=nonce, expires_at=T0, now=T0)


def test_expired_nonces_are_pruned_by_the_next_record(node: Node) -> None:
    later = T0 + timedelta(seconds=1)
    nonces.record(node.engine, key_id="k", nonce="old", expires_at=T0, now=T0)
    nonces.record(node.engine, key_id="k", nonce="new", expires_at=T0 + timedelta(hours=1), now=T0)
    nonces.record(node.engine, key_id="k", nonce="newer", expires_at=later, now=later)
    with reading(node.engine) as conn:
        kept = set(conn.execute(select(federation_tables.nonces.c.nonce)).scalars())
    assert kept == {"new", "newer"}
    # Pruned means reusable: by then its signature is stale and the age check refuses it.
    nonces.record(node.engine, key_id="k", nonce="old", expires_at=later, now=later)


def test_concurrent_replays_one_wins(node: Node) -> None:
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            nonces.record(
                node.engine, key_id="k", nonce="same", expires_at=T0 + timedelta(1), now=T0
            )
            outcomes.append("ok")
        except nonces.ReplayedNonceError:
            outcomes.append("replay")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["replay"] * 7


# -- rotation and endorsements -----------------------------------------------------------


def test_rotation_keeps_the_old_key_for_the_grace_period(tmp_path: Path) -> None:
    settings, first = init_node(tmp_path / "xa", node_id="XA", name="XA")
    new, old = keys.rotate(settings.keys_dir, node_id="XA", grace=timedelta(hours=2), now=T0)
    assert old.kid == first.kid
    assert load_current(settings.keys_dir).kid == new.kid
    ring = keys.key_ring(settings.keys_dir, now=T0 + timedelta(hours=1))
    assert [(k.kid, k.current) for k in ring] == [(new.kid, True), (old.kid, False)]
    assert ring[1].valid_until == T0 + timedelta(hours=2)
    assert keys.previous_key(settings.keys_dir, now=T0)
    after = keys.key_ring(settings.keys_dir, now=T0 + timedelta(hours=2))
    assert [k.kid for k in after] == [new.kid]
    assert keys.previous_key(settings.keys_dir, now=T0 + timedelta(hours=3)) is None
    assert (settings.keys_dir / f"{new.kid}.pem").stat().st_mode & 0o077 == 0


def test_current_key_follows_a_rotation_without_restart(tmp_path: Path) -> None:
    settings, first = init_node(tmp_path / "xa", node_id="XA", name="XA")
    cache = keys.CurrentKey(settings.keys_dir)
    assert cache.get().kid == first.kid
    new, _old = keys.rotate(settings.keys_dir, node_id="XA", grace=timedelta(hours=1), now=T0)
    assert cache.get().kid == new.kid


def _descriptor(directory: Path, node_id: str, now: datetime) -> NodeDescriptor:
    return build(
        node_id=node_id,
        name=node_id,
        public_url=f"http://{node_id.lower()}.test",
        keys=keys.key_ring(directory, now=now),
        schemas=[],
        checkpoint=None,
    )


def test_a_chain_of_rotations_is_followed_from_the_pinned_key(tmp_path: Path, node: Node) -> None:
    xb, first = init_node(tmp_path / "xb", node_id="XB", name="XB")
    pinned = _descriptor(xb.keys_dir, "XB", T0)
    add_pinned_peer(node.engine, descriptor=pinned, fingerprint=first.kid, now=T0)
    second, _ = keys.rotate(xb.keys_dir, node_id="XB", grace=timedelta(hours=1), now=T0)
    third, _ = keys.rotate(
        xb.keys_dir, node_id="XB", grace=timedelta(hours=1), now=T0 + timedelta(minutes=1)
    )
    later = _descriptor(xb.keys_dir, "XB", T0 + timedelta(minutes=2))
    # A round trip through JSON, as a partner receives it.
    later = NodeDescriptor.model_validate_json(later.model_dump_json())
    with writing(node.engine) as conn:
        update = trust_endorsed_keys(conn, peer_id="XB", descriptor=later, now=T0)
    assert sorted(update.added) == sorted([second.kid, third.kid])
    assert _resolve(node, third.kid) == "XB"
    assert _resolve(node, first.kid, T0 + timedelta(minutes=59)) == "XB"
    assert _resolve(node, first.kid, T0 + timedelta(hours=1)) is None  # its endorsed end


def test_a_key_nobody_trusted_endorsed_is_refused(tmp_path: Path, node: Node) -> None:
    xb, first = init_node(tmp_path / "xb", node_id="XB", name="XB")
    add_pinned_peer(
        node.engine, descriptor=_descriptor(xb.keys_dir, "XB", T0), fingerprint=first.kid, now=T0
    )
    # An attacker's node directory, claiming to be XB, rotates to its own key.
    evil, _evil_first = init_node(tmp_path / "evil", node_id="XB", name="XB")
    keys.rotate(evil.keys_dir, node_id="XB", grace=timedelta(hours=1), now=T0)
    forged = _descriptor(evil.keys_dir, "XB", T0)
    with writing(node.engine) as conn:
        update = trust_endorsed_keys(conn, peer_id="XB", descriptor=forged, now=T0)
    assert update.added == []
    assert set(update.refused) == {k.key_id for k in forged.keys}


def test_an_endorsement_for_another_node_is_refused(tmp_path: Path, node: Node) -> None:
    xb, first = init_node(tmp_path / "xb", node_id="XB", name="XB")
    add_pinned_peer(
        node.engine, descriptor=_descriptor(xb.keys_dir, "XB", T0), fingerprint=first.kid, now=T0
    )
    second, _ = keys.rotate(xb.keys_dir, node_id="XB-other", grace=timedelta(hours=1), now=T0)
    with writing(node.engine) as conn:
        update = trust_endorsed_keys(
            conn, peer_id="XB", descriptor=_descriptor(xb.keys_dir, "XB", T0), now=T0
        )
    assert update.added == []
    assert second.kid in update.refused


def test_a_revoked_key_endorses_nothing(tmp_path: Path, node: Node) -> None:
    xb, first = init_node(tmp_path / "xb", node_id="XB", name="XB")
    add_pinned_peer(
        node.engine, descriptor=_descriptor(xb.keys_dir, "XB", T0), fingerprint=first.kid, now=T0
    )
    peers.revoke_peer_key(node.engine, peer_id="XB", kid=first.kid, now=T0)
    keys.rotate(xb.keys_dir, node_id="XB", grace=timedelta(hours=1), now=T0)
    with writing(node.engine) as conn:
        update = trust_endorsed_keys(
            conn, peer_id="XB", descriptor=_descriptor(xb.keys_dir, "XB", T0), now=T0
        )
    assert update.added == []


def test_pinning_needs_the_right_fingerprint(tmp_path: Path, node: Node) -> None:
    xb, _first = init_node(tmp_path / "xb", node_id="XB", name="XB")
    with pytest.raises(NotFoundError, match="fingerprint"):
        add_pinned_peer(
            node.engine,
            descriptor=_descriptor(xb.keys_dir, "XB", T0),
            fingerprint=key_id(Ed25519PrivateKey.generate().public_key()),
            now=T0,
        )
    assert peers.list_peers(node.engine, include_removed=True) == []


def test_descriptor_refuses_a_key_id_that_is_not_its_fingerprint(tmp_path: Path) -> None:
    xb, _first = init_node(tmp_path / "xb", node_id="XB", name="XB")
    data = _descriptor(xb.keys_dir, "XB", T0).model_dump(mode="json")
    data["keys"][0]["key_id"] = key_id(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ValueError, match="fingerprint"):
        NodeDescriptor.model_validate(data)
