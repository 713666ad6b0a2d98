"""Request dependencies: the node, and the authenticated caller. Deny by default.

Route signatures read like prose (``agency: CurrentAgency``); a route without one of these
caller dependencies serves nothing but public metadata.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from exchange.api import partner_auth
from exchange.signing.signatures import request_from_starlette
from nodes import access, tokens
from nodes.access import AuthenticationError, ForbiddenError
from nodes.audit import events as audit_events
from nodes.audit.vocabulary import Action, Role
from nodes.node import Node
from nodes.tokens import TokenRecord
from schemas.errors import InvalidInputError

log = logging.getLogger("exchange")
_bearer = HTTPBearer(auto_error=False, description="Token issued by the node operator")
_api_token = APIKeyHeader(
    name="Authorization",
    scheme_name="ApiToken",
    auto_error=False,
    description="DHIS2's personal access token header, 'ApiToken <token>', or 'Bearer <token>': "
    "the same agency tokens either way",
)


async def get_node(request: Request) -> Node:
    """The node, on the newest policy: one indexed read of the active policy's hash, and a
    reload when another worker, replica or ``exchange policy apply`` changed it."""
    node: Node = request.app.state.node
    try:
        await run_in_threadpool(node.refresh_policy)
    except OperationalError:  # database unreachable: /readyz must still say so itself, and
        # every route that decides anything needs the database too, so fails there anyway
        log.warning("could not check the active policy: the database is unreachable")
    return node


NodeDep = Annotated[Node, Depends(get_node)]


async def current_token(
    request: Request,
    node: NodeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenRecord:
    """The token behind the bearer credential; every failure is logged before the 401."""
    if credentials is None:
        return await _authenticate(request, node, None, None)
    return await _authenticate(request, node, credentials.scheme, credentials.credentials)


async def current_token_or_api_token(
    request: Request,
    node: NodeDep,
    authorization: Annotated[str | None, Depends(_api_token)],
) -> TokenRecord:
    """As ``current_token``, also reading DHIS2's ``Authorization: ApiToken <token>``."""
    scheme, _, secret = (authorization or "").strip().partition(" ")
    if scheme.lower() == "apitoken":
        scheme = "bearer"
    return await _authenticate(request, node, scheme or None, secret.strip() or None)


async def _authenticate(
    request: Request, node: Node, scheme: str | None, secret: str | None
) -> TokenRecord:
    if scheme is None and "signature" in request.headers:
        await _refuse_partner(request, node)
    try:
        if scheme is None or scheme.lower() != "bearer" or not secret:
            raise AuthenticationError.coded("bearer_required")
        return await run_in_threadpool(
            functools.partial(
                tokens.authenticate,
                node.engine,
                secret,
                now=dt.datetime.now(dt.UTC),
            )
        )
    except AuthenticationError as exc:
        await log_failed_token(request, node, exc, reason=str(exc))
        raise


async def _refuse_partner(request: Request, node: Node) -> None:
    """A signed partner request on a token route: 403 once its signature verifies, else 401.

    Partners pull releases and nothing else; a valid signature proves who asked, which is
    what makes the refusal a 403 (and its audit entry names the peer).
    """
    message = await request_from_starlette(
        request, public_base_url=node.settings.public_url, body=await request.body()
    )
    partner = await run_in_threadpool(
        functools.partial(partner_auth.authenticate, node, message, now=dt.datetime.now(dt.UTC))
    )
    error = ForbiddenError(
        f"partner {partner.peer_id} may pull releases (POST /v1/releases) and nothing else here"
    )
    await log_refusal(
        request,
        node,
        actor=f"partner:{partner.peer_id}",
        role="partner",
        action="auth.forbidden",
        reason=str(error),
        partner=partner.peer_id,
    )
    raise error


async def log_failed_token(
    request: Request, node: Node, exc: AuthenticationError, *, reason: str
) -> None:
    """Audit a refused token (``auth.failed``): under its name when it is ours but revoked or
    expired, as ``unknown`` otherwise."""
    revoked = exc.token if isinstance(exc, tokens.RevokedTokenError) else None
    await log_refusal(
        request,
        node,
        actor=f"token:{revoked.name}" if revoked else audit_events.UNKNOWN,
        role=revoked.role if revoked else audit_events.UNKNOWN,
        action="auth.failed",
        reason=reason,
    )


async def log_refusal(
    request: Request,
    node: Node,
    *,
    actor: str,
    role: Role,
    action: Action,
    reason: str,
    partner: str | None = None,
) -> None:
    """Audit a refused request under its route template (never the raw, caller-chosen path)."""
    route = request.scope.get("route")
    template = route.path if isinstance(route, APIRoute) else "?"
    await run_in_threadpool(
        functools.partial(
            audit_events.record_refusal,
            node.engine,
            actor=actor,
            role=role,
            action=action,
            resource=f"route:{request.method} {template}",
            reason=reason,
            partner=partner,
            now=dt.datetime.now(dt.UTC),
        )
    )


def _role(
    required: access.Role,
    authenticated: Callable[..., Awaitable[TokenRecord]] = current_token,
) -> Callable[..., Awaitable[TokenRecord]]:
    # A default, not an annotation: annotations are strings here, and this one names a local.
    async def check(
        request: Request,
        node: NodeDep,
        token: TokenRecord = Depends(authenticated),  # noqa: B008
    ) -> TokenRecord:
        if token.role != required:
            error = ForbiddenError(
                f"this endpoint is for the {required} role; token '{token.name}' is {token.role}"
            )
            await log_refusal(
                request,
                node,
                actor=f"token:{token.name}",
                role=token.role,
                action="auth.forbidden",
                reason=str(error),
            )
            raise error
        return token

    return check


CurrentAgency = Annotated[TokenRecord, Depends(_role("agency"))]
#: An agency through DHIS2's ``ApiToken`` header as well as ``Bearer`` (``POST /api/dataValueSets``)
CurrentAgencyOrApiToken = Annotated[
    TokenRecord, Depends(_role("agency", current_token_or_api_token))
]
CurrentAuditor = Annotated[TokenRecord, Depends(_role("auditor"))]
CurrentOperator = Annotated[TokenRecord, Depends(_role("operator"))]


def _declared_query_names(route: APIRoute) -> set[str]:
    names: set[str] = set()
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        names.update(p.alias for p in dependant.query_params)
        stack.extend(dependant.dependencies)
    return names


async def reject_unknown_query_parameters(request: Request) -> None:
    """A misspelt parameter must not be ignored: ``?dryrun=true`` would store the report."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    unknown = sorted(set(request.query_params) - _declared_query_names(route))
    if unknown:
        allowed = ", ".join(sorted(_declared_query_names(route))) or "none"
        raise InvalidInputError(
            f"unknown query parameter(s) {', '.join(map(repr, unknown))}; this endpoint takes: {allowed}"
        )
