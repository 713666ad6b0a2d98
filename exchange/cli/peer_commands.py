"""Operator commands for federation: the peer registry and this node's key rotation."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from exchange.cli.common import NodeDir, console, errors, fail, open_node, operator, utcnow
from nodes import keys  # light; its DEFAULT_GRACE is an option's default

if TYPE_CHECKING:
    from nodes.audit import witness
    from nodes.descriptor import NodeDescriptor

PeerId = Annotated[str, typer.Argument(help="The peer's node id")]


def _descriptor(url: str) -> NodeDescriptor:
    import httpx2

    from exchange.clients.peer import PeerError, fetch_descriptor
    from nodes.descriptor import WELL_KNOWN

    target = url.rstrip("/")
    if not target.endswith(WELL_KNOWN):
        target += WELL_KNOWN
    with httpx2.Client() as http:
        try:
            return fetch_descriptor(http, target)
        except PeerError as exc:
            fail(str(exc))


def add(
    directory: NodeDir,
    peer_id: Annotated[str | None, typer.Option("--id", help="The peer's node id")] = None,
    url: Annotated[str | None, typer.Option(help="The peer's public base URL")] = None,
    key: Annotated[str | None, typer.Option(help="The peer's public key (base64url)")] = None,
    name: Annotated[str, typer.Option(help="A readable name; default: the id")] = "",
    from_url: Annotated[
        str | None, typer.Option(help="Fetch the peer's descriptor from this URL")
    ] = None,
    fingerprint: Annotated[
        str | None, typer.Option(help="With --from-url: the key id the partner confirmed")
    ] = None,
) -> None:
    """Register a partner node: --id --url --key, or --from-url --fingerprint."""
    from nodes import peers
    from nodes.descriptor import add_pinned_peer
    from nodes.identity import parse_public_key

    now = utcnow()
    if from_url is not None:
        if not fingerprint:
            fail("--from-url needs --fingerprint: the key id your partner told you out of band")
        descriptor = _descriptor(from_url)
        if peer_id is not None and peer_id != descriptor.id:
            fail(f"the descriptor is for node '{descriptor.id}', not '{peer_id}'")
        with open_node(directory) as node:
            peer, _update = add_pinned_peer(
                node.engine,
                descriptor=descriptor,
                fingerprint=fingerprint,
                name=name,
                url=url or "",
                now=now,
            )
    else:
        if not (peer_id and url and key):
            fail("give --id, --url and --key, or --from-url and --fingerprint")
        try:
            parse_public_key(key.strip())
        except ValueError as exc:
            fail(f"--key: {exc}")
        with open_node(directory) as node:
            peer = peers.add_peer(
                node.engine,
                peer_id=peer_id,
                name=name,
                url=url,
                keys=[peers.NewKey(key.strip())],
                now=now,
            )
    kids = ", ".join(k.key_id for k in peer.keys if k.revoked_at is None)
    console.print(f"Peer [bold]{peer.id}[/] at {peer.url} registered with key(s) {kids}")


def list_peers(
    directory: NodeDir,
    all_: Annotated[bool, typer.Option("--all", help="Include removed peers")] = False,
) -> None:
    """List peers and their keys."""
    from nodes import peers
    from nodes.audit import witness

    now = utcnow()
    with open_node(directory) as node:
        found = peers.list_peers(node.engine, include_removed=all_)
        flagged = {f.peer_id: f for f in witness.flagged_peers(node.engine)}
        epochs = witness.declared_epochs(node.engine)
    declared: dict[str, list[witness.DeclaredEpoch]] = {}
    for epoch in epochs:
        declared.setdefault(epoch.peer_id, []).append(epoch)
    table = Table("id", "name", "url", "key id", "valid until", "state", "audit log")
    for peer in found:
        for index, k in enumerate(peer.keys):
            state = (
                "revoked"
                if k.revoked_at
                else ("usable" if k.usable_at(now) and not peer.removed_at else "expired")
            )
            table.add_row(
                peer.id if index == 0 else "",
                peer.name if index == 0 else "",
                peer.url if index == 0 else "",
                k.key_id,
                f"{k.valid_until:%Y-%m-%d %H:%M}" if k.valid_until else "",
                state + (" (peer removed)" if peer.removed_at and index == 0 else ""),
                _log_state(flagged.get(peer.id), declared.get(peer.id, [])) if index == 0 else "",
            )
    console.print(table)
    for flag in flagged.values():
        errors.print(f"[bold red]peer {flag.peer_id} flagged:[/] {flag.reason}", highlight=False)
    for epoch in epochs:  # a declared, signed gap: not a rollback, but worth an auditor's look
        console.print(
            f"[yellow]peer {epoch.peer_id} declared a new epoch[/] at {epoch.tree_size} entries "
            f"(accepted {epoch.accepted_at:%Y-%m-%d %H:%M}): {epoch.reason}",
            highlight=False,
        )


def _log_state(flag: witness.FlaggedPeer | None, epochs: list[witness.DeclaredEpoch]) -> str:
    if flag is not None:
        return f"[bold red]FLAGGED[/] {flag.flags}x since {flag.first_flagged:%Y-%m-%d %H:%M}"
    if epochs:
        return f"[yellow]new epoch[/] x{len(epochs)}, last {epochs[-1].accepted_at:%Y-%m-%d}"
    return "no flag"


def remove(directory: NodeDir, peer_id: PeerId) -> None:
    """Remove a peer and revoke all its keys, at once."""
    from nodes import peers

    with open_node(directory) as node:
        peers.remove_peer(node.engine, peer_id=peer_id, now=utcnow())
    console.print(f"Peer [bold]{peer_id}[/] removed; its keys are revoked.")


def revoke(
    directory: NodeDir,
    peer_id: PeerId,
    kid: Annotated[str, typer.Argument(help="The key id to revoke")],
) -> None:
    """Revoke one key of a peer at once (final)."""
    from nodes import peers

    with open_node(directory) as node:
        peers.revoke_peer_key(node.engine, peer_id=peer_id, kid=kid, now=utcnow())
    console.print(f"Key {kid} of peer [bold]{peer_id}[/] revoked.")


def refresh(directory: NodeDir, peer_id: PeerId) -> None:
    """Fetch a peer's descriptor and accept new keys endorsed by a key we trust."""
    import httpx2

    from exchange.clients.peer import PeerError
    from exchange.clients.pulling import peer_client, refresh_keys
    from nodes import peers

    with open_node(directory) as node, httpx2.Client() as http:
        client = peer_client(node, http, peers.get_peer(node.engine, peer_id))
        try:
            update = refresh_keys(node, client, now=utcnow())
        except PeerError as exc:
            fail(str(exc))
    for kid in update.added:
        console.print(f"Accepted key {kid} (endorsed by a key we trust)")
    for kid, why in update.refused.items():
        console.print(f"[yellow]Refused key {kid}[/]: {why}")
    if not update.added and not update.refused:
        console.print("Nothing new.")


def rotate(
    directory: NodeDir,
    grace_hours: Annotated[
        float, typer.Option(min=0, help="How long the old key stays valid for verification")
    ] = keys.DEFAULT_GRACE.total_seconds() / 3600,
) -> None:
    """Make a new identity key current; the old one stays valid for the grace period."""
    from nodes import key_rotation

    now = utcnow()
    with open_node(directory) as node:
        new, old = key_rotation.rotate(
            node.settings,
            node.engine,
            actor=operator(),
            grace=timedelta(hours=grace_hours),
            now=now,
        )
    console.print(f"New current key: [bold]{new.kid}[/]")
    console.print(
        f"Old key {old.kid} stays valid for {grace_hours:g} h; partners pick the new key up "
        "when they refresh this node's descriptor (it is endorsed by the old key)."
    )


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Partner nodes and their keys.", no_args_is_help=True)
    group.command("add")(add)
    group.command("list")(list_peers)
    group.command("remove")(remove)
    group.command("revoke")(revoke)
    group.command("refresh")(refresh)
    app.add_typer(group, name="peer")
    key_group = typer.Typer(help="This node's identity keys.", no_args_is_help=True)
    key_group.command("rotate")(rotate)
    app.add_typer(key_group, name="keys")
