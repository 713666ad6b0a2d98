"""The auditor API: read-only access to the log, its checkpoints and proofs, and exports.

Only bearer tokens of role ``auditor`` get in (everyone else: 403, and the refusal is
logged). Nothing here changes the log except an export, which records itself and signs a
checkpoint covering every entry, itself included, before streaming.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from exchange.api.dependencies import CurrentAuditor, NodeDep
from exchange.api.problems import documented
from nodes.audit import epoch, reading
from nodes.audit import export as log_export
from nodes.audit.canonical import format_time
from nodes.audit.checkpoint import SignedCheckpoint
from nodes.audit.epoch import EpochStatement
from schemas.errors import InvalidInputError

router = APIRouter(prefix="/v1/audit", tags=["auditor"])

EXPORT_MEDIA_TYPE = "application/jsonl"
Seq = Annotated[int, Query(ge=0, le=2**53 - 1)]


class AuditEntryOut(BaseModel):
    """One entry, field for field as in its canonical bytes (docs/audit.md), plus its leaf hash."""

    model_config = ConfigDict(frozen=True)

    seq: int
    time: str = Field(description="UTC, always YYYY-MM-DDTHH:MM:SS.ffffffZ")
    actor: str
    role: str
    action: str
    resource: str
    outcome: str
    reason: str
    policy_hash: str | None
    request_digest: str | None
    prev: str = Field(description="Hex leaf hash of the entry before (64 zeros for seq 0)")
    node_id: str
    partner: str | None = Field(
        default=None, description="The partner node concerned (absent in format-1 entries)"
    )
    schema_id: str | None = Field(
        default=None,
        alias="schema",
        description="The report schema concerned, name@version (absent in format-1 entries)",
    )
    epsilon_micro: int | None = Field(
        default=None, description="Privacy budget charged, in millionths of epsilon"
    )
    leaf_hash: str = Field(description="Hex SHA-256(0x00 || RFC 8785 bytes of the entry)")


class EntryPageOut(BaseModel):
    entries: list[AuditEntryOut]
    next_start: int | None = Field(description="Pass as start for the next page; null: no more")
    log_size: int = Field(description="Entries in the log when the page was read")


class EpochOut(BaseModel):
    """A new epoch the node declared after losing entries in a restore (docs/operations.md)."""

    statement: str = Field(
        description="The exact signed bytes: RFC 8785 JSON naming the abandoned checkpoint "
        "(size, root, time), the restored tree (size, root), entries_lost and the time"
    )
    signature: str = Field(description="Standard base64 Ed25519 signature over statement")
    entries_lost: int
    abandoned_tree_size: int
    restored_tree_size: int
    time: str


class CheckpointOut(BaseModel):
    tree_size: int
    root_hash: str
    time: str
    node_id: str
    key_id: str = Field(
        description="Unpadded base64url SHA-256 of the raw Ed25519 public key that signed "
        "(the node's key id; checkpoints signed before format 2 wrote it in hex)"
    )
    signature: str = Field(description="Standard base64 of the Ed25519 signature")
    line: str = Field(description="The exact signed line: keep it for 'audit verify --checkpoint'")
    epochs: list[EpochOut] = Field(
        default=[],
        description="Every new epoch the log started after a restore lost entries, oldest "
        "first; empty if it never lost any (docs/audit.md, New epochs)",
    )


class InclusionProofOut(BaseModel):
    seq: int
    tree_size: int
    leaf_hash: str
    root_hash: str
    proof: list[str] = Field(description="RFC 9162 inclusion path, hex, leaf sibling first")


class ConsistencyProofOut(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str] = Field(description="RFC 9162 consistency proof, hex")


def epoch_out(statement: EpochStatement) -> EpochOut:
    fields = statement.fields
    return EpochOut(
        **statement.to_json(),
        entries_lost=fields["entries_lost"],
        abandoned_tree_size=fields["abandoned_tree_size"],
        restored_tree_size=fields["restored_tree_size"],
        time=fields["time"],
    )


def checkpoint_out(
    signed: SignedCheckpoint, epochs: Sequence[EpochStatement] = ()
) -> CheckpointOut:
    c = signed.checkpoint
    return CheckpointOut(
        epochs=[epoch_out(s) for s in epochs],
        tree_size=c.tree_size,
        root_hash=c.root_hash,
        time=format_time(c.time),
        node_id=c.node_id,
        key_id=c.key_id,
        signature=base64.b64encode(signed.signature).decode(),
        line=signed.to_line().decode(),
    )


def _time(name: str, value: str | None) -> dt.datetime | None:
    """An RFC 3339 time with a zone; numbers (Unix times) and naive times are refused."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"{name} is not a time like 2025-03-01T00:00:00Z") from None
    if parsed.utcoffset() is None:
        raise InvalidInputError(f"{name} needs a time zone, e.g. 2025-03-01T00:00:00Z")
    return parsed


