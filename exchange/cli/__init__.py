"""The ``exchange`` command line (typer + rich). One module per group of commands."""

from __future__ import annotations

import typer

from exchange.cli import (
    audit_commands,
    backup_commands,
    demo_commands,
    dhis2_commands,
    escalation_commands,
    exercise_commands,
    node_commands,
    notice_commands,
    peer_commands,
    policy_commands,
    pull_commands,
    push_commands,
    received_commands,
    report_commands,
    subscription_commands,
    token_commands,
)

app = typer.Typer(
    name="exchange",
    help="Run and use a node of the crisis data exchange.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold tokens and keys
)

for module in (
    node_commands,
    token_commands,
    push_commands,
    audit_commands,
    backup_commands,
    policy_commands,
    escalation_commands,
    peer_commands,
    pull_commands,
    notice_commands,
    subscription_commands,
    received_commands,
    dhis2_commands,
    report_commands,
    demo_commands,
    exercise_commands,
):
    module.register(app)


def main() -> None:
    app()
