"""A running node's resources: settings, database engine, gazetteer and schema registry.

Built once by ``Node.open`` (in the app's lifespan or a CLI command), never at import time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine

from nodes import migrate
from nodes.audit.startup import open_log
from nodes.database import make_engine
from nodes.identity import NodeKey
from nodes.keys import current_key
from nodes.policy_file import load_node_policy
from nodes.policy_loads import record_load
from nodes.settings import NodeSettings
from policies.node_policy import NodePolicy
from schemas.columns import ValidationContext
from schemas.gazetteer import Gazetteer
from schemas.registry import SchemaRegistry


@dataclass
class Node:
    settings: NodeSettings
    engine: Engine
    gazetteer: Gazetteer
    registry: SchemaRegistry
    policy: NodePolicy  # red lines and agreements (nodes.policy_file); no file: deny all

    @classmethod
    def open(
        cls, settings: NodeSettings, *, upgrade: bool = True, check_audit: bool = True
    ) -> Node:
        """Connect, migrate, check the audit log against its last checkpoint, load the gazetteer.

        ``check_audit=False`` skips the audit start-up check (for forensics on a node that
        refuses to start); a node opened that way must not serve.
        """
        engine = make_engine(settings.database)
        if upgrade:
            migrate.upgrade(engine)
        if check_audit:
            # Refuses to serve a log that was cut short or rewritten (LogIntegrityError).
            open_log(engine, node_id=settings.node_id, keys_dir=settings.keys_dir)
        gazetteer = Gazetteer.from_csv_text(settings.gazetteer_file.read_text(encoding="utf-8"))
        registry = SchemaRegistry()
        try:  # an invalid policy stops the node, naming file, place and reason
            policy = load_node_policy(settings, gazetteer=gazetteer, registry=registry)
            if check_audit:
                record_load(engine, policy, now=dt.datetime.now(dt.UTC))
        except Exception:
            engine.dispose()
            raise
        return cls(
            settings=settings, engine=engine, gazetteer=gazetteer, registry=registry, policy=policy
        )

    def reload_policy(self) -> NodePolicy:
        """Re-read the policy file; keep the current policy if the new one does not validate
        (PolicyError is raised and nothing changes)."""
        self.policy = load_node_policy(
            self.settings, gazetteer=self.gazetteer, registry=self.registry
        )
        record_load(self.engine, self.policy, now=dt.datetime.now(dt.UTC))
        return self.policy

    @cached_property
    def validation(self) -> ValidationContext:
        return ValidationContext(gazetteer=self.gazetteer, week_system=self.settings.week_system)

    @property
    def key(self) -> NodeKey:
        """The current identity key; follows ``exchange keys rotate`` without a restart."""
        return current_key(self.settings.keys_dir).get()

    def close(self) -> None:
        self.engine.dispose()
