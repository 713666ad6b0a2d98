"""The start-up check: a node refuses to serve a log that was cut short, rewritten or damaged.

Before serving, the node re-reads its whole log once and checks it against the newest
checkpoint in its database **and** the newest checkpoint it ever signed, kept outside the
database (`nodes.audit.anchor`): both signatures verify with one of the node's own keys, the
log holds at least as many entries as either covers, every entry still hashes to its stored
leaf hash and chains to the one before, and the Merkle root of the first ``tree_size``
entries (recomputed from the entry bytes, not from stored hashes) equals each signed root.
Every table the log uses is checked, since a damaged one otherwise breaks the running node
later (a failing background checkpoint, a 500 on every push): no entry rows beyond the head,
every stored checkpoint row matches its signed line and the entries, the stored subtrees are
exactly those of the latest checkpoint (compared by digest per height), and the lookup index
covers exactly the entries that checkpoint covers.

The anchor is what catches a history rewritten and re-chained with the database's
checkpoints, subtrees and index deleted, and a clean rollback to an older copy of the
database. A node without an anchor file (made before anchors existed, or whose file was
removed) adopts its database's log as it stands: it writes an ``audit.anchor`` entry saying
so, signs a checkpoint and anchors it (trust on first use); from then on it is protected.

The check streams the log with O(log n) memory; it costs about one SHA-256 per entry.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, func, select

from nodes import identity, ledger
from nodes.audit import anchor, checkpoint_store, tree, verifier
from nodes.audit.checkpoint import SignedCheckpoint, verify_checkpoint
from nodes.audit.entry import GENESIS_PREV
from nodes.audit.errors import InvalidCheckpointError, LogIntegrityError
from nodes.audit.log import append, initialize, read_head
from nodes.audit.merkle import Frontier, node_hash
from nodes.audit.tables import audit_checkpoints, audit_entries, audit_lookup, audit_nodes
from nodes.database import reading, writing
from nodes.identity import load_current

log = logging.getLogger("nodes.audit")

_PREV = b'"prev":"'  # a key: inside JSON strings a quote is always escaped


@dataclass(frozen=True, slots=True)
class LogStatus:
    """What the start-up check established."""

    entries: int
    checkpoint_size: int | None
    root_hash: str | None
    checkpoint: SignedCheckpoint | None = None


def open_log(engine: Engine, *, node_id: str, keys_dir: Path) -> LogStatus:
    """Create the log's head if needed, check the log against the database and the anchor,
    and anchor every later checkpoint of ``engine``. Raises LogIntegrityError.

    Without an anchor file the log is adopted as it stands (see the module docstring).
    """
    initialize(engine, node_id=node_id)
    keys = known_public_keys(keys_dir)
    path = anchor.path_in(keys_dir)
    with _anchor_lock(keys_dir):
        held = anchor.read(path)
        if held is not None:
            _check_signature(held, node_id, keys, what=anchor.describe(held, path))
        status = check_log(engine, public_keys=keys, anchored=held, anchor_path=path)
        anchor.attach(engine, path)
        if held is None:
            _adopt(engine, keys_dir, status)
        elif status.checkpoint is not None and (
            status.checkpoint.checkpoint.tree_size > held.checkpoint.tree_size
        ):
            # Signed without the anchor, and verified: anchor it with the ledger as it stands.
            key = load_current(keys_dir)
            totals = None
            if status.checkpoint.checkpoint.key_id == identity.key_id(key.public_key):
                with reading(engine) as conn:
                    totals = ledger.accounts(conn)
            anchor.write(path, status.checkpoint, ledger=totals, private_key=key.private_key)
    return status


@contextmanager
def _anchor_lock(keys_dir: Path) -> Iterator[None]:
    """Workers starting together check and adopt one at a time."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (keys_dir / ".audit-anchor.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _adopt(engine: Engine, keys_dir: Path, status: LogStatus) -> None:
    """Anchor a log that has no anchor yet: a new node, or one made before anchors."""
    now = datetime.now(UTC)
    key = load_current(keys_dir)
    if status.entries or status.checkpoint is not None:
        why = (
            f"no audit anchor in {keys_dir}: adopted the database's log of {status.entries} "
            f"entries as it stands (newest checkpoint: size {status.checkpoint_size}); a node "
            "made before anchors, or its anchor file was removed. A rewrite or rollback "
            "before now is caught only by peers and auditors holding older checkpoints"
        )
        log.warning("%s", why)
        with writing(engine) as conn:
            append(
                conn,
                actor="node",
                role="node",
                action="audit.anchor",
                resource="log:audit",
                outcome="allowed",
                reason=why,
                now=now,
            )
    checkpoint_store.sign(engine, key.private_key, now=now, force=False)


