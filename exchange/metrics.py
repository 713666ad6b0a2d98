"""Prometheus metrics at ``/metrics``, for operators only.

Counts of pushes and requests reveal activity, so the endpoint needs an operator token like
any other non-public route (Prometheus sends it with ``authorization: {credentials: …}``).
Each app has its own registry; with several workers each process reports its own series.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from exchange.dependencies import CurrentOperator
from exchange.problems import documented


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


def _route_template(request: Request) -> str:
    """The matched route's template (set in the scope by routing), never the raw path."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def install(app: FastAPI) -> Metrics:
    metrics = Metrics()
    app.state.metrics = metrics

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
        "/metrics", responses=documented(401, 403), summary="Prometheus metrics (operator token)"
    )
    async def metrics_endpoint(_operator: CurrentOperator) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)
    return metrics
