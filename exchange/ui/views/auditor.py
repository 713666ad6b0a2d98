"""Pages: the auditor's. The log with filters, an entry with its proof checked, checkpoints,
witness verdicts about peers, and the export for offline verification.

Read-only, like the auditor API (`exchange.api.routes.audit`), whose functions these pages
call: `nodes.audit.reading` for proofs and the latest checkpoint, `nodes.audit.lookup`'s
filters (through `nodes.audit.browse`, which reads newest first), `nodes.audit.witness`
for verdicts, and the API's own export route for the download. Only the export changes the
log: it records itself (``audit.export``) and signs a checkpoint covering it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Query, Request
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from exchange import i18n
from exchange.api.dependencies import NodeDep
from exchange.api.routes import audit as audit_api
from exchange.ui.navigation import ROLE_NAMES
from exchange.ui.pages import page_router
from exchange.ui.rendering import render
from exchange.ui.sessions import AuditorViewer
from nodes import peers
from nodes.audit import browse, epoch, reading, witness
from nodes.audit.canonical import parse_time
from nodes.audit.lookup import Filters
from nodes.audit.vocabulary import ACTIONS, OUTCOMES
from schemas.errors import N_, NotFoundError

router = page_router()

Cursor = Annotated[int | None, Query(ge=0, le=2**53 - 1)]
Text = Annotated[str, Query(max_length=256)]

#: Outcomes and roles of entries, as a page names them (codes the log does not know stay
#: as written: entries of format 1 used other words).
OUTCOME_NAMES: Mapping[str, str] = {
    "allowed": N_("allowed"),
    "denied": N_("denied"),
    "replayed": N_("replayed"),
    "flagged": N_("flagged"),
}
OUTCOME_BADGES: Mapping[str, str] = {
    "allowed": "badge-good",
    "denied": "badge-bad",
    "replayed": "badge-neutral",
    "flagged": "badge-warn",
}
AUDIT_ROLE_NAMES: Mapping[str, str] = {
    **{str(role): name for role, name in ROLE_NAMES.items()},
    "partner": N_("partner node"),
    "node": N_("this node"),
    "unknown": N_("unknown"),
}
#: Each field of an entry, labelled for the detail page, in the order it shows them.
FIELD_LABELS: Mapping[str, str] = {
    "seq": N_("Sequence number"),
    "time": N_("Time"),
    "actor": N_("Actor"),
    "role": N_("Role"),
    "action": N_("Action"),
    "resource": N_("Resource"),
    "outcome": N_("Outcome"),
    "reason": N_("Reason"),
    "partner": N_("Partner node"),
    "schema": N_("Schema"),
    "epsilon_micro": N_("Privacy budget charged (millionths of ε)"),
    "rule": N_("Rule"),
    "policy_hash": N_("Policy hash"),
    "request_digest": N_("Request digest"),
    "prev": N_("Leaf hash of the entry before"),
    "node_id": N_("Node"),
}
#: Why a proof did not verify, in words (`nodes.audit.browse.Problem`).
PROBLEMS: Mapping[str, str] = {
    "signature": N_(
        "The checkpoint's signature does not verify with this node's public key: the "
        "checkpoint was not signed by this node, or it was changed after signing."
    ),
    "leaf": N_(
        "The entry's stored bytes do not hash to the leaf the log's tree holds: the entry "
        "was changed after it was recorded."
    ),
    "proof": N_("The inclusion proof is malformed for this entry and this tree size."),
    "root": N_(
        "The inclusion proof does not lead to the root hash the checkpoint signed: the log "
        "does not hold this entry where the checkpoint says."
    ),
}


def _blank(value: str | None) -> str | None:
    """An empty field of the GET form means no filter."""
    value = (value or "").strip()
    return value or None


def _day(value: str | None, field: str, errors: list[tuple[str, str]]) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        errors.append((field, N_("Enter a date like 2025-03-01.")))
        return None


@router.get("/ui/audit")
async def log_page(
    request: Request,
    node: NodeDep,
    _viewer: AuditorViewer,
    since: Text = "",
    until: Text = "",
    actor: Text = "",
    action: Text = "",
    outcome: Text = "",
    before: Cursor = None,
    after: Cursor = None,
) -> Response:
    """The log, newest first, filtered by time range, actor, action and outcome."""
    errors: list[tuple[str, str]] = []
    chosen = {
        "since": _blank(since),
        "until": _blank(until),
        "actor": _blank(actor),
        "action": _blank(action),
        "outcome": _blank(outcome),
    }
    first = _day(chosen["since"], "since", errors)
    last = _day(chosen["until"], "until", errors)
    if first and last and last < first:
        errors.append(("until", N_("The end of the time range must not be before its start.")))
    if chosen["action"] is not None and chosen["action"] not in ACTIONS:
        errors.append(("action", N_("Choose an action from the list.")))
    if chosen["outcome"] is not None and chosen["outcome"] not in OUTCOMES:
        errors.append(("outcome", N_("Choose an outcome from the list.")))
    context: dict[str, Any] = {
        "chosen": chosen,
        "errors": errors,
        "actions": sorted(ACTIONS),
        "outcomes": [o for o in OUTCOME_NAMES if o in OUTCOMES],
        "page": None,
        "filtered": any(v is not None for v in chosen.values()),
        **_names(),
    }
    if errors:
        return render(request, "auditor/log.html", context, status_code=400)
    filters = Filters(
        actor=chosen["actor"],
        action=chosen["action"],
        outcome=chosen["outcome"],
        since=None if first is None else dt.datetime.combine(first, dt.time(), dt.UTC),
        until=None
        if last is None
        else dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC),
    )
    page = await run_in_threadpool(
        lambda: browse.newest(node.engine, filters, before=before, after=after)
    )
    kept = {k: v for k, v in chosen.items() if v is not None}
    context.update(
        page=page,
        rows=[_row(e) for e in page.entries],
        kept=kept,
    )
    return render(request, "auditor/log.html", context)


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "when": parse_time(entry["time"])}


#: A run of this many characters without a space may break (hashes, key ids, paths).
_RUN = 28
_BREAK = Markup("<wbr>")
_SLASH = Markup("/<wbr>")
_COMMA = Markup(",<wbr>")


def soft(text: object, run: int = _RUN) -> Markup:
    """``text`` escaped, with a soft break after each ``/`` and ``,`` and inside long runs,
    so a path, a key id or a hash wraps in its table cell instead of widening the table."""

    def segment(part: str) -> Markup:
        chunks = [part[i : i + run] for i in range(0, len(part), run)] or [""]
        return _BREAK.join(_COMMA.join(escape(c).split(",")) for c in chunks)

    return Markup("").join(
        _SLASH.join(segment(part) for part in word.split("/"))
        for word in re.split(r"(\s+)", str(text))
    )


def _names() -> dict[str, Any]:
    return {
        "soft": soft,
        "outcome_names": OUTCOME_NAMES,
        "outcome_badges": OUTCOME_BADGES,
        "role_names": AUDIT_ROLE_NAMES,
    }


@router.get("/ui/audit/entries/{seq}")
async def entry_page(
    request: Request,
    node: NodeDep,
    _viewer: AuditorViewer,
    seq: int,
) -> Response:
    """One entry, every field and its canonical bytes, and its inclusion proof checked."""
    language = request.state.language
    if not 0 <= seq <= 2**53 - 1:
        raise NotFoundError(_no_entry(language, seq))
    try:
        entry = await run_in_threadpool(browse.stored_entry, node.engine, seq)
    except NotFoundError:
        raise NotFoundError(_no_entry(language, seq)) from None
    signed = await run_in_threadpool(
        lambda: reading.checkpoint(
            node.engine, sign_with=node.key.private_key, now=dt.datetime.now(dt.UTC)
        )
    )
    public_key = browse.signing_key(
        node.settings.keys_dir, signed.checkpoint.key_id, node.key.public_key
    )
    check = await run_in_threadpool(
        lambda: browse.check_inclusion(
            node.engine, entry=entry, signed=signed, public_key=public_key
        )
    )
    fields = entry.fields
    shown = [
        (name, FIELD_LABELS.get(name, name), fields[name])
        for name in FIELD_LABELS
        if name in fields
    ]
    shown += [(name, name, value) for name, value in fields.items() if name not in FIELD_LABELS]
    return render(
        request,
        "auditor/entry.html",
        {
            "entry": entry,
            "fields": shown,
            "when": parse_time(fields["time"]),
            "canonical": soft(entry.data.decode(), 40),
            "check": check,
            "problem": None if check.problem is None else PROBLEMS[check.problem],
            **_names(),
        },
    )


def _no_entry(language: i18n.Language, seq: int) -> str:
    return i18n.translated(N_("The audit log has no entry number {seq}."), language).format(seq=seq)


@router.get("/ui/audit/checkpoints")
async def checkpoints_page(
    request: Request,
    node: NodeDep,
    _viewer: AuditorViewer,
    before: Cursor = None,
    after: Cursor = None,
) -> Response:
    """Every checkpoint this node signed, newest first, and the epochs it declared."""
    page = await run_in_threadpool(
        lambda: browse.checkpoint_history(node.engine, before=before, after=after)
    )
    statements = await run_in_threadpool(epoch.read_all, node.settings.keys_dir)
    epochs = [
        {**s.fields, "when": parse_time(s.fields["time"]), "digest": s.digest}
        for s in reversed(statements)
    ]
    return render(
        request,
        "auditor/checkpoints.html",
        {"page": page, "epochs": epochs, "soft": soft},
    )


@router.get("/ui/audit/witnesses")
async def witnesses_page(request: Request, node: NodeDep, _viewer: AuditorViewer) -> Response:
    """What this node concluded about each peer's log: the last checkpoint it accepted,
    flags for a history that changed, and new epochs the peers declared."""

    def read() -> tuple[
        list[dict[str, Any]], list[witness.FlaggedPeer], list[witness.DeclaredEpoch]
    ]:
        known = peers.list_peers(node.engine, include_removed=True)
        flagged = witness.flagged_peers(node.engine)
        declared = witness.declared_epochs(node.engine)
        flags = {f.peer_id: f for f in flagged}
        epochs: dict[str, int] = {}
        for d in declared:
            epochs[d.peer_id] = epochs.get(d.peer_id, 0) + 1
        rows = [
            {
                "peer": peer,
                "accepted": witness.last_accepted(node.engine, peer.id),
                "flag": flags.get(peer.id),
                "epochs": epochs.get(peer.id, 0),
            }
            for peer in known
        ]
        return rows, flagged, declared

    rows, flagged, declared = await run_in_threadpool(read)
    return render(
        request,
        "auditor/witnesses.html",
        {
            "rows": rows,
            "soft": soft,
            "flagged": flagged,
            "declared": [
                {"epoch": d, "summary": d.reason.split("; statement ", 1)[0]} for d in declared
            ],
        },
    )


@router.get("/ui/audit/export")
async def export_download(node: NodeDep, viewer: AuditorViewer) -> StreamingResponse:
    """The API's export, as it is: recorded as ``audit.export`` by this auditor's token,
    ending with a checkpoint that covers it, sent as a file to keep."""
    return await audit_api.export(node, viewer.token)
