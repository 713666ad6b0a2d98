"""Bearer tokens for agencies and auditors: shown once, stored only as a SHA-256 hash.

Tokens carry 256 bits from ``secrets``, so a fast hash is enough (no password KDF needed):
nobody can guess a preimage, and a leaked database reveals no usable token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, Engine, select, update

from nodes.audit.log import append
from nodes.database import reading, writing
from nodes.tables import tokens
from schemas.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError

Role = Literal["agency", "auditor", "operator"]
ROLES: tuple[Role, ...] = ("agency", "auditor", "operator")
PREFIX = "xt_"


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    role: Role
    schemas: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    def may_push(self, schema_id: str) -> bool:
        return self.role == "agency" and schema_id in self.schemas


class UnknownTokenError(AuthenticationError):
    """No token matches the credential presented."""


class RevokedTokenError(AuthenticationError):
    """The token was revoked by the operator."""

    #: The revoked token, so the failed attempt can be logged under its name.
    token: TokenRecord | None = None


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _record(row: object) -> TokenRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return TokenRecord(
        id=m["id"],
        name=m["name"],
        role=m["role"],
        schemas=tuple(json.loads(m["schemas"])),
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
    )


def issue(
    conn: Connection,
    *,
    name: str,
    role: Role,
    schemas: tuple[str, ...],
    now: dt.datetime,
    actor: str = "operator",
) -> tuple[TokenRecord, str]:
    """Create a token; the plaintext is returned once and never stored (nor logged).

    ``actor`` (who issued it) goes into the audit entry appended in the same transaction.
    """
    if role not in ROLES:
        raise InvalidInputError(f"unknown role '{role}'; roles are {', '.join(ROLES)}")
    if role == "agency" and not schemas:
        raise InvalidInputError("an agency token must name the schemas it may push")
    if conn.execute(select(tokens.c.id).where(tokens.c.name == name)).first() is not None:
        raise ConflictError(f"a token named '{name}' exists already")
    secret = PREFIX + secrets.token_urlsafe(32)
    result = conn.execute(
        tokens.insert().values(
            name=name,
            role=role,
            schemas=json.dumps(sorted(schemas)),
            secret_sha256=secret_hash(secret),
            created_at=now,
        )
    )
    token_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    assert token_id is not None
    scope = f"; schemas {', '.join(sorted(schemas))}" if schemas else ""
    append(
        conn,
        actor=actor,
        role="operator",
        action="token.issue",
        resource=f"token:{name}",
        outcome="allowed",
        reason=f"issued a token of role {role}{scope}",
        schema=schemas[0] if len(schemas) == 1 else None,
        now=now,
    )
    return TokenRecord(token_id, name, role, tuple(sorted(schemas)), now, None), secret


def authenticate(engine: Engine, secret: str) -> TokenRecord:
    """The token behind a bearer secret, or an AuthenticationError that reveals nothing more."""
    with reading(engine) as conn:
        row = conn.execute(
            select(tokens).where(tokens.c.secret_sha256 == secret_hash(secret))
        ).first()
    if row is None:
        raise UnknownTokenError("the bearer token is not known to this node")
    record = _record(row)
    if record.revoked_at is not None:
        error = RevokedTokenError(
            "the bearer token was revoked; ask the node operator for a new one"
        )
        error.token = record
        raise error
    return record


def list_all(engine: Engine) -> list[TokenRecord]:
    with reading(engine) as conn:
        return [_record(r) for r in conn.execute(select(tokens).order_by(tokens.c.id))]


def revoke(
    conn: Connection, *, name: str, now: dt.datetime, actor: str = "operator"
) -> TokenRecord:
    """Revoke a token (idempotent) and log it, as ``actor``, in the same transaction."""
    row = conn.execute(select(tokens).where(tokens.c.name == name)).first()
    if row is None:
        raise NotFoundError(f"no token named '{name}'")
    record = _record(row)
    reason = f"revoked a token of role {record.role}"
    if record.revoked_at is None:
        conn.execute(update(tokens).where(tokens.c.id == record.id).values(revoked_at=now))
        record = TokenRecord(
            record.id, record.name, record.role, record.schemas, record.created_at, now
        )
    else:
        reason = f"already revoked (role {record.role})"
    append(
        conn,
        actor=actor,
        role="operator",
        action="token.revoke",
        resource=f"token:{name}",
        outcome="allowed",
        reason=reason,
        now=now,
    )
    return record


def issue_token(
    engine: Engine,
    *,
    name: str,
    role: Role,
    schemas: tuple[str, ...],
    now: dt.datetime,
    actor: str = "operator",
) -> tuple[TokenRecord, str]:
    with writing(engine) as conn:
        return issue(conn, name=name, role=role, schemas=schemas, now=now, actor=actor)


def revoke_token(
    engine: Engine, *, name: str, now: dt.datetime, actor: str = "operator"
) -> TokenRecord:
    with writing(engine) as conn:
        return revoke(conn, name=name, now=now, actor=actor)
