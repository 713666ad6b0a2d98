"""``exchange --help`` starts fast: the CLI imports the heavy layers only inside commands.

Checked on the import graph, not on wall time (a slow machine must not fail a test): a fresh
interpreter imports ``exchange.cli`` and reports what it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from exchange import cli
from exchange.cli import push_commands

# Each costs tens to hundreds of milliseconds, or pulls in the node (database, policy
# engine, HTTP app) that only commands that open one need. Not pydantic: typer itself loads
# it for some subcommand help pages.
HEAVY = (
    "opendp",
    "numpy",
    "alembic",
    "sqlalchemy",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx2",
    "yaml",
    "exchange.api.app",
    "exchange.demo.walkthrough",
    "exchange.demo.cluster",
    "exchange.clients.pulling",
    "policies.privacy",
    "nodes.node",
    "nodes.database",
    "nodes.tokens",
)


def loaded_by(code: str) -> set[str]:
    """Modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_cli_loads_none_of_the_heavy_modules() -> None:
    loaded = loaded_by("import exchange.cli")
    assert "exchange.cli.audit_commands" in loaded  # the probe saw the CLI itself
    assert sorted(m for m in HEAVY if m in loaded) == []


@pytest.mark.parametrize("argv", [["--help"], ["audit", "--help"], ["token", "create", "--help"]])
def test_help_loads_none_of_the_heavy_modules(argv: list[str]) -> None:
    """Typer reads every command's annotations and defaults for --help: they must be light."""
    loaded = loaded_by(
        "import contextlib, io, sys\n"
        "import exchange.cli\n"
        f"sys.argv = ['exchange', *{argv!r}]\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    exchange.cli.main()"
    )
    assert "typer.main" in loaded
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_help_still_lists_every_command_and_group() -> None:
    result = CliRunner().invoke(cli.app, ["--help"])
    assert result.exit_code == 0, result.output
    group = typer.main.get_command(cli.app)
    names = set(getattr(group, "commands", {}))
    expected = {"init", "serve", "schemas", "push", "backup", "restore", "budget", "pull"}
    expected |= {"demo", "db", "token", "audit", "policy", "peer", "keys"}
    assert expected <= names
    for name in expected:
        assert name in result.output


def test_a_value_spelled_in_the_cli_for_a_light_help_agrees_with_its_source() -> None:
    from exchange.clients import push

    assert push_commands.DEFAULT_CHUNK_ROWS == push.DEFAULT_CHUNK_ROWS
