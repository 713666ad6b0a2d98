"""``exchange report transparency``: write the signed public review of a period, or verify one.

Writing reads the node's log verified from its first key (`nodes.reviews.verified_log`), so
a review is never signed over a log that does not verify. Verifying needs only the review,
an export of the log and the node's public key (and, to check the caps, the policy file):
it recomputes every figure from the export's entries and names the first that differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from exchange.cli.common import errors, fail, open_node, utcnow

if TYPE_CHECKING:
    from policies.document import PolicyDocument


def transparency(
    directory: Annotated[
        Path | None, typer.Argument(help="The node directory (made by 'exchange init')")
    ] = None,
    period: Annotated[
        str | None, typer.Option(help="A quarter (2026-Q4), a month (2026-11) or a year (2026)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the signed review (default: stdout)")
    ] = None,
    verify: Annotated[
        Path | None, typer.Option("--verify", help="A signed review to check, instead of DIR")
    ] = None,
    export: Annotated[
        Path | None, typer.Option(help="With --verify: an export of the node's audit log")
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="With --verify: the node's (first) Ed25519 public key")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="With --verify: the policy file, to check the hash and caps named"),
    ] = None,
) -> None:
    """Write the signed transparency review of a period (DIR --period P), or check one
    against an export of the log (--verify REVIEW --export EXPORT --public-key KEY)."""
    if (directory is None) == (verify is None):
        fail("give either a node directory (DIR --period P) or --verify REVIEW, not both", 2)
    if directory is not None:
        if period is None:
            fail("--period is required: a quarter (2026-Q4), a month (2026-11) or a year", 2)
        if export is not None or public_key is not None or policy is not None:
            fail("--export, --public-key and --policy go with --verify", 2)
        _write(directory, period, out)
        return
    assert verify is not None
    if export is None or public_key is None:
        fail("--verify needs --export EXPORT and --public-key KEY", 2)
    if period is not None or out is not None:
        fail("--period and --out go with a node directory, not with --verify", 2)
    _verify(verify, export, public_key, policy)


def _write(directory: Path, period_text: str, out: Path | None) -> None:
    from nodes.audit.errors import LogIntegrityError
    from nodes.audit.verifier import VerificationError
    from nodes.reviews import transparency, transparency_check, verified_log

    try:
        period = transparency.Period.parse(period_text)
    except transparency.PeriodError as exc:
        fail(str(exc), 2)
    with open_node(directory) as node:
        try:
            log = verified_log.from_node(node, now=utcnow(), wanted=transparency.wanted)
        except (VerificationError, LogIntegrityError) as exc:
            fail(f"the audit log does not verify, so no review was written: {exc}")
        head = max(log.checkpoints, key=lambda c: c.tree_size)
        review = transparency.review_of(
            log.entries,
            node_id=log.node_id,
            period=period,
            checkpoint=transparency.Head.of_line(head),
            policy=node.policy,
        )
        signed = transparency_check.sign(review, node.key)
    text = json.dumps(signed, ensure_ascii=False, indent=1) + "\n"
    if out is None:
        print(text, end="")
        return
    partial = out.with_name(out.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(out)
    errors.print(
        f"Wrote the {period.name} transparency review to {out}, computed from checkpoint "
        f"{head.tree_size} ({head.time})",
        highlight=False,
    )


def _verify(review_file: Path, export: Path, key_file: Path, policy_file: Path | None) -> None:
    from nodes.audit import verifier
    from nodes.reviews import transparency, transparency_check, verified_log

    try:
        anchor = verifier.load_public_key(key_file.read_bytes())
        document: Any = json.loads(review_file.read_bytes())
        policy = None if policy_file is None else _policy(policy_file)
    except (OSError, ValueError) as exc:
        fail(str(exc), 2)
    try:
        log = verified_log.from_export(export, anchor, wanted=transparency.wanted)
    except verifier.VerificationError as exc:
        print(f"FAILED: the export does not verify [{exc.kind}]: {exc}")
        raise typer.Exit(1) from None
    except OSError as exc:
        fail(f"cannot read the export: {exc}", 2)
    try:
        review = transparency_check.verify(document, log, policy=policy)
    except transparency_check.ReviewError as exc:
        print(f"FAILED: {exc}")
        raise typer.Exit(1) from None
    caps = (
        "caps and policy hash checked against the policy file"
        if policy is not None
        else "caps NOT checked (give --policy to check them)"
    )
    c = review["checkpoint"]
    print(
        f"OK: the {review['period']['name']} review of node {review['node_id']} is signed by "
        f"key {document['signature']['key_id']}, which the export trusts, and every figure "
        f"recomputes exactly from the {c['tree_size']} entries of checkpoint {c['root_hash']} "
        f"({c['time']}); {caps}"
    )


def _policy(path: Path) -> tuple[PolicyDocument, str]:
    """The policy document of a file and its hash, as the node computes it."""
    from policies.document import parse_policy
    from policies.node_policy import policy_hash

    document, _tree = parse_policy(path.read_text(encoding="utf-8"), source=str(path))
    return document, policy_hash(document)
