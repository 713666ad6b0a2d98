"""The exception tree every layer raises; ``exchange.problems`` maps each branch to HTTP.

    ExchangeError                 anything the caller can be told about, safely
    ├── InvalidInputError         the request is malformed or its values are wrong (422)
    ├── NotFoundError             no such thing, or not visible to this caller (404)
    ├── ConflictError             contradicts what was stored before (409 or 422)
    ├── AuthenticationError       no credential, or one we do not accept (401)
    ├── ForbiddenError            authenticated, but not allowed to do this (403)
    └── BudgetExhaustedError      allowed, but the privacy budget cannot pay for it (429)

Messages are written for the person on the other end: they never contain secrets.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Base of every error whose message may be shown to the caller."""


class InvalidInputError(ExchangeError):
    """The request is malformed or carries invalid values."""


class NotFoundError(ExchangeError):
    """The thing asked for does not exist or is not visible to this caller."""


class ConflictError(ExchangeError):
    """The request contradicts something stored earlier."""


class AuthenticationError(ExchangeError):
    """The caller is not who it must be: no, unknown, revoked or invalid credentials."""


class ForbiddenError(ExchangeError):
    """The caller is known but may not do this."""


class BudgetExhaustedError(ExchangeError):
    """The privacy budget left cannot pay for the release asked for."""
