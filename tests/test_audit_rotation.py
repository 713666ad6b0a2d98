"""Issue 8 item 15: an export spanning ``exchange keys rotate`` verifies with the standalone
verifier by following the endorsement chain; one key id form shared by node and verifier."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from typer.testing import CliRunner

from exchange.cli import app
from nodes import identity
from nodes.audit import checkpoint_store, tree, verifier
from nodes.audit.checkpoint import sign_checkpoint
from nodes.audit.entry import AuditEntry
from nodes.audit.export_format import build_export
from nodes.database import reading
from nodes.node import Node
from tests.audit_support import add_entries, stored_bytes
from tests.conftest import now

runner = CliRunner()
VERIFIER = Path(verifier.__file__)


def run(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    return result.output


def pem(key: Ed25519PublicKey, path: Path) -> Path:
    path.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def rotated(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A node that signed with its first key, rotated, signed with the second; its export and
    the first key (the one an auditor checked out of band) and the second."""
    directory = tmp_path / "xa"
    run("init", directory, "--node-id", "XA", "--name", "A")
    first = identity.load_current(directory / "keys").public_key
    run("token", "create", directory, "--name", "ombudsman", "--role", "auditor")
    run("audit", "checkpoint", directory)
    run("keys", "rotate", directory, "--grace-hours", "1")
    run("token", "create", directory, "--name", "lab", "--role", "auditor")
    out = tmp_path / "export.jsonl"
    run("audit", "export", directory, "--out", out)
    second = identity.load_current(directory / "keys").public_key
    return out, pem(first, tmp_path / "first.pem"), pem(second, tmp_path / "second.pem")


def standalone(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The verifier as an auditor runs it: one file, by path, outside the project."""
    return subprocess.run(
        [sys.executable, "-I", VERIFIER, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )


def test_an_export_spanning_a_rotation_verifies_from_the_first_key(
    rotated: tuple[Path, Path, Path],
) -> None:
    export, first, _second = rotated
    lines = export.read_bytes().splitlines()
    assert lines[1].startswith(verifier.KEY_PREFIX)  # the endorsement, right after the header
    key_ids = {
        json.loads(line)["checkpoint"]["key_id"]
        for line in lines
        if line.startswith(verifier.CHECKPOINT_PREFIX)
    }
    assert len(key_ids) == 2  # checkpoints of both keys are in the export
    done = standalone(export, "--public-key", first)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: ")


def test_the_newest_key_alone_cannot_vouch_for_the_older_one(
    rotated: tuple[Path, Path, Path],
) -> None:
    export, _first, second = rotated
    done = standalone(export, "--public-key", second)
    assert done.returncode == 1
    assert "FAILED [bad-signature]" in done.stdout
    assert "pass the oldest key" in done.stdout


def test_a_forged_endorsement_fails(rotated: tuple[Path, Path, Path]) -> None:
    """An attacker's key 'endorsed' in the first key's name, with the attacker's signature."""
    export, first, _second = rotated
    lines = export.read_bytes().split(b"\n")
    statement, _sig = lines[1][len(verifier.KEY_PREFIX) :].rsplit(verifier.SIGNATURE_SEPARATOR, 1)
    attacker = Ed25519PrivateKey.generate()
    fields = json.loads(statement)
    fields["public_key"] = identity.public_key_text(attacker.public_key())
    fields["key_id"] = identity.key_id(attacker.public_key())
    forged = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    lines[1] = (
        verifier.KEY_PREFIX
        + forged
        + verifier.SIGNATURE_SEPARATOR
        + base64.b64encode(attacker.sign(forged))
        + verifier.CHECKPOINT_SUFFIX
    )
    export.write_bytes(b"\n".join(lines))
    done = standalone(export, "--public-key", first)
    assert done.returncode == 1
    assert done.stdout.startswith("FAILED [bad-endorsement]")
    assert "does not verify" in done.stdout


def test_the_verifier_stays_standard_library_and_cryptography_only() -> None:
    imported = {
        line.split()[1].split(".")[0]
        for line in VERIFIER.read_text().splitlines()
        if line.startswith(("import ", "from "))
    }
    allowed = set(sys.stdlib_module_names) | {"cryptography", "__future__"}
    assert imported <= allowed, imported - allowed


def test_node_and_standalone_verifier_compute_the_same_key_id_leaf_root_and_signed_bytes(
    node: Node,
) -> None:
    """One shared definition of each: if either side drifts, this fails."""
    public = node.key.public_key
    assert identity.key_id(public) == verifier.key_id(public)
    assert node.key.kid == verifier.key_id(public)
    add_entries(node.engine, 5)
    signed = checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    assert signed.checkpoint.key_id == node.key.kid
    data = stored_bytes(node.engine)
    export = build_export(data, [signed])
    result = verifier.verify_export(export, public)
    with reading(node.engine) as conn:
        assert (
            result.root_hash == tree.root_at(conn, len(data)).hex() == signed.checkpoint.root_hash
        )
        assert AuditEntry.from_bytes(data[-1]).leaf_hash() == tree.leaf_at(conn, len(data) - 1)
    parsed = verifier.parse_checkpoint_line(signed.to_line())
    assert parsed.body == signed.checkpoint.to_bytes() == signed.body  # the signature input
    verifier.verify_checkpoint(parsed, public)


def test_a_checkpoint_that_names_its_key_in_the_old_hex_form_still_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    import hashlib

    old = sign_checkpoint(
        key,
        tree_size=0,
        root_hash=hashlib.sha256(b"").digest(),
        time=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        node_id="XA",
        key_id=hashlib.sha256(raw).hexdigest(),
    )
    assert verifier.verify_export(build_export([], [old]), key.public_key()).tree_size == 0
