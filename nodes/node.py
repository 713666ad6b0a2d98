"""A running node's resources: settings, database engine, gazetteer and schema registry.

Built once by ``Node.open`` (in the app's lifespan or a CLI command), never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine

from nodes import migrate
from nodes.database import make_engine
from nodes.identity import NodeKey, load_current
from nodes.settings import NodeSettings
from schemas.gazetteer import Gazetteer
from schemas.registry import SchemaRegistry
from schemas.validation import ValidationContext


@dataclass
class Node:
    settings: NodeSettings
    engine: Engine
    gazetteer: Gazetteer
    registry: SchemaRegistry

    @classmethod
    def open(cls, settings: NodeSettings, *, upgrade: bool = True) -> Node:
        """Connect, bring the database to the current migration, and load the gazetteer."""
        engine = make_engine(settings.database)
        if upgrade:
            migrate.upgrade(engine)
        gazetteer = Gazetteer.from_csv_text(settings.gazetteer_file.read_text(encoding="utf-8"))
        return cls(settings=settings, engine=engine, gazetteer=gazetteer, registry=SchemaRegistry())

    @cached_property
    def validation(self) -> ValidationContext:
        return ValidationContext(gazetteer=self.gazetteer, week_system=self.settings.week_system)

    @cached_property
    def key(self) -> NodeKey:
        return load_current(self.settings.keys_dir)

    def close(self) -> None:
        self.engine.dispose()
