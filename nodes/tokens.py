"""Bearer tokens for agencies, auditors and operators: shown once, stored only as a SHA-256 hash.

Tokens carry 256 bits from ``secrets``, so a fast hash is enough (no password KDF needed):
nobody can guess a preimage, and a leaked database reveals no usable token.

A token may expire; it can be rotated (a new secret, same name and scopes) while the old
secret keeps working for a grace period, so its holder can switch without an outage. When
it was last used is kept to the minute: writing on every request would turn every read
into a write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, or_, select, update

from nodes.access import ROLES, AuthenticationError, Role
from nodes.audit.log import append
from nodes.database import reading, writing
from nodes.tables import tokens
from schemas.errors import ConflictError, InvalidInputError, NotFoundError

PREFIX = "xt_"
#: ``last_used_at`` is rewritten only when older than this, so most requests write nothing.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}
_LONGEST = dt.timedelta(days=10 * 366)


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    role: Role
    schemas: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    rotated_at: dt.datetime | None = None
    previous_expires_at: dt.datetime | None = None  # end of the replaced secret's grace

    def may_push(self, schema_id: str) -> bool:
        return self.role == "agency" and schema_id in self.schemas


class UnknownTokenError(AuthenticationError):
    """No token matches the credential presented."""


class RevokedTokenError(AuthenticationError):
    """The token was revoked by the operator."""

    #: The revoked token, so the failed attempt can be logged under its name.
    token: TokenRecord | None = None


class ExpiredTokenError(RevokedTokenError):
    """The token (or the secret a rotation replaced) is past its expiry: refused like a revoked one."""


def parse_duration(text: str, *, allow_zero: bool = False) -> dt.timedelta:
    """``12h``, ``90d`` or ``2w`` (``0`` too when ``allow_zero``); InvalidInputError otherwise."""
    if allow_zero and text.strip() == "0":
        return dt.timedelta(0)
    match = re.fullmatch(r"\s*(\d{1,6})\s*([hdw])\s*", text.lower())
    if match is None:
        raise InvalidInputError(
            f"'{text}' is not a duration; write a whole number and a unit: 12h, 90d or 2w"
        )
    amount = int(match.group(1)) * _UNITS[match.group(2)]
    if amount > _LONGEST:
        raise InvalidInputError(f"'{text}' is more than ten years; choose a shorter duration")
    if not amount and not allow_zero:
        raise InvalidInputError(f"'{text}' is no time at all; a token must live longer than 0")
    return amount


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
        expires_at=m["expires_at"],
        last_used_at=m["last_used_at"],
        rotated_at=m["rotated_at"],
        previous_expires_at=m["previous_expires_at"],
    )


def issue(
    conn: Connection,
    *,
    name: str,
    role: Role,
    schemas: tuple[str, ...],
    now: dt.datetime,
    actor: str = "operator",
    lifetime: dt.timedelta | None = None,
) -> tuple[TokenRecord, str]:
    """Create a token; the plaintext is returned once and never stored (nor logged).

    ``lifetime``: the token expires that long after ``now`` (None: valid until revoked).
    ``actor`` (who issued it) goes into the audit entry appended in the same transaction.
    """
    if role not in ROLES:
        raise InvalidInputError(f"unknown role '{role}'; roles are {', '.join(ROLES)}")
    if role == "agency" and not schemas:
        raise InvalidInputError("an agency token must name the schemas it may push")
    if conn.execute(select(tokens.c.id).where(tokens.c.name == name)).first() is not None:
        raise ConflictError(f"a token named '{name}' exists already")
    if lifetime is not None and lifetime <= dt.timedelta(0):
        raise InvalidInputError("a token's lifetime must be longer than 0")
    expires_at = now + lifetime if lifetime is not None else None
    secret = _new_secret()
    result = conn.execute(
        tokens.insert().values(
            name=name,
            role=role,
            schemas=json.dumps(sorted(schemas)),
            secret_sha256=secret_hash(secret),
            created_at=now,
            expires_at=expires_at,
        )
    )
    token_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    assert token_id is not None
    scope = f"; schemas {', '.join(sorted(schemas))}" if schemas else ""
    scope += f"; expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
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
    record = TokenRecord(
        token_id, name, role, tuple(sorted(schemas)), now, None, expires_at=expires_at
    )
    return record, secret


def _new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def authenticate(engine: Engine, secret: str, *, now: dt.datetime | None = None) -> TokenRecord:
    """The token behind a bearer secret, or an AuthenticationError that reveals nothing more.

    Revoked and expired tokens, and a rotated-out secret past its grace, raise
    RevokedTokenError (ExpiredTokenError) carrying the token, so the refusal is logged
    under its name. One indexed read; a write only when ``last_used_at`` is a minute old.
    """
    now = now or dt.datetime.now(dt.UTC)
    digest = secret_hash(secret)
    with reading(engine) as conn:
        row = conn.execute(
            select(tokens).where(
                or_(tokens.c.secret_sha256 == digest, tokens.c.previous_secret_sha256 == digest)
            )
        ).first()
    if row is None:
        raise UnknownTokenError("the bearer token is not known to this node")
    record = _record(row)
    error: RevokedTokenError | None = None
    if record.revoked_at is not None:
        error = RevokedTokenError(
            "the bearer token was revoked; ask the node operator for a new one"
        )
    elif row._mapping["secret_sha256"] != digest:  # the secret a rotation replaced
        if record.previous_expires_at is None or record.previous_expires_at <= now:
            error = ExpiredTokenError(
                "the bearer token expired: it was replaced by a rotation and its grace "
                "period is over; use the new secret"
            )
    elif record.expires_at is not None and record.expires_at <= now:
        error = ExpiredTokenError(
            f"the bearer token expired at {record.expires_at:%Y-%m-%d %H:%M} UTC; "
            "ask the node operator for a new one"
        )
    if error is not None:
        error.token = record
        raise error
    if record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION:
        _touch(engine, record.id, now)
    return record


def by_id(engine: Engine, token_id: int, *, now: dt.datetime) -> TokenRecord:
    """A token still in force, by id: what a dashboard session re-checks on every page.
    Raises RevokedTokenError or ExpiredTokenError like ``authenticate``."""
    with reading(engine) as conn:
        row = conn.execute(select(tokens).where(tokens.c.id == token_id)).one()
    record = _record(row)
    error: RevokedTokenError | None = None
    if record.revoked_at is not None:
        error = RevokedTokenError("your token was revoked; ask the node operator for a new one")
    elif record.expires_at is not None and record.expires_at <= now:
        error = ExpiredTokenError("your token expired; ask the node operator for a new one")
    if error is not None:
        error.token = record
        raise error
    return record


def _touch(engine: Engine, token_id: int, now: dt.datetime) -> None:
    """Record a use; the condition makes concurrent requests write it once, not once each."""
    stale = now - LAST_USED_RESOLUTION
    with writing(engine) as conn:
        conn.execute(
            update(tokens)
            .where(tokens.c.id == token_id)
            .where(or_(tokens.c.last_used_at.is_(None), tokens.c.last_used_at <= stale))
            .values(last_used_at=now)
        )


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
        record = dataclasses.replace(record, revoked_at=now)
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


def rotate(
    conn: Connection, *, name: str, grace: dt.timedelta, now: dt.datetime, actor: str = "operator"
) -> tuple[TokenRecord, str]:
    """Give a token a new secret; the current one stays valid for ``grace`` (0: not at all).

    Name, role, scopes and expiry stay; a secret replaced by an earlier rotation stops
    working now (one previous secret at a time). Audited as ``token.rotate``.
    """
    if grace < dt.timedelta(0):
        raise InvalidInputError("the grace period cannot be negative")
    row = conn.execute(select(tokens).where(tokens.c.name == name)).first()
    if row is None:
        raise NotFoundError(f"no token named '{name}'")
    record = _record(row)
    if record.revoked_at is not None:
        raise ConflictError(f"token '{name}' is revoked; issue a new one instead")
    if record.expires_at is not None and record.expires_at <= now:
        raise ConflictError(f"token '{name}' has expired; issue a new one instead")
    secret = _new_secret()
    conn.execute(
        update(tokens)
        .where(tokens.c.id == record.id)
        .values(
            secret_sha256=secret_hash(secret),
            previous_secret_sha256=row._mapping["secret_sha256"],
            previous_expires_at=now + grace,
            rotated_at=now,
        )
    )
    append(
        conn,
        actor=actor,
        role="operator",
        action="token.rotate",
        resource=f"token:{name}",
        outcome="allowed",
        reason=f"new secret for a token of role {record.role}; the old one is valid for "
        f"{_show(grace)} more",
        now=now,
    )
    rotated = dataclasses.replace(record, rotated_at=now, previous_expires_at=now + grace)
    return rotated, secret


def _show(span: dt.timedelta) -> str:
    if not span:
        return "no time"
    if span % dt.timedelta(days=1):
        return f"{span // dt.timedelta(hours=1)} hour(s)"
    return f"{span.days} day(s)"


def issue_token(
    engine: Engine,
    *,
    name: str,
    role: Role,
    schemas: tuple[str, ...],
    now: dt.datetime,
    actor: str = "operator",
    lifetime: dt.timedelta | None = None,
) -> tuple[TokenRecord, str]:
    with writing(engine) as conn:
        return issue(
            conn, name=name, role=role, schemas=schemas, now=now, actor=actor, lifetime=lifetime
        )


def rotate_token(
    engine: Engine, *, name: str, grace: dt.timedelta, now: dt.datetime, actor: str = "operator"
) -> tuple[TokenRecord, str]:
    with writing(engine) as conn:
        return rotate(conn, name=name, grace=grace, now=now, actor=actor)


def revoke_token(
    engine: Engine, *, name: str, now: dt.datetime, actor: str = "operator"
) -> TokenRecord:
    with writing(engine) as conn:
        return revoke(conn, name=name, now=now, actor=actor)
