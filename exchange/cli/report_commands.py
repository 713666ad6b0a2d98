"""``exchange report ...``: the after-action and transparency reviews of a node's log.

Reviews in code (`nodes.reviews`), reports to the people who read them.
"""

from __future__ import annotations

import typer

from exchange.cli import after_action_command, transparency_command


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Reviews of what a node did, read from its verified audit log.",
        no_args_is_help=True,
    )
    group.command("after-action")(after_action_command.after_action)
    group.command("transparency")(transparency_command.transparency)
    app.add_typer(group, name="report")
