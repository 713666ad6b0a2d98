"""The registry of published schemas by ``name@version``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from schemas.errors import NotFoundError
from schemas.model import ReportSchema
from schemas.standard import STANDARD_SCHEMAS


class UnknownSchemaError(NotFoundError):
    """A schema id that no published schema has."""

    def __init__(self, schema_id: str, known: Iterable[str]) -> None:
        super().__init__(f"no schema '{schema_id}'; this node offers {', '.join(sorted(known))}")
        self.schema_id = schema_id


class SchemaRegistry:
    """Published schemas; registering a different schema under an existing id is refused."""

    def __init__(self, schemas: Iterable[ReportSchema] = STANDARD_SCHEMAS) -> None:
        self._by_id: dict[str, ReportSchema] = {}
        for schema in schemas:
            self.publish(schema)

    def publish(self, schema: ReportSchema) -> None:
        existing = self._by_id.get(schema.id)
        if existing is not None and existing != schema:
            raise ValueError(f"{schema.id} is already published; a change needs a new version")
        self._by_id[schema.id] = schema

    def get(self, schema_id: str) -> ReportSchema:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise UnknownSchemaError(schema_id, self._by_id) from None

    def __iter__(self) -> Iterator[ReportSchema]:
        return iter(sorted(self._by_id.values(), key=lambda s: s.id))

    def __contains__(self, schema_id: object) -> bool:
        return schema_id in self._by_id
