"""The dashboard: pages served by the node under ``/ui/``, for people in a browser.

Thin views (``views/``) call the same functions in ``nodes/`` and ``policies/`` as the API
and the CLI, and render Jinja2 templates (``templates/``) in the reader's language with one
stylesheet (``static/``). Nothing is fetched from elsewhere: the node serves every asset.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from exchange.ui.rendering import STATIC
from exchange.ui.views import PAGE_ROUTERS
from exchange.ui.views.session import fallback, front_door


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app``; ``/`` sends a browser to it."""
    app.include_router(front_door)
    for router in PAGE_ROUTERS:
        app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(fallback)