def known_public_keys(keys_dir: Path) -> dict[str, Ed25519PublicKey]:
    """The node's public keys by checkpoint key id (hex SHA-256), current and retired."""
    found: dict[str, Ed25519PublicKey] = {}
    for path in sorted(keys_dir.glob("*.pem")):
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError):
            continue
        public = private.public_key()
        if isinstance(public, Ed25519PublicKey):
            found[identity.key_id(public)] = public
    return found


def check_log(
    engine: Engine,
    *,
    public_keys: dict[str, Ed25519PublicKey],
    anchored: SignedCheckpoint | None = None,
    anchor_path: Path | None = None,
) -> LogStatus:
    """Check the stored log against its newest checkpoint and the anchored one.

    ``anchored`` must already be verified (`open_log` does). Returns what was verified;
    raises LogIntegrityError, whose message says what is wrong and that the node refuses
    to serve.
    """
    # Streamed results are closed on every refusal: a server-side cursor is never left open.
    with _snapshot(engine) as conn, ExitStack() as stack:
        # Checkpoint before head before entries: later appends only add, never contradict.
        try:
            signed = checkpoint_store.latest_checkpoint(conn)
        except InvalidCheckpointError as exc:
            raise _refuse(f"the newest stored checkpoint line is damaged ({exc})") from None
        head = read_head(conn)
        if head is None:
            raise _refuse("the audit log has no head row")
        if signed is not None:
            _check_signature(signed, head.node_id, public_keys, what=_describe(signed))
        covered = 0 if signed is None else signed.checkpoint.tree_size
        held = None if anchored is None else anchored.checkpoint.tree_size
        where = anchor.describe(anchored, anchor_path or Path()) if anchored else ""
        frontier = Frontier()
        nodes = _NodeDigests(covered)
        checkpoints = stack.enter_context(_CheckpointRows(conn))
        checkpoints.check(frontier)
        previous = GENESIS_PREV.encode()
        rows = stack.enter_context(
            conn.execute(
                select(audit_entries.c.seq, audit_entries.c.entry, audit_entries.c.leaf_hash)
                .order_by(audit_entries.c.seq)
                .execution_options(yield_per=10_000)
            )
        )
        for seq, entry, stored_leaf in rows:
            data = bytes(entry)
            if seq != frontier.size:
                raise _refuse(f"{_seqs(frontier.size, seq)} missing")
            if seq >= head.size:
                raise _refuse(
                    f"the audit_entries table holds entry seq {seq} beyond the head row's "
                    f"count of {head.size}: a row was added behind the log's back"
                )
            leaf = hashlib.sha256(b"\x00" + data).digest()
            if leaf != bytes(stored_leaf):
                raise _refuse(f"entry seq {seq} no longer matches its leaf hash: it was modified")
            at = data.find(_PREV) + len(_PREV)
            if at < len(_PREV) or data[at : at + 64] != previous:
                raise _refuse(f"entry seq {seq} does not chain to entry seq {seq - 1}")
            previous = leaf.hex().encode()
            nodes.computed(frontier.append(leaf))
            size = frontier.size
            if size == covered and signed is not None:
                _check_root(frontier, signed, _describe(signed))
                _check_stored_edge(conn, frontier)
            if size == held and anchored is not None:
                _check_root(frontier, anchored, where)
            checkpoints.check(frontier)
        if covered == 0 and signed is not None:
            _check_root(Frontier(), signed, _describe(signed))
        if held == 0 and anchored is not None:
            _check_root(Frontier(), anchored, where)
        count = frontier.size
        if signed is not None and count < covered:
            raise _refuse(
                f"the log was cut short: {_describe(signed)} covers {covered} entries but the "
                f"database holds {count}; {_lost(conn, count, covered)}"
            )
        if anchored is not None and held is not None and count < held:
            raise _refuse(
                f"the database was rolled back or its log cut short: {where} covers {held} "
                f"entries but the database holds {count}; {_lost(conn, count, held)}. Put the "
                "lost entries back with 'exchange restore BACKUP DIR --export NEWEST_EXPORT' "
                "(an audit export covering that checkpoint; see docs/operations.md)"
            )
        if count != head.size:
            raise _refuse(f"the head row counts {head.size} entries but {count} are stored")
        if (head.last_leaf is None) != (head.size == 0) or (
            head.last_leaf is not None and bytes(head.last_leaf).hex().encode() != previous
        ):
            raise _refuse("the head row's last leaf hash does not match the last entry")
        nodes.compare(conn)
        _check_lookup(conn, covered)
    return LogStatus(
        entries=head.size,
        checkpoint_size=None if signed is None else covered,
        root_hash=None if signed is None else signed.checkpoint.root_hash,
        checkpoint=signed,
    )


