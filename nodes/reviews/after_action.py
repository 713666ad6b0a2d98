"""The after-action review: what an exercise or a crisis did, read from verified audit logs.

`compute` is pure: it turns the verified entries of one node, or of every node of a
federation, into one `AfterAction`; `for_node` and `for_nodes` read each node's log through
the standalone verifier first (`nodes.reviews.verified_log`), so a review is never written
from a log that does not verify. Every figure comes from the entries plus the caps of the
node's policy; nothing is read from the tables the log describes.

What the log cannot say, the review does not claim. A ``release`` entry names its partner,
schema and cost, not the weeks it covered, so the delay from a push to a release is *push to
the partner's next release of that schema*: it says how soon fresh data could reach a
partner, not that this release held those rows. A review holds counts, rule names, micro-ε,
times and the entries of incidents (whose reasons name credentials, keys, routes and
escalations, never data values); never a released value, a query or a filter.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from nodes.reviews import budgets, verified_log
from nodes.reviews.transparency import UNNAMED_RULE, Head
from nodes.times import utc_text
from policies.accounts import Charge, accounts_in_force

if TYPE_CHECKING:
    from nodes.node import Node

REVIEW_TYPE = "crisis-exchange/after-action/v1"
#: Windows shorter than this are counted per hour; longer ones per day, then per week.
HOURLY_UNDER = dt.timedelta(days=3)
DAILY_UNDER = dt.timedelta(days=92)
#: The acts that are incidents (docs/audit.md): failed credentials, refused signatures,
#: peers caught or declaring gaps, keys changing, escalations, lost log history.
INCIDENT_ACTIONS = frozenset(
    {"auth.failed", "auth.forbidden", "release.request", "peer.flagged", "peer.epoch"}
    | {"key.rotate", "peer.key.add", "peer.key.revoke", "audit.epoch", "node.restore"}
    | {"escalation.propose", "escalation.approve", "escalation.revoke", "escalation.expire"}
)
POLICY_ACTIONS = frozenset({"policy.load", "policy.apply"})
Bucket = Literal["hour", "day", "week"]
EventKind = Literal["first-push", "first-release", "policy", "incident"]


@dataclass(frozen=True)
class NodeLog:
    """One node's verified log as a review reads it: the checkpoint the verifier ended on
    and the normalized entries (in seq order) a review wants."""

    node_id: str
    checkpoint: Head
    entries: Sequence[dict[str, Any]]

    @classmethod
    def of(cls, log: verified_log.VerifiedLog) -> NodeLog:
        head = max(log.checkpoints, key=lambda c: c.tree_size)
        return cls(log.node_id, Head.of_line(head), log.entries)


@dataclass(frozen=True)
class Shared:
    """Releases one node made to one partner for one schema in the window."""

    node: str
    partner: str
    schema: str
    releases: int = 0  # made (outcome allowed)
    replayed: int = 0  # the same release served again, charging nothing
    epsilon_micro: int = 0
    first: str | None = None
    last: str | None = None


@dataclass(frozen=True)
class Delays:
    """Push-to-release delays (seconds) of one group; quantiles by nearest rank."""

    count: int
    median_seconds: float | None
    p95_seconds: float | None

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Delays:
        ordered = sorted(seconds)
        return cls(len(ordered), nearest_rank(ordered, 50), nearest_rank(ordered, 95))


@dataclass(frozen=True)
class LatencyRow:
    node: str
    schema: str
    partner: str
    delays: Delays


@dataclass(frozen=True)
class Latency:
    """Every allowed push in the window, each partner's first later release of its schema
    from its node in the window, and the pushes no partner got a release after."""

    pushes: int
    unreleased_pushes: int
    overall: Delays
    rows: tuple[LatencyRow, ...]


@dataclass(frozen=True)
class Refusal:
    node: str
    partner: str
    rule: str
    count: int


@dataclass(frozen=True)
class BudgetRow:
    """One ledger account of a node: its cap in the policy, what the log shows spent."""

    node: str
    account: budgets.Account
    as_of: str


@dataclass(frozen=True)
class Incident:
    time: str
    node: str
    seq: int
    action: str
    outcome: str
    actor: str
    resource: str
    reason: str


@dataclass(frozen=True)
class Counts:
    """Activity in one bucket of the timeline, which starts at ``start``."""

    start: str
    pushes: int = 0
    releases: int = 0
    refusals: int = 0
    incidents: int = 0


@dataclass(frozen=True)
class Event:
    """A notable event: ``first-push`` of a schema, ``first-release`` to a partner (both
    first in the window), a ``policy`` load or apply, or an ``incident``."""

    time: str
    node: str
    seq: int
    kind: EventKind
    action: str
    partner: str | None = None
    schema: str | None = None
    policy_hash: str | None = None


@dataclass(frozen=True)
class AfterAction:
    start: str
    end: str
    bucket: Bucket
    checkpoints: tuple[tuple[str, Head], ...]
    shared: tuple[Shared, ...]
    latency: Latency
    refusals: tuple[Refusal, ...]
    budgets: tuple[BudgetRow, ...]
    incidents: tuple[Incident, ...]
    timeline: tuple[Counts, ...]
    events: tuple[Event, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """The review as JSON (type ``crisis-exchange/after-action/v1``, docs/audit.md)."""
        latency = self.latency
        return {
            "type": REVIEW_TYPE,
            "window": {"start": self.start, "end": self.end, "bucket": self.bucket},
            "nodes": [
                {"node_id": node, "checkpoint": head.as_dict()} for node, head in self.checkpoints
            ],
            "shared": [asdict(s) for s in self.shared],
            "latency": {
                "definition": "push to the partner's first later release of the schema; "
                "nearest-rank quantiles",
                "pushes": latency.pushes,
                "unreleased_pushes": latency.unreleased_pushes,
                **asdict(latency.overall),
                "rows": [
                    {"node": r.node, "schema": r.schema, "partner": r.partner, **asdict(r.delays)}
                    for r in latency.rows
                ],
            },
            "refusals": [asdict(r) for r in self.refusals],
            "budgets": [
                {
                    "node": b.node,
                    "scope": b.account.scope,
                    "partner": b.account.partner_id,
                    "schema": b.account.schema_id,
                    "period": b.account.period,
                    "cap_micro": b.account.cap_micro,
                    "spent_micro": b.account.spent_micro,
                    "as_of": b.as_of,
                }
                for b in self.budgets
            ],
            "incidents": [asdict(i) for i in self.incidents],
            "timeline": {
                "bucket": self.bucket,
                "counts": [asdict(c) for c in self.timeline],
                "events": [asdict(e) for e in self.events],
            },
        }


def nearest_rank(ordered: Sequence[float], percent: float) -> float | None:
    """The ``percent``-th percentile by nearest rank: the ⌈p/100·N⌉-th smallest value, always
    one that was observed (None when there is none)."""
    if not ordered:
        return None
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def moment(entry: Mapping[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(entry["time"]))


def wanted(start: dt.datetime | None, end: dt.datetime) -> verified_log.Wanted:
    """The entries a review of the window reads: those in it, and every charged release
    before its end (budget periods may begin before the window)."""

    def keep(entry: dict[str, Any]) -> bool:
        when = moment(entry)
        if when >= end:
            return False
        return (start is None or when >= start) or budgets.charged(entry) > 0

    return keep


def bucket_of(start: dt.datetime, end: dt.datetime) -> Bucket:
    span = end - start
    return "hour" if span < HOURLY_UNDER else "day" if span < DAILY_UNDER else "week"


def floor(when: dt.datetime, bucket: Bucket) -> dt.datetime:
    when = when.astimezone(dt.UTC)
    hour = when.replace(minute=0, second=0, microsecond=0)
    if bucket == "hour":
        return hour
    day = hour.replace(hour=0)
    return day if bucket == "day" else day - dt.timedelta(days=day.weekday())


def compute(
    logs: Sequence[NodeLog],
    *,
    start: dt.datetime | None,
    end: dt.datetime,
    charges_by_node: Mapping[str, Sequence[Charge]],
) -> AfterAction:
    """The review of ``[start, end)`` over one node's log or several; ``start`` None means
    from the earliest entry. Budgets are the accounts of ``charges_by_node`` at the end."""
    first = min((moment(e) for log in logs for e in log.entries), default=end)
    begin = min(first, end) if start is None else start
    inside = {log.node_id: [e for e in log.entries if begin <= moment(e) < end] for log in logs}
    bucket = bucket_of(begin, end)
    as_of = end - dt.timedelta(microseconds=1)
    return AfterAction(
        start=utc_text(begin),
        end=utc_text(end),
        bucket=bucket,
        checkpoints=tuple((log.node_id, log.checkpoint) for log in logs),
        shared=_shared(inside),
        latency=_latency(inside),
        refusals=_refusals(inside),
        budgets=tuple(
            BudgetRow(log.node_id, account, utc_text(as_of))
            for log in logs
            for account in budgets.accounts(
                log.entries, charges_by_node.get(log.node_id, ()), until=end
            )
        ),
        incidents=tuple(
            Incident(
                *(e["time"], node, int(e["seq"]), e["action"], e["outcome"]),
                *(e["actor"], e["resource"], str(e.get("reason") or "")),
            )
            for node, e in _in_time_order(inside)
            if is_incident(e)
        ),
        timeline=_counts(inside, begin, end, bucket),
        events=_events(inside),
    )


def is_incident(entry: Mapping[str, Any]) -> bool:
    return entry["action"] in INCIDENT_ACTIONS


def _in_time_order(inside: Mapping[str, list[dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    pairs = [(node, e) for node, entries in inside.items() for e in entries]
    return sorted(pairs, key=lambda p: (moment(p[1]), p[0], int(p[1]["seq"])))


def _shared(inside: Mapping[str, list[dict[str, Any]]]) -> tuple[Shared, ...]:
    found: dict[tuple[str, str, str], Shared] = {}
    for node, entries in inside.items():
        for e in entries:
            if e["action"] != "release" or e["outcome"] not in ("allowed", "replayed"):
                continue
            key = (node, str(e.get("partner") or ""), str(e.get("schema") or ""))
            row = found.get(key, Shared(*key))
            made = e["outcome"] == "allowed"
            found[key] = Shared(
                *key,
                releases=row.releases + made,
                replayed=row.replayed + (not made),
                epsilon_micro=row.epsilon_micro + budgets.charged(e),
                first=min(filter(None, (row.first, e["time"])), key=_iso),
                last=max(filter(None, (row.last, e["time"])), key=_iso),
            )
    return tuple(found[k] for k in sorted(found))


def _iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _latency(inside: Mapping[str, list[dict[str, Any]]]) -> Latency:
    """Each allowed push, paired with each partner's first allowed release of its schema
    from the same node written after it (later in the log, not earlier in time). Releases
    are looked up by seq (bisect), so a long log costs pushes x partners x log(releases)."""
    delays: dict[tuple[str, str, str], list[float]] = {}
    pushes = unreleased = 0
    for node, entries in inside.items():
        releases: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for e in entries:  # in seq order
            if e["action"] == "release" and e["outcome"] == "allowed":
                key = (str(e.get("schema")), str(e.get("partner") or ""))
                releases.setdefault(key, []).append(e)
        seqs = {key: [int(e["seq"]) for e in found] for key, found in releases.items()}
        for push in entries:
            if push["action"] != "report.push" or push["outcome"] != "allowed":
                continue
            pushes += 1
            pushed, schema = moment(push), str(push.get("schema"))
            reached = False
            for (of, partner), found in releases.items():
                if of != schema:
                    continue
                at = bisect.bisect_right(seqs[(of, partner)], int(push["seq"]))
                while at < len(found) and moment(found[at]) < pushed:
                    at += 1
                if at < len(found):
                    reached = True
                    seconds = (moment(found[at]) - pushed).total_seconds()
                    delays.setdefault((node, schema, partner), []).append(seconds)
            unreleased += not reached
    return Latency(
        pushes=pushes,
        unreleased_pushes=unreleased,
        overall=Delays.of(s for values in delays.values() for s in values),
        rows=tuple(LatencyRow(*key, Delays.of(delays[key])) for key in sorted(delays)),
    )


def _refusals(inside: Mapping[str, list[dict[str, Any]]]) -> tuple[Refusal, ...]:
    counted = Counter(
        (node, str(e.get("partner") or ""), str(e.get("rule") or UNNAMED_RULE))
        for node, entries in inside.items()
        for e in entries
        if e["action"] == "release" and e["outcome"] == "denied"
    )
    return tuple(Refusal(*key, counted[key]) for key in sorted(counted))


def _counts(
    inside: Mapping[str, list[dict[str, Any]]], begin: dt.datetime, end: dt.datetime, bucket: Bucket
) -> tuple[Counts, ...]:
    step = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}.get(
        bucket, dt.timedelta(days=7)
    )
    starts: list[dt.datetime] = []
    at = floor(begin, bucket)
    while at < end or not starts:
        starts.append(at)
        at += step
    tally: dict[dt.datetime, Counter[str]] = {s: Counter() for s in starts}
    for entries in inside.values():
        for e in entries:
            column = _column(e)
            if column is not None:
                tally[floor(moment(e), bucket)][column] += 1
    return tuple(Counts(utc_text(s), **tally[s]) for s in starts)


def _column(entry: Mapping[str, Any]) -> str | None:
    action, outcome = entry["action"], entry["outcome"]
    if action == "report.push" and outcome == "allowed":
        return "pushes"
    if action == "release":
        return {"allowed": "releases", "denied": "refusals"}.get(outcome)
    return "incidents" if action in INCIDENT_ACTIONS else None


def _events(inside: Mapping[str, list[dict[str, Any]]]) -> tuple[Event, ...]:
    seen: set[tuple[str, ...]] = set()
    events = []
    for node, e in _in_time_order(inside):
        action, seq = e["action"], int(e["seq"])
        partner, schema = e.get("partner"), e.get("schema")
        if action == "report.push" and e["outcome"] == "allowed":
            if (key := ("push", node, str(schema))) not in seen:
                seen.add(key)
                events.append(Event(e["time"], node, seq, "first-push", action, schema=schema))
        elif action == "release" and e["outcome"] == "allowed":
            if (key := ("release", node, str(partner))) not in seen:
                seen.add(key)
                events.append(Event(e["time"], node, seq, "first-release", action, partner, schema))
        elif action in POLICY_ACTIONS:
            events.append(
                Event(e["time"], node, seq, "policy", action, policy_hash=e.get("policy_hash"))
            )
        elif is_incident(e):
            events.append(Event(e["time"], node, seq, "incident", action, partner, schema))
    return tuple(events)


# --- reading nodes ------------------------------------------------------------------------


def for_node(
    node: Node, *, start: dt.datetime | None, end: dt.datetime, now: dt.datetime
) -> AfterAction:
    """The review of one node's own log, verified first.

    Raises verifier.VerificationError or LogIntegrityError if the log does not verify.
    """
    return for_nodes([node], start=start, end=end, now=now)


def for_nodes(
    nodes: Sequence[Node], *, start: dt.datetime | None, end: dt.datetime, now: dt.datetime
) -> AfterAction:
    """The review of several nodes (a federation), each log verified from its first key;
    caps from each node's policy as it stands at the window's end (or now, if earlier).

    Raises verifier.VerificationError or LogIntegrityError if any log does not verify.
    """
    logs = []
    charges: dict[str, Sequence[Charge]] = {}
    as_of = min(end - dt.timedelta(microseconds=1), now)
    for node in nodes:
        log = verified_log.from_node(node, now=now, wanted=wanted(start, end))
        logs.append(NodeLog.of(log))
        charges[log.node_id] = accounts_in_force(node.policy, as_of)
    return compute(logs, start=start, end=end, charges_by_node=charges)
