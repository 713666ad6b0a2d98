"""Commands that create, serve and upgrade a node, and list its schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from exchange.cli.common import NodeDir, console, fail, open_node
from schemas.periods import WeekSystem  # typer reads the annotation for --help: keep it here


def init(
    directory: NodeDir,
    node_id: Annotated[str, typer.Option(help="Short node id, e.g. an ISO 3166-1 code: HT, XA")],
    name: Annotated[str, typer.Option(help="Human-readable node name")],
    public_url: Annotated[
        str, typer.Option(help="Where partners reach this node")
    ] = "http://127.0.0.1:8000",
    database_url: Annotated[str, typer.Option(help="PostgreSQL URL; default: SQLite in DIR")] = "",
    gazetteer: Annotated[
        Path | None,
        typer.Option(help="CSV of code,name,level,parent; default: ISO 3166-2 or a sample"),
    ] = None,
    week_system: Annotated[WeekSystem, typer.Option(help="How epi weeks are numbered")] = "iso",
) -> None:
    """Create a node directory: settings, identity key (mode 0600), gazetteer, database."""
    from nodes.directory import NodeExistsError, init_node
    from schemas.gazetteer import Gazetteer

    try:
        chosen = (
            Gazetteer.from_csv_text(gazetteer.read_text(encoding="utf-8")) if gazetteer else None
        )
        settings, key = init_node(
            directory,
            node_id=node_id,
            name=name,
            public_url=public_url,
            database_url=database_url,
            gazetteer=chosen,
            week_system=week_system,
        )
    except (NodeExistsError, OSError, ValueError) as exc:
        fail(str(exc))
    console.print(f"Created node [bold]{settings.node_id}[/] in {settings.directory}")
    console.print(
        f"Identity key id: [bold]{key.kid}[/] (tell partners this fingerprint out of band)"
    )


def serve(
    directory: NodeDir,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server worker processes")] = 1,
) -> None:
    """Apply migrations and serve the node's HTTP API."""
    import uvicorn

    from exchange.api.http_protocol import MAX_HEAD_BYTES
    from exchange.api.logs import log_config
    from nodes import migrate
    from nodes.audit.errors import AuditError
    from nodes.audit.startup import open_log
    from nodes.database import make_engine
    from nodes.settings import InsecureSettingsError, NodeSettings

    try:
        settings = NodeSettings.load(directory)
        settings.require_secure()
    except (FileNotFoundError, InsecureSettingsError, ValueError) as exc:
        fail(str(exc))
    engine = make_engine(settings.database)
    migrate.upgrade(engine)
    try:  # say why in one line, before any worker starts (each worker checks again)
        open_log(engine, node_id=settings.node_id, keys_dir=settings.keys_dir)
    except AuditError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    import os

    os.environ["EXCHANGE_NODE_DIR"] = str(settings.directory)
    uvicorn.run(
        "exchange.api.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        log_config=log_config("info"),  # JSON lines on stderr, with request ids
        server_header=False,
        # Bounds on what a request may send before the app sees it. Heads up to 64 KiB
        # reach the app, which refuses an oversized Authorization as problem+json (431);
        # past that, and for a malformed Content-Length, the parser answers 400 (as
        # problem+json too: see exchange.api.http_protocol).
        http="exchange.api.http_protocol:ProblemH11Protocol",
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=5,
    )


def db_upgrade(directory: NodeDir) -> None:
    """Bring the node database to the latest migration."""
    from nodes import migrate

    with open_node(directory) as node:
        console.print(
            f"Database at migration {migrate.current_revision(node.engine)} (head {migrate.head_revision()})"
        )


def schemas() -> None:
    """List the standard report schemas."""
    from schemas.registry import SchemaRegistry

    table = Table("id", "kind", "dimensions", "measures (contribution bound)")
    for schema in SchemaRegistry():
        table.add_row(
            schema.id,
            schema.kind.value,
            ", ".join(schema.dimensions),
            ", ".join(f"{m.name} ({m.contribution_bound})" for m in schema.measures),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(serve)
    app.command()(schemas)
    db = typer.Typer(help="Database migrations.", no_args_is_help=True)
    db.command("upgrade")(db_upgrade)
    app.add_typer(db, name="db")