class _CheckpointRows:
    """Every stored checkpoint row, smallest first, checked as the entries reach its size."""

    def __init__(self, conn: Connection) -> None:
        self._result = conn.execute(
            select(
                audit_checkpoints.c.tree_size,
                audit_checkpoints.c.root_hash,
                audit_checkpoints.c.key_id,
                audit_checkpoints.c.line,
            )
            .order_by(audit_checkpoints.c.tree_size, audit_checkpoints.c.id)
            .execution_options(yield_per=1000)
        )
        self._rows = iter(self._result)
        self._next = next(self._rows, None)

    def __enter__(self) -> _CheckpointRows:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._result.close()

    def check(self, frontier: Frontier) -> None:
        while self._next is not None and self._next.tree_size <= frontier.size:
            size, root_hash, key_id, line = self._next
            try:
                parsed = verifier.parse_checkpoint_line(bytes(line))
            except verifier.VerificationError:
                raise _refuse(
                    f"the stored checkpoint line of tree size {size} is damaged"
                ) from None
            if (parsed.tree_size, parsed.root_hash, parsed.key_id) != (size, root_hash, key_id):
                raise _refuse(
                    f"the audit_checkpoints row of tree size {size} disagrees with its signed line"
                )
            if size == frontier.size and root_hash != frontier.root().hex():
                raise _refuse(
                    f"the log was rewritten: its first {size} entries do not match the root of "
                    f"the stored checkpoint of that size"
                )
            self._next = next(self._rows, None)