TimeQuery = Annotated[
    str | None,
    Query(max_length=64, json_schema_extra={"format": "date-time"}, description="RFC 3339"),
]


@router.get(
    "/entries",
    response_model=EntryPageOut,
    responses=documented(401, 403, 422),
    summary="Entries in sequence order, filtered by actor, action and time",
)
async def list_entries(
    node: NodeDep,
    _auditor: CurrentAuditor,
    start: Annotated[int, Query(ge=0, le=2**53 - 1, description="First seq to return")] = 0,
    limit: Annotated[int, Query(ge=1, le=reading.MAX_PAGE)] = 100,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
) -> EntryPageOut:
    """Entries from ``start`` on; ``since`` is inclusive and ``until`` exclusive."""
    first, last = _time("since", since), _time("until", until)
    page = await run_in_threadpool(
        lambda: reading.entries(
            node.engine,
            start=start,
            limit=limit,
            actor=actor,
            action=action,
            since=first,
            until=last,
        )
    )
    return EntryPageOut.model_validate(page, from_attributes=True)


@router.get(
    "/checkpoint",
    response_model=CheckpointOut,
    responses=documented(401, 403, 422),
    summary="The latest signed checkpoint (tree size, root hash, time, signature)",
)
async def get_checkpoint(node: NodeDep, _auditor: CurrentAuditor) -> CheckpointOut:
    """The latest checkpoint; when none is signed yet, one is signed now (never a 404). With
    it, the signed statements of the log's new epochs, if a restore ever lost entries."""
    signed = await run_in_threadpool(
        lambda: reading.checkpoint(
            node.engine, sign_with=node.key.private_key, now=dt.datetime.now(dt.UTC)
        )
    )
    statements = await run_in_threadpool(epoch.read_all, node.settings.keys_dir)
    return checkpoint_out(signed, statements)


@router.get(
    "/proofs/inclusion",
    response_model=InclusionProofOut,
    responses=documented(401, 403, 404, 422),
    summary="Inclusion proof of one entry in a signed tree size (default: the latest)",
)
async def inclusion_proof(
    node: NodeDep, _auditor: CurrentAuditor, seq: Seq, tree_size: Seq | None = None
) -> InclusionProofOut:
    found = await run_in_threadpool(
        lambda: reading.inclusion(node.engine, seq=seq, tree_size=tree_size)
    )
    return InclusionProofOut(
        seq=found.seq,
        tree_size=found.tree_size,
        leaf_hash=found.leaf_hash.hex(),
        root_hash=found.root_hash.hex(),
        proof=[p.hex() for p in found.proof],
    )


@router.get(
    "/proofs/consistency",
    response_model=ConsistencyProofOut,
    responses=documented(401, 403, 404, 422),
    summary="Consistency proof between two signed tree sizes (second default: the latest)",
)
async def consistency_proof(
    node: NodeDep, _auditor: CurrentAuditor, first: Seq, second: Seq | None = None
) -> ConsistencyProofOut:
    found = await run_in_threadpool(
        lambda: reading.consistency(node.engine, first=first, second=second)
    )
    return ConsistencyProofOut(
        first=found.first,
        second=found.second,
        first_root=found.first_root.hex(),
        second_root=found.second_root.hex(),
        proof=[p.hex() for p in found.proof],
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The export file (docs/audit.md), ending with a checkpoint that "
            "covers every entry; verify it with 'exchange audit verify'",
            "content": {EXPORT_MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        **documented(401, 403, 422),
    },
    summary="Stream the whole log with its signed checkpoints, for offline verification",
)
async def export(node: NodeDep, auditor: CurrentAuditor) -> StreamingResponse:
    final = await run_in_threadpool(
        lambda: log_export.prepare(
            node.engine,
            node.key.private_key,
            actor=f"token:{auditor.name}",
            role=auditor.role,
            now=dt.datetime.now(dt.UTC),
        )
    )
    size = final.checkpoint.tree_size
    filename = f"audit-{node.settings.node_id}-{size}.jsonl"
    return StreamingResponse(
        log_export.stream(
            node.engine,
            final,
            log_export.key_lines(node.settings.keys_dir, node_id=node.settings.node_id),
        ),
        media_type=EXPORT_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Audit-Tree-Size": str(size),
        },
    )
