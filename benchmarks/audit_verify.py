"""How fast does the offline verifier check a 100,000-entry export?

Builds a realistic log (pulls, pushes, denials, admin actions), signs a
checkpoint every 10,000 entries, writes the export to a temporary file, then
times, in the same run:

* the offline verification of the export (from bytes, and from the file),
* raw SHA-256 (hashlib) over the same canonical entry bytes: the floor that
  any verifier hashing every entry must pay.

Goal: 200,000 entries per second or more. Run: .venv/bin/python benchmarks/audit_verify.py
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nodes.audit.checkpoint import sign_checkpoint
from nodes.audit.entry import encode_entry, prev_for
from nodes.audit.export import build_export
from nodes.audit.merkle import MerkleTree, leaf_hash
from nodes.audit.verifier import verify_export, verify_export_file

N = 100_000
CHECKPOINT_EVERY = 10_000
ROUNDS = 3

ACTIONS = [
    ("agency:ht-mspp-dsp", "agency", "push", "allowed", "schema weekly-epi-counts@1 accepted"),
    (
        "partner:do-minsa",
        "partner",
        "pull",
        "allowed",
        "rule caribbean-weekly: admin1, 14-day embargo",
    ),
    ("partner:fr-spf", "partner", "pull", "denied", "no agreement covers schema line-list@1"),
    ("partner:who-paho", "partner", "pull", "denied", "partner budget exhausted for 2025-W10"),
    ("operator:cli", "operator", "token.issue", "allowed", "token for agency ht-lnsp, role agency"),
    ("auditor:eu-ombudsman", "auditor", "audit.export", "allowed", "read-only export"),
]


def build_log() -> tuple[list[bytes], bytes, Ed25519PublicKey]:
    key = Ed25519PrivateKey.generate()
    start = datetime(2025, 3, 1, tzinfo=UTC)
    entries: list[bytes] = []
    tree = MerkleTree()
    checkpoints = []
    previous: bytes | None = None
    for seq in range(N):
        actor, role, action, outcome, reason = ACTIONS[seq % len(ACTIONS)]
        data = encode_entry(
            seq=seq,
            time=start + timedelta(seconds=seq * 7),
            actor=actor,
            role=role,
            action=action,
            resource=f"schema:weekly-epi-counts@1/report/{seq:08x}",
            outcome=outcome,
            reason=reason,
            policy_hash="sha256:" + hashlib.sha256(b"policy v3").hexdigest(),
            request_digest=None if role == "operator" else f"sha-256=:{seq:043d}=:",
            prev=prev_for(previous),
            node_id="ht-mspp",
        )
        previous = leaf_hash(data)
        entries.append(data)
        tree.append(previous)
        if (seq + 1) % CHECKPOINT_EVERY == 0:
            checkpoints.append(
                sign_checkpoint(
                    key,
                    tree_size=seq + 1,
                    root_hash=tree.root(),
                    time=start + timedelta(seconds=seq * 7),
                    node_id="ht-mspp",
                )
            )
    return entries, build_export(entries, checkpoints), key.public_key()


def best_of(rounds: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    started = time.perf_counter()
    entries, export, public_key = build_log()
    size = sum(len(e) for e in entries)
    print(
        f"built {N:,} entries ({size / N:.0f} bytes each on average), "
        f"{N // CHECKPOINT_EVERY} checkpoints, export {len(export) / 1e6:.1f} MB "
        f"in {time.perf_counter() - started:.1f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.jsonl"
        path.write_bytes(export)
        result = verify_export_file(path, public_key)
        assert result.entries == N and result.tree_size == N
        t_bytes = best_of(ROUNDS, lambda: verify_export(export, public_key))
        t_file = best_of(ROUNDS, lambda: verify_export_file(path, public_key))

    sha256 = hashlib.sha256

    def raw_hashing() -> None:
        for data in entries:
            sha256(data).digest()

    t_hash = best_of(ROUNDS, raw_hashing)
    print(f"verify export (bytes in memory): {N / t_bytes:>12,.0f} entries/s ({t_bytes:.3f} s)")
    print(f"verify export (file on disk):    {N / t_file:>12,.0f} entries/s ({t_file:.3f} s)")
    print(f"raw SHA-256 of the entry bytes:  {N / t_hash:>12,.0f} entries/s ({t_hash:.3f} s)")
    print(f"verification costs {t_file / t_hash:.1f}x raw hashing (file vs hashlib)")
    goal = 200_000
    verdict = "meets" if N / t_file >= goal else "MISSES"
    print(f"goal {goal:,} entries/s: {verdict} it ({result.summary()[:60]}...)")


if __name__ == "__main__":
    main()