class _NodeDigests:
    """Digest per height of the subtrees a checkpoint of ``covered`` entries stores, computed
    from the entries and read from ``audit_nodes``: equal means exactly the right rows."""

    def __init__(self, covered: int) -> None:
        self.covered = covered
        self.expected: dict[int, tuple[int, hashlib._Hash]] = {}

    def computed(self, completed: list[tuple[int, int, bytes]]) -> None:
        for h, j, value in completed:
            if (j + 1) << h > self.covered:
                return
            count, digest = self.expected.get(h) or (0, hashlib.sha256())
            digest.update(value)
            self.expected[h] = (count + 1, digest)

    def compare(self, conn: Connection) -> None:
        found: dict[int, tuple[int, hashlib._Hash]] = {}
        with conn.execute(
            select(audit_nodes.c.height, audit_nodes.c.idx, audit_nodes.c.hash)
            .order_by(audit_nodes.c.height, audit_nodes.c.idx)
            .execution_options(yield_per=10_000)
        ) as rows:
            for h, j, value in rows:
                count, digest = found.get(h) or (0, hashlib.sha256())
                if j != count:
                    raise _refuse(
                        f"the stored Merkle subtrees (audit_nodes) do not match the latest "
                        f"checkpoint of size {self.covered}: height {h} holds index {j} where "
                        f"{count} belongs"
                    )
                digest.update(bytes(value))
                found[h] = (count + 1, digest)
        for h in sorted(found.keys() | self.expected.keys()):
            have = found.get(h)
            want = self.expected.get(h)
            if have is None or want is None or have[0] != want[0]:
                raise _refuse(
                    f"the stored Merkle subtrees (audit_nodes) at height {h} hold "
                    f"{0 if have is None else have[0]} rows where the latest checkpoint of "
                    f"size {self.covered} has {0 if want is None else want[0]}"
                )
            if have[1].digest() != want[1].digest():
                raise _refuse(f"a stored Merkle subtree of height {h} was altered")


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One snapshot for the whole check: on PostgreSQL READ COMMITTED would let the entry
    scan see rows that other workers appended after the head was read."""
    if engine.dialect.name != "postgresql":
        with reading(engine) as conn:
            yield conn
        return
    with (
        engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
        conn.begin(),
    ):
        yield conn


def _check_lookup(conn: Connection, covered: int) -> None:
    """The lookup index covers exactly entries ``0..covered-1``."""
    count, low, high = conn.execute(
        select(func.count(), func.min(audit_lookup.c.seq), func.max(audit_lookup.c.seq))
    ).one()
    if count != covered or (covered and (low, high) != (0, covered - 1)):
        raise _refuse(
            f"the lookup index (audit_lookup) holds {count} rows where the latest checkpoint "
            f"covers {covered} entries: it was damaged or left over"
        )


def _lost(conn: Connection, count: int, size: int) -> str:
    """Name exactly what changed: held entries that differ from the signed tree, and the gone.

    Entries from the first changed one onward all differ (each ``prev`` names the one
    before). The signed tree's pairs of leaves survive in ``audit_nodes`` (height 1) while the
    database keeps the subtrees of a checkpoint covering them; without them, held entries
    cannot be compared one by one, and the sentence says so.
    """
    gone = f"{_seqs(count, size)} gone"
    pairs = count // 2
    if pairs == 0:
        return gone
    stored = conn.execute(
        select(audit_nodes.c.idx, audit_nodes.c.hash)
        .where(audit_nodes.c.height == 1, audit_nodes.c.idx < pairs)
        .order_by(audit_nodes.c.idx)
    ).all()
    if len(stored) != pairs:
        return (
            f"{gone}, and the {count} entries it holds cannot be compared one by one with "
            "that checkpoint (the database no longer holds its subtrees): they may have been "
            "replaced too"
        )
    with conn.execute(
        select(audit_entries.c.leaf_hash)
        .where(audit_entries.c.seq < 2 * pairs)
        .order_by(audit_entries.c.seq)
        .execution_options(yield_per=10_000)
    ) as leaves:
        iterator = (bytes(leaf) for (leaf,) in leaves)
        for j, value in stored:
            if node_hash(next(iterator), next(iterator)) != bytes(value):
                first = 2 * int(j)
                return (
                    f"{_seqs(first, count)} replaced (the first change is at seq {first} or "
                    f"{first + 1}: the signed tree pairs them) and {gone}"
                )
    if count % 2:
        return f"{gone} (entry seq {count - 1} cannot be compared: its pair is gone)"
    return gone


def _check_signature(
    signed: SignedCheckpoint,
    node_id: str,
    public_keys: dict[str, Ed25519PublicKey],
    *,
    what: str,
) -> None:
    checkpoint = signed.checkpoint
    if checkpoint.node_id != node_id:
        raise _refuse(f"{what} was signed for node {checkpoint.node_id!r}")
    key = _find_key(public_keys, checkpoint.key_id)
    if key is None:
        raise _refuse(f"{what} names key {checkpoint.key_id}, which this node lacks")
    try:
        verify_checkpoint(signed, key)
    except InvalidCheckpointError:
        raise _refuse(f"{what} has a signature that does not verify") from None


def _find_key(public_keys: dict[str, Ed25519PublicKey], key_id: str) -> Ed25519PublicKey | None:
    """The key a checkpoint names: by its key id, or the hex form checkpoints used before."""
    found = public_keys.get(key_id)
    if found is None:
        for key in public_keys.values():
            if verifier.key_id_matches(key, key_id):
                return key
    return found


def _check_root(frontier: Frontier, signed: SignedCheckpoint, what: str) -> None:
    if frontier.root().hex() != signed.checkpoint.root_hash:
        raise _refuse(
            f"the log was rewritten: its first {frontier.size} entries do not match the root "
            f"signed in {what}"
        )


def _check_stored_edge(conn: Connection, frontier: Frontier) -> None:
    """The next checkpoint extends these stored subtrees: they must be the recomputed ones."""
    inner = [(h, j, value) for h, j, value in frontier.edge if h > 0]
    try:
        stored = tree.fetch(conn, [(h, j) for h, j, _ in inner])
    except LogIntegrityError as exc:
        raise _refuse(str(exc)) from None
    for h, j, value in inner:
        if stored[(h, j)] != value:
            raise _refuse(f"the stored Merkle subtree (height {h}, index {j}) was altered")


def _describe(signed: SignedCheckpoint) -> str:
    checkpoint = signed.checkpoint
    return f"the checkpoint of size {checkpoint.tree_size} signed at {checkpoint.time:%Y-%m-%d %H:%M:%S}Z"


def _seqs(start: int, stop: int) -> str:
    """Name entries ``start..stop-1`` with their verb: 'entry seq 3 is', 'entries seq 3..5 are'."""
    if stop - start == 1:
        return f"entry seq {start} is"
    return f"entries seq {start}..{stop - 1} are"


def _refuse(why: str) -> LogIntegrityError:
    return LogIntegrityError(f"refusing to serve: {why}")
