"""Who may do what: the roles a token gives, and the errors for an unknown caller and a
refused one.

Only a node knows its callers (bearer tokens, signing keys, nonces) and what each may do
(roles, the policy), so these errors start here, the lowest layer that raises them;
schemas and policies judge data, never callers. They stay ``schemas.errors.ExchangeError``
branches, so their sentences are coded ``MESSAGES`` and ``exchange.api.problems`` answers
them with 401 and 403.
"""

from __future__ import annotations

from typing import Literal

from schemas.errors import ExchangeError

#: What a bearer token may do. Kept here, light to import, because the CLI's ``--help``
#: reads it before any node is opened.
Role = Literal["agency", "analyst", "auditor", "operator"]
ROLES: tuple[Role, ...] = ("agency", "analyst", "auditor", "operator")


class AuthenticationError(ExchangeError):
    """The caller is not who it must be: no, unknown, revoked or invalid credentials."""


class ForbiddenError(ExchangeError):
    """The caller is known but may not do this."""
