"""A running node's resources: settings, database engine, gazetteer, schema registry, policy.

Built once by ``Node.open`` (in the app's lifespan or a CLI command), never at import time.

The active policy lives in the database (`nodes.policy_loads`). At start-up a node runs on
the database's policy; only a database that holds none yet (a new node, or one upgraded
from before migration 0007) takes the policy file, and records it. ``apply_policy``
changes it for every worker and replica; ``refresh_policy`` (called on each request)
follows such a change.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine

from nodes import escalations, migrate, policy_loads
from nodes.audit.startup import open_log
from nodes.database import make_engine, reading
from nodes.identity import NodeKey
from nodes.keys import current_key
from nodes.policy_file import policy_from_text, read_policy_file, write_policy_file
from nodes.settings import NodeSettings
from policies import escalation
from policies.node_policy import NodePolicy
from schemas.columns import ValidationContext
from schemas.gazetteer import Gazetteer
from schemas.registry import SchemaRegistry

_log = logging.getLogger(__name__)


@dataclass
class Node:
    settings: NodeSettings
    engine: Engine
    gazetteer: Gazetteer
    registry: SchemaRegistry
    policy: NodePolicy  # red lines and agreements (nodes.policy_file); no policy: deny all
    #: hash of the database row ``policy`` came from (None: none yet), for ``refresh_policy``
    policy_row_hash: str | None = None

    @classmethod
    def open(
        cls, settings: NodeSettings, *, upgrade: bool = True, check_audit: bool = True
    ) -> Node:
        """Connect, migrate, check the audit log against its last checkpoint, load the gazetteer.

        ``check_audit=False`` skips the audit start-up check (for forensics on a node that
        refuses to start); a node opened that way must not serve.
        """
        engine = make_engine(settings.database)
        try:  # a node that refuses to start leaves no connection open behind it
            if upgrade:
                migrate.upgrade(engine)
            if check_audit:
                # Refuses to serve a log that was cut short or rewritten (LogIntegrityError).
                open_log(engine, node_id=settings.node_id, keys_dir=settings.keys_dir)
            gazetteer = Gazetteer.from_csv_text(settings.gazetteer_file.read_text(encoding="utf-8"))
            registry = SchemaRegistry()
            # An invalid policy stops the node, naming file, place and reason.
            policy, row_hash = _startup_policy(
                engine, settings, gazetteer, registry, record=check_audit
            )
        except Exception:
            engine.dispose()
            raise
        return cls(
            settings=settings,
            engine=engine,
            gazetteer=gazetteer,
            registry=registry,
            policy=policy,
            policy_row_hash=row_hash,
        )

    def refresh_policy(self) -> NodePolicy:
        """Switch to the database's active policy if it changed since this node loaded one.

        One indexed read when nothing changed. A stored policy that no longer compiles here
        raises PolicyError: the request fails rather than run on a policy it cannot read.
        """
        current = policy_loads.active_hash(self.engine)
        if current is None or current == self.policy_row_hash:
            return self.policy
        stored = policy_loads.active(self.engine)
        if stored is None:  # pragma: no cover - rows are never deleted
            return self.policy
        self.policy = self._compile(stored.document, source=stored.source)
        self.policy_row_hash = stored.hash
        return self.policy

    def policy_at(self, now: dt.datetime) -> NodePolicy:
        """What decisions run on at ``now``: the active policy, widened by the emergency
        escalations in force then (`policies.escalation`), read afresh on every call so
        that an approval, a revocation or an end time holds on every worker at once."""
        with reading(self.engine) as conn:
            grants = escalations.in_force(conn, now)
        return escalation.effective(self.policy, grants)

    def apply_policy(self, text: str, *, source: str, actor: str, now: dt.datetime) -> NodePolicy:
        """Validate ``text`` and make it the active policy of every worker and replica.

        Raises PolicyError (nothing changes) if it does not validate. Records it in the
        database with its hash and a ``policy.apply`` audit entry, then rewrites
        ``DIR/policy.yaml`` atomically so the file shows what runs; a file that cannot be
        written is logged, not fatal: the database is the truth.
        """
        policy = self._compile(text, source=source)
        policy_loads.record_apply(self.engine, policy, document=text, actor=actor, now=now)
        try:
            write_policy_file(self.settings, text)
        except OSError as exc:
            _log.warning(
                "policy applied, but %s was not rewritten: %s", self.settings.policy_file, exc
            )
        self.policy = policy
        self.policy_row_hash = policy.hash
        return policy

    def _compile(self, text: str | None, *, source: str) -> NodePolicy:
        return policy_from_text(
            text,
            source=source,
            settings=self.settings,
            gazetteer=self.gazetteer,
            registry=self.registry,
        )

    @cached_property
    def validation(self) -> ValidationContext:
        return ValidationContext(gazetteer=self.gazetteer, week_system=self.settings.week_system)

    @property
    def key(self) -> NodeKey:
        """The current identity key; follows ``exchange keys rotate`` without a restart."""
        return current_key(self.settings.keys_dir).get()

    def close(self) -> None:
        self.engine.dispose()


def _startup_policy(
    engine: Engine,
    settings: NodeSettings,
    gazetteer: Gazetteer,
    registry: SchemaRegistry,
    *,
    record: bool,
) -> tuple[NodePolicy, str | None]:
    """The database's policy; the file's only while the database holds none (recorded then)."""
    stored = policy_loads.active(engine)
    file_text = read_policy_file(settings)
    if stored is not None and stored.document is not None:
        if file_text != stored.document:
            _log.warning(
                "%s differs from the active policy (applied %s); the node runs on the active "
                "one. To make the file the policy: exchange policy apply %s %s",
                settings.policy_file,
                f"{stored.loaded_at:%Y-%m-%d %H:%M} UTC",
                settings.directory,
                settings.policy_file,
            )
        policy = policy_from_text(
            stored.document,
            source=stored.source,
            settings=settings,
            gazetteer=gazetteer,
            registry=registry,
        )
        return policy, stored.hash
    policy = policy_from_text(
        file_text,
        source=str(settings.policy_file),
        settings=settings,
        gazetteer=gazetteer,
        registry=registry,
    )
    if record:
        policy_loads.record_load(engine, policy, now=dt.datetime.now(dt.UTC), document=file_text)
    return policy, policy_loads.active_hash(engine)
