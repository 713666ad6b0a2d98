"""Request dependencies: the node, and the authenticated caller. Deny by default.

Route signatures read like prose (``agency: CurrentAgency``); a route without one of these
caller dependencies serves nothing but public metadata.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from nodes import tokens
from nodes.node import Node
from nodes.tokens import TokenRecord
from schemas.errors import AuthenticationError, ForbiddenError

_bearer = HTTPBearer(auto_error=False, description="Token issued by the node operator")


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]


async def current_token(
    node: NodeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenRecord:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise AuthenticationError("this endpoint needs 'Authorization: Bearer <token>'")
    return await run_in_threadpool(tokens.authenticate, node.engine, credentials.credentials)


def _role(required: tokens.Role) -> Callable[[TokenRecord], Awaitable[TokenRecord]]:
    async def check(token: Annotated[TokenRecord, Depends(current_token)]) -> TokenRecord:
        if token.role != required:
            raise ForbiddenError(
                f"this endpoint is for the {required} role; token '{token.name}' is {token.role}"
            )
        return token

    return check


CurrentAgency = Annotated[TokenRecord, Depends(_role("agency"))]
CurrentAuditor = Annotated[TokenRecord, Depends(_role("auditor"))]
CurrentOperator = Annotated[TokenRecord, Depends(_role("operator"))]
