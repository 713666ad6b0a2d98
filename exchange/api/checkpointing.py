"""The background task that keeps the audit log covered by signed checkpoints.

Every worker runs one: every ``checkpoint_interval_seconds`` it signs a checkpoint if
entries were appended since the last one (the first worker to wake does it; the others find
nothing to do, since checkpoints live in the database). So an entry is covered by a signed
checkpoint at most one interval after it is written, and an idle node signs nothing. On
shutdown the task signs once more, so a stopped node leaves no entry uncovered.

The same tick first audits the emergency escalations that ended and the proposals that
lapsed (`nodes.escalations.close_ended`): their end took effect at its time on every
worker; this writes the entry that says so, before the checkpoint that covers it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from starlette.concurrency import run_in_threadpool

from nodes import escalations
from nodes.audit import checkpoint_store
from nodes.node import Node

log = logging.getLogger("exchange.audit")


def sign_if_due(node: Node) -> None:
    """Sign a checkpoint if one is due; log (never raise) a failure, the next tick retries."""
    try:
        escalations.close_ended(node.engine, dt.datetime.now(dt.UTC))
    except Exception:
        log.exception("auditing ended escalations failed; retrying at the next interval")
    try:
        signed = checkpoint_store.sign_if_due(
            node.engine, node.key.private_key, now=dt.datetime.now(dt.UTC)
        )
    except Exception:
        log.exception("signing an audit checkpoint failed; retrying at the next interval")
        return
    if signed is not None:
        log.info("signed audit checkpoint of tree size %d", signed.checkpoint.tree_size)


async def keep_checkpoints(node: Node) -> None:
    """Run until cancelled; sign once more when cancelled (shutdown)."""
    interval = node.settings.checkpoint_interval_seconds
    try:
        while True:
            await asyncio.sleep(interval)
            await run_in_threadpool(sign_if_due, node)
    except asyncio.CancelledError:
        await asyncio.shield(run_in_threadpool(sign_if_due, node))
        raise
