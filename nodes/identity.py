"""The node's Ed25519 identity keys: created by ``exchange init``, files with mode 0600.

A key id is the unpadded base64url SHA-256 of the raw 32-byte public key, so anyone holding
the public key can recompute it and an operator can read it out over the phone.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CURRENT = "current"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    return b64url(hashlib.sha256(raw_public(public_key)).digest())


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """The public key as unpadded base64url of its raw bytes: what peers register."""
    return b64url(raw_public(public_key))


def parse_public_key(text: str) -> Ed25519PublicKey:
    raw = b64url_decode(text.strip())
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (43 base64url characters)")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class NodeKey:
    kid: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


def create_key(keys_dir: Path) -> NodeKey:
    """Write a new private key (0600, never group- or world-readable) and make it current."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_key = Ed25519PrivateKey.generate()
    kid = key_id(private_key.public_key())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = keys_dir / f"{kid}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    (keys_dir / CURRENT).write_text(kid + "\n")
    return NodeKey(kid=kid, private_key=private_key)


def load_key(keys_dir: Path, kid: str) -> NodeKey:
    loaded = serialization.load_pem_private_key(
        (keys_dir / f"{kid}.pem").read_bytes(), password=None
    )
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"key {kid} is not an Ed25519 key")
    return NodeKey(kid=kid, private_key=loaded)


def load_current(keys_dir: Path) -> NodeKey:
    marker = keys_dir / CURRENT
    if not marker.is_file():
        raise FileNotFoundError(f"no current identity key in {keys_dir}; run 'exchange init'")
    return load_key(keys_dir, marker.read_text().strip())
