"""Prometheus metrics at ``/metrics``, for operators only.

Counts of pushes and requests reveal activity, so the endpoint needs an operator token like
any other non-public route (Prometheus sends it with ``authorization: {credentials: …}``).

Two kinds of series:

* per process (``exchange_http_*``, ``exchange_reports*``): counted in this worker's
  registry; with several workers each process reports its own, and Prometheus sums them.
* the node's state (`NodeState`): budgets left, audit checkpoint age, flagged peers,
  releases and refusals, pending upload sessions. Read from the database at scrape time, so every worker and
  replica reports the same truth and nothing is lost on restart.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from exchange.api.dependencies import CurrentOperator
from exchange.api.problems import documented
from nodes import ledger, upload_sessions
from nodes.audit import status as audit_status
from nodes.audit import summary as audit_summary
from nodes.database import reading
from nodes.node import Node
from nodes.releases import store
from policies.accounts import accounts_in_force
from policies.budget import epsilon


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "exchange_http_requests",
            "HTTP requests answered",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "exchange_http_request_seconds",
            "Time to answer a request",
            ("route",),
            registry=self.registry,
        )
        self.reports = Counter(
            "exchange_reports", "Reports accepted by schema", ("schema",), registry=self.registry
        )
        self.rows = Counter(
            "exchange_report_rows",
            "Report rows stored by schema",
            ("schema",),
            registry=self.registry,
        )

    def stored(self, schema_id: str, rows: int) -> None:
        """A report was stored (not a replay, not a dry run): every way in counts it so."""
        self.reports.labels(schema_id).inc()
        self.rows.labels(schema_id).inc(rows)


class NodeState(Collector):
    """The node's state, read from its database at each scrape (a few cheap queries).

    ``node`` returns the open node, or None before the app's lifespan has opened it (then
    nothing is reported rather than a guess).
    """

    def __init__(self, node: Callable[[], Node | None]) -> None:
        self._node = node

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only: registering must not touch the database

    def collect(self) -> Iterator[Metric]:
        node = self._node()
        if node is None:
            return
        now = dt.datetime.now(dt.UTC)
        yield from _budgets(node, now)
        yield from _audit(node, now)
        yield from _releases(node)
        yield from _uploads(node, now)


def _budgets(node: Node, now: dt.datetime) -> Iterator[Metric]:
    labels = ("account", "partner", "schema", "period")
    left = GaugeMetricFamily(
        "exchange_budget_left_epsilon",
        "Privacy budget left per account (partner, or global: partner empty)",
        labels=labels,
    )
    cap = GaugeMetricFamily(
        "exchange_budget_cap_epsilon", "Privacy budget cap per account", labels=labels
    )
    with reading(node.engine) as conn:
        lines = ledger.report(conn, accounts_in_force(node.policy, now))
    for line in lines:
        c = line.charge
        values = [c.scope, "" if c.scope == "global" else c.partner_id, c.schema_id, c.period]
        left.add_metric(values, epsilon(line.left_micro))
        cap.add_metric(values, epsilon(c.cap_micro))
    yield left
    yield cap


def _audit(node: Node, now: dt.datetime) -> Iterator[Metric]:
    status: dict[str, Any] = audit_status.summary(node.engine, now=now)
    yield GaugeMetricFamily(
        "exchange_audit_log_entries", "Entries in the audit log", value=status["log_size"]
    )
    yield GaugeMetricFamily(
        "exchange_audit_uncovered_entries",
        "Audit entries not yet covered by a signed checkpoint",
        value=status["uncovered_entries"],
    )
    checkpoint = status["checkpoint"]
    if checkpoint is not None:  # no checkpoint yet: absent, so an alert on age sees it
        yield GaugeMetricFamily(
            "exchange_audit_checkpoint_age_seconds",
            "Age of the latest signed audit checkpoint",
            value=checkpoint["age_seconds"],
        )
    yield GaugeMetricFamily(
        "exchange_peers_flagged",
        "Peers whose checkpoints contradicted what they showed before (ever)",
        value=len(status["flagged_peers"]),
    )


def _releases(node: Node) -> Iterator[Metric]:
    released = CounterMetricFamily(
        "exchange_releases",
        "Releases made, by partner, schema and the rule (agreement) that allowed them",
        labels=("partner", "schema", "rule"),
    )
    with reading(node.engine) as conn:
        for partner, schema, agreement, n in store.counts(conn):
            released.add_metric([partner, schema, f"agreement {agreement}"], n)
    yield released
    refused = CounterMetricFamily(
        "exchange_refusals",
        "Release requests refused, by partner, schema and the rule that refused them "
        "(agreement ID, red line ID, deny by default, budget; empty for old entries)",
        labels=("partner", "schema", "rule"),
    )
    for labels, n in sorted(audit_summary.release_refusals(node.engine).items()):
        refused.add_metric(list(labels), n)
    yield refused


def _uploads(node: Node, now: dt.datetime) -> Iterator[Metric]:
    sessions, size = upload_sessions.pending(node.engine, now)
    yield GaugeMetricFamily(
        "exchange_upload_sessions_pending",
        "Upload sessions opened and neither committed nor expired",
        value=sessions,
    )
    yield GaugeMetricFamily(
        "exchange_upload_pending_bytes",
        "Bytes held in the parts of pending upload sessions",
        value=size,
    )


def _route_template(request: Request) -> str:
    """The matched route's template (set in the scope by routing), never the raw path."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def install(app: FastAPI) -> Metrics:
    metrics = Metrics()
    app.state.metrics = metrics
    metrics.registry.register(NodeState(lambda: getattr(app.state, "node", None)))

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route_template(request)
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        return response

    router = APIRouter(tags=["operations"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics (operator token)",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format",
                "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
            },
            **documented(401, 403),
        },
    )
    async def metrics_endpoint(_operator: CurrentOperator) -> Response:
        body = await run_in_threadpool(generate_latest, metrics.registry)  # reads the database
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)  # what every scraper reads

    app.include_router(router)
    return metrics
