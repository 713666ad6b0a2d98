"""ASGI entry point for ``exchange serve`` and uvicorn workers: the node from EXCHANGE_NODE_DIR."""

from __future__ import annotations

import os
from pathlib import Path

from exchange.api.app import create_app
from nodes.settings import NodeSettings

app = create_app(NodeSettings.load(Path(os.environ["EXCHANGE_NODE_DIR"])))
