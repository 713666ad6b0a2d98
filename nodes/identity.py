"""The node's Ed25519 identity keys: created by ``exchange init``, files with mode 0600.

A key id is the unpadded base64url SHA-256 of the raw 32-byte public key, so anyone holding
the public key can recompute it and an operator can read it out over the phone.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
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
    """Unpadded base64url of SHA-256 over the raw 32-byte key (43 characters).

    Derived, never chosen: a key id cannot be made to name another node's key.
    """
    return b64url(hashlib.sha256(raw_public(public_key)).digest())


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """Unpadded base64url of the raw 32-byte key, as in a JWK ``x`` member (RFC 8037).

    This is what peers register and what the node descriptor publishes.
    """
    return b64url(raw_public(public_key))


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Inverse of :func:`public_key_text`; raises ``ValueError`` on any other spelling.

    Only the canonical form is accepted (no padding, no standard alphabet, no stray
    whitespace, no non-zero trailing bits), so one key has exactly one text and one key id.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", text):
        raise ValueError("an Ed25519 public key is 43 characters of unpadded base64url")
    key = Ed25519PublicKey.from_public_bytes(b64url_decode(text))
    if public_key_text(key) != text:
        raise ValueError("the public key is not in canonical base64url form")
    return key


@dataclass(frozen=True)
class NodeKey:
    kid: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


def create_key(keys_dir: Path, *, make_current: bool = True) -> NodeKey:
    """Write a new private key (0600, never group- or world-readable) and make it current.

    Rotation passes ``make_current=False`` and switches with :func:`set_current` once the
    key ring records the new key, so a crash in between leaves the old key in charge.
    """
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
    if make_current:
        set_current(keys_dir, kid)
    return NodeKey(kid=kid, private_key=private_key)


def set_current(keys_dir: Path, kid: str) -> None:
    """Point ``current`` at ``kid`` atomically: a reader sees the old or the new, never half."""
    if not (keys_dir / f"{kid}.pem").is_file():
        raise FileNotFoundError(f"no key {kid} in {keys_dir}")
    scratch = keys_dir / f".{CURRENT}.tmp"
    scratch.write_text(kid + "\n")
    scratch.replace(keys_dir / CURRENT)


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
