"""Dashboard sessions: a person signs in once with the token they already hold.

The browser keeps a random secret in a cookie; the node keeps only its SHA-256 (as it does
for tokens), the token it stands for, a CSRF value its forms echo, and an expiry. Every page
re-checks the token itself, so revoking or expiring a token ends its sessions at once, and
signing out ends one everywhere: the row is shared by every worker.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select, update

from nodes import tokens
from nodes.access import AuthenticationError
from nodes.audit.log import append
from nodes.database import reading, writing
from nodes.tables import dashboard_sessions
from nodes.tokens import TokenRecord

#: How long a sign-in lasts when the settings do not say.
DEFAULT_LIFETIME = dt.timedelta(hours=8)


class SessionEndedError(AuthenticationError):
    """The session is unknown, expired or signed out: the person signs in again."""


@dataclass(frozen=True)
class DashboardSession:
    id: int
    token: TokenRecord
    csrf: str
    expires_at: dt.datetime


def open_session(
    engine: Engine, *, secret: str, lifetime: dt.timedelta, now: dt.datetime
) -> tuple[str, DashboardSession]:
    """Sign in with a bearer token's ``secret``; the cookie's value and the session.

    Raises what ``tokens.authenticate`` raises for a wrong, revoked or expired token; the
    caller audits that refusal as it audits an API's ``auth.failed``.
    """
    token = tokens.authenticate(engine, secret, now=now)
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires_at = now + lifetime
    if token.expires_at is not None:
        expires_at = min(expires_at, token.expires_at)
    with writing(engine) as conn:
        # expired rows serve no one (the audit log keeps who signed in when): each sign-in
        # clears them, so the table holds the live sessions and the ones ended today
        conn.execute(delete(dashboard_sessions).where(dashboard_sessions.c.expires_at < now))
        inserted = conn.execute(
            dashboard_sessions.insert().values(
                secret_sha256=tokens.secret_hash(cookie),
                csrf=csrf,
                token_id=token.id,
                created_at=now,
                expires_at=expires_at,
            )
        ).inserted_primary_key
        assert inserted is not None
        session_id: int = inserted[0]
        append(
            conn,
            actor=f"token:{token.name}",
            role=token.role,
            action="session.open",
            resource=f"session:{session_id}",
            outcome="allowed",
            reason=f"signed in to the dashboard until {expires_at:%Y-%m-%d %H:%M} UTC",
            now=now,
        )
    return cookie, DashboardSession(session_id, token, csrf, expires_at)


def find(engine: Engine, cookie: str, *, now: dt.datetime) -> DashboardSession:
    """The live session behind a cookie; SessionEndedError, or the token's own error when
    the token was revoked or expired since the sign-in."""
    with reading(engine) as conn:
        row = conn.execute(
            select(dashboard_sessions).where(
                dashboard_sessions.c.secret_sha256 == tokens.secret_hash(cookie)
            )
        ).first()
    if row is None:
        raise SessionEndedError("you are not signed in; sign in with your token")
    m = row._mapping
    if m["ended_at"] is not None or m["expires_at"] <= now:
        raise SessionEndedError("your session has ended; sign in again with your token")
    token = tokens.by_id(engine, m["token_id"], now=now)
    return DashboardSession(m["id"], token, m["csrf"], m["expires_at"])


def end(engine: Engine, session: DashboardSession, *, now: dt.datetime) -> None:
    """Sign out: the cookie stops working on every worker at once."""
    with writing(engine) as conn:
        ended = conn.execute(
            update(dashboard_sessions)
            .where(dashboard_sessions.c.id == session.id)
            .where(dashboard_sessions.c.ended_at.is_(None))
            .values(ended_at=now)
        ).rowcount
        if ended:
            append(
                conn,
                actor=f"token:{session.token.name}",
                role=session.token.role,
                action="session.close",
                resource=f"session:{session.id}",
                outcome="allowed",
                reason="signed out of the dashboard",
                now=now,
            )
