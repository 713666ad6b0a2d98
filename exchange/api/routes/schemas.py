"""Public schema metadata: what a node accepts, labelled in the language asked for."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Response

from exchange.api.dependencies import NodeDep
from exchange.api.problems import documented
from schemas.describe import describe
from schemas.labels import negotiate_language

router = APIRouter(prefix="/v1/schemas", tags=["schemas"])

AcceptLanguage = Annotated[str | None, Header(description="en, fr, es or ar")]


@router.get("", summary="The schemas this node offers")
async def list_schemas(
    node: NodeDep, response: Response, accept_language: AcceptLanguage = None
) -> list[dict[str, Any]]:
    language = negotiate_language(accept_language)
    response.headers["Content-Language"] = language
    return [
        {
            "id": s.id,
            "kind": s.kind.value,
            "label": s.label.get(language),
            "description": s.description.get(language),
        }
        for s in node.registry
    ]


@router.get(
    "/{schema_id}",
    responses=documented(404),
    summary="One schema: JSON Schema, dimensions and measures",
)
async def get_schema(
    schema_id: Annotated[str, Path(max_length=64)],
    node: NodeDep,
    response: Response,
    accept_language: AcceptLanguage = None,
) -> dict[str, Any]:
    language = negotiate_language(accept_language)
    response.headers["Content-Language"] = language
    return describe(node.registry.get(schema_id), language, node.gazetteer)
