"""Background work of standing subscriptions inside ``exchange serve`` (issue 13).

With ``subscription_sync_seconds`` above 0, the node fetches every due release from the
peers it subscribed at, that often, as ``exchange subscriptions sync`` does. It is safe
beside cron and on every worker at once (the sync claims each period before fetching it).
A failure is logged and the next round tries again: this task never raises.
"""

from __future__ import annotations

import asyncio
import logging

import httpx2
from starlette.concurrency import run_in_threadpool

from exchange.clients import subscriptions
from nodes.node import Node

log = logging.getLogger(__name__)


def _sync_once(node: Node) -> None:
    with httpx2.Client() as http:
        report = subscriptions.sync(node, http)
    if report.stored or report.failed:
        log.info("subscriptions sync: %d stored, %d failed", len(report.stored), len(report.failed))
    for problem in report.failed:
        log.warning("subscriptions sync: %s", problem)


async def _loop(node: Node, seconds: int) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await run_in_threadpool(_sync_once, node)
        except Exception:  # logged; the next round tries again
            log.exception("subscriptions sync failed")


def start(node: Node) -> list[asyncio.Task[None]]:
    """The tasks to run while the app serves; cancelled at shutdown."""
    seconds = node.settings.subscription_sync_seconds
    if seconds <= 0:
        return []
    return [asyncio.create_task(_loop(node, seconds), name="subscriptions-sync")]
