"""The shocks on a node's data: a bad file then a correction that reaches the partner, and
a database replaced behind the node's back by an old copy (a rollback its peers must see).

The old copy is what an operator's copy of the stopped node holds: its SQLite file (and
WAL), or on PostgreSQL a ``pg_dump`` of its schema (`exchange.exercises.databases`), and in
both cases the audit anchor beside its key.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from sqlalchemy import func, select

from exchange.clients.notices import fetch
from exchange.clients.pulling import peer_client
from exchange.demo.data import as_csv
from exchange.exercises import scenario as sc
from exchange.exercises.context import Exercise, Outcome
from exchange.exercises.databases import DUMP_FILE, TOOLS, Databases, missing_tools
from exchange.exercises.federation import SCHEMA, ExerciseNode
from exchange.exercises.results import Checks
from exchange.exercises.servers import ServerError
from nodes import peers, received_notices
from nodes.audit import anchor, witness
from nodes.database import reading
from nodes.tables import reports


def _reports(member: ExerciseNode) -> int:
    with reading(member.node.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(reports)).scalar_one())


def _push(ex: Exercise, member: ExerciseNode, rows: list[dict[str, object]]) -> tuple[int, dict]:  # type: ignore[type-arg]
    answer = ex.http.post(
        f"{member.url}/v1/reports/{SCHEMA}",
        content=as_csv(rows).encode(),
        headers={**member.bearer("agency"), "Content-Type": "text/csv"},
    )
    try:
        body = answer.json()
    except ValueError:
        body = {}
    return answer.status_code, body if isinstance(body, dict) else {}


def correction(ex: Exercise, step: sc.Correction, checks: Checks) -> None:
    """The agency restates the outbreak's first two weeks: first with an unknown area (the
    whole file is refused), then correctly; the partner that holds a release of those weeks
    fetches a signed correction notice and its release is marked superseded."""
    agency, partner = ex[step.node], ex[step.partner]
    held = ex.pull(partner.id, agency.id, ex.fresh(agency.id, partner.id))
    weeks = set(ex.weeks[:2])
    restated = [
        {**row, "cases": int(row["cases"]) + 1}  # type: ignore[call-overload]
        for row in ex.rows[agency.id]
        if row["week"] in weeks
    ]
    bad = [dict(row) for row in restated]
    bad[0]["area"] = f"{agency.id}-P99-D99"  # not in the node's gazetteer
    before = _reports(agency)
    status, problem = _push(ex, agency, bad)
    after = _reports(agency)
    checks.add(
        "a bad file is refused whole",
        expectation="the file with an unknown area is refused (422), its error listed, "
        "nothing stored",
        observed=f"{status}, {problem.get('error_count', len(problem.get('errors', [])))} "
        f"error(s); reports stored before {before}, after {after}",
        met=status == 422 and before == after,
        decision=f"{status} stored {after - before}",
    )
    status, receipt = _push(ex, agency, restated)
    superseded = int(receipt.get("superseded_rows", 0))
    client = peer_client(partner.node, ex.http, peers.get_peer(partner.node.engine, agency.id))
    start = received_notices.last_notice_id(partner.node.engine, agency.id)
    try:
        stored = fetch(partner.node, client, after=start).stored
    except Exception as exc:  # a PeerError: reported as not met, with what happened
        stored, error = [], str(exc)
    else:
        error = ""
    listed = received_notices.listing(partner.node.engine, peer_id=agency.id, after=start)
    notices = [n for n in listed if n.id in stored]
    release_id = held.result.release["release_id"] if held.result else None
    received_id = held.result.received_id if held.result else None
    names = any(release_id in n.document.get("release_ids", []) for n in notices)
    marked = any(received_id in n.superseded for n in notices)
    checks.add(
        "the correction reaches the partner",
        expectation=f"the correction is stored (201) superseding earlier cells, and "
        f"{partner.id}, which held release {release_id} of those weeks, fetches a signed "
        "notice naming it and marks its copy superseded",
        observed=f"{status}, {superseded} rows superseded; {len(notices)} notice(s) new "
        f"(release named: {names}, marked superseded: {marked}) {error}".rstrip(),
        met=held.ending == "served" and status == 201 and superseded > 0 and names and marked,
        decision=f"{held.decision}; {status}; notice names release: {names}; marked: {marked}",
        notices=[n.notice_id for n in notices],
    )


def _db_files(member: ExerciseNode) -> list[Path]:
    base = member.directory / "node.sqlite3"
    return [base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")]


def _copy_state(
    member: ExerciseNode, databases: Databases, into: Path, *, with_anchor: bool
) -> None:
    """What an operator's copy of a stopped node holds: the database (SQLite and its WAL, or
    a dump of its PostgreSQL schema), and the audit anchor beside the key."""
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    if databases.url:
        databases.dump(member.id, into)
    else:
        for path in _db_files(member):
            if path.exists():
                shutil.copy2(path, into / path.name)
    if with_anchor:
        shutil.copy2(anchor.path_in(member.settings.keys_dir), into / anchor.ANCHOR_FILE)


def _put_back(member: ExerciseNode, databases: Databases, copy: Path, *, with_anchor: bool) -> None:
    if databases.url:
        databases.put_back(member.id, copy / DUMP_FILE)
    else:
        for path in _db_files(member):
            path.unlink(missing_ok=True)
            if (copy / path.name).exists():
                shutil.copy2(copy / path.name, path)
    if with_anchor:
        shutil.copy2(copy / anchor.ANCHOR_FILE, anchor.path_in(member.settings.keys_dir))


def _witnessed_size(watcher: ExerciseNode, node_id: str) -> int:
    accepted = witness.last_accepted(watcher.node.engine, node_id)
    return 0 if accepted is None else accepted.checkpoint.tree_size


def rollback(ex: Exercise, step: sc.Rollback, checks: Checks) -> None:
    """Copy the stopped node's state, let it work on (its peers witness newer checkpoints),
    then put the old copy back behind its back: first the database alone (the node must
    refuse to start: its anchor is newer), then with the anchor of the time (it starts, and
    its peers must flag it within one checkpoint interval of their next contact)."""
    member = ex[step.node]
    missing = missing_tools() if ex.databases.url else []
    if missing:  # checked before the node is touched: the run goes on without this shock
        checks.add(
            "the old copy can be taken",
            expectation=f"the PostgreSQL client tools ({', '.join(TOOLS)}) copy {member.id}'s "
            "schema",
            observed=f"missing on PATH: {', '.join(missing)}; install the PostgreSQL client "
            "tools of the server's major version (Debian: postgresql-client)",
            met=False,
            decision=f"missing {', '.join(missing)}",
        )
        return
    interval = ex.scenario.checkpoint_interval_seconds
    watchers = [m for m in ex.online() if m is not member]
    copy = member.directory.parent / f".{member.id}-old-copy"
    member.close()
    member.server.stop()
    shutil.rmtree(copy, ignore_errors=True)
    try:
        _copy_state(member, ex.databases, copy, with_anchor=True)
    finally:
        member.server.start()  # a failed copy must not leave the node down for later steps
    old_size = anchor.read(copy / anchor.ANCHOR_FILE)
    # It works on: releases to every watcher, a checkpoint over them, witnessed by each.
    work: list[Outcome] = []
    deadline = time.monotonic() + 4 * interval + 10
    while time.monotonic() < deadline:
        pending = [
            w
            for w in watchers
            if _witnessed_size(w, member.id) <= (old_size.checkpoint.tree_size if old_size else 0)
        ]
        if not pending:
            break
        for w in pending:
            work.append(ex.pull(w.id, member.id, ex.fresh(member.id, w.id)))
        time.sleep(interval / 2)
    witnessed = {w.id: _witnessed_size(w, member.id) for w in watchers}
    member.close()
    member.server.stop()
    _put_back(member, ex.databases, copy, with_anchor=False)
    try:
        member.server.start()
        refused, why = False, "it started"
    except ServerError as exc:
        refused, why = True, str(exc).splitlines()[-1][:300]
    checks.add(
        "the node refuses an old database",
        expectation=f"{member.id} refuses to start on an old copy of its database alone: its "
        "audit anchor holds a newer checkpoint",
        observed=why,
        met=refused,
        decision=f"refused to start: {refused}",
    )
    member.server.stop()
    _put_back(member, ex.databases, copy, with_anchor=True)
    member.server.start()
    flagged: dict[str, str] = {}
    started = time.monotonic()
    deadline = started + 2 * interval + 10
    while time.monotonic() < deadline and len(flagged) < len(watchers):
        for w in watchers:
            if w.id in flagged:
                continue
            outcome = ex.pull(w.id, member.id, ex.fresh(member.id, w.id))
            verdict = outcome.result.witness if outcome.result else None
            if verdict is not None and verdict.flagged:
                flagged[w.id] = verdict.reason
        time.sleep(interval / 2)
    took = time.monotonic() - started
    on_record = {
        w.id: any(f.peer_id == member.id for f in witness.flagged_peers(w.node.engine))
        for w in watchers
    }
    checks.add(
        "the peers flag the rollback",
        expectation=f"with the old database and anchor put back, {member.id} starts, and "
        f"each peer that had witnessed its newer checkpoints flags it (peer.flagged) within "
        f"one checkpoint interval ({interval} s) of their next contacts",
        observed=f"flagged by {', '.join(sorted(flagged)) or 'nobody'} in {took:.1f} s; "
        f"witnessed sizes before: {witnessed}; old copy's size: "
        f"{old_size.checkpoint.tree_size if old_size else None}",
        met=bool(watchers) and all(on_record.values()) and len(flagged) == len(watchers),
        decision=f"flagged by {sorted(flagged)}",
        reasons=flagged,
        work_pulls=len(work),
    )
    shutil.rmtree(copy, ignore_errors=True)
