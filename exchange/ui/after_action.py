"""The after-action review as a file people read: HTML with charts, Markdown, or JSON.

JSON is the review's own shape (`nodes.reviews.after_action.AfterAction.as_dict`). HTML is
one standalone file that works opened from disk, offline: the dashboard's stylesheet is
inlined, the charts are SVG drawn by `exchange.ui.charts`, there is no script and no
external resource. It is written through the dashboard's Jinja2 environment, so it speaks
the dashboard's four languages (Arabic right to left) with Babel's numbers and dates, and
everything that came from a log is escaped (Jinja2's autoescape, ElementTree in the SVG).
Markdown uses the same sentences, through the same catalogs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from babel.dates import format_datetime, format_skeleton
from babel.numbers import format_decimal, format_percent
from babel.units import format_unit
from markupsafe import Markup

from exchange import i18n
from exchange.ui import charts
from exchange.ui.rendering import STATIC, environment
from nodes.reviews.after_action import AfterAction, Event
from schemas.errors import N_
from schemas.labels import Language

Format = Literal["html", "json", "md"]
TEMPLATE = "reviews/after_action.html"

#: What each incident action means, for a reader who does not know the log's vocabulary.
ACTIONS = {
    "auth.failed": N_("A credential was refused"),
    "auth.forbidden": N_("A role tried a route it may not use"),
    "release.request": N_("A partner request with a bad signature, key, time or nonce was refused"),
    "peer.flagged": N_("A partner's log contradicts what it showed before"),
    "peer.epoch": N_("A partner declared a new epoch of its log"),
    "key.rotate": N_("The node's key was rotated"),
    "peer.key.add": N_("A partner's new key was picked up"),
    "peer.key.revoke": N_("A partner's key was revoked"),
    "audit.epoch": N_("The log started a new epoch after a restore"),
    "node.restore": N_("The node was restored from a backup"),
    "escalation.propose": N_("An emergency escalation was proposed"),
    "escalation.approve": N_("An emergency escalation was approved"),
    "escalation.revoke": N_("An emergency escalation was revoked"),
    "escalation.expire": N_("An emergency escalation ended"),
    "policy.load": N_("The node started running policy %(hash)s"),
    "policy.apply": N_("Policy %(hash)s was applied"),
}
LANES = (
    ("pushes", N_("Pushes (at most %(count)s)")),
    ("releases", N_("Releases (at most %(count)s)")),
    ("refusals", N_("Refusals (at most %(count)s)")),
    ("incidents", N_("Incidents (at most %(count)s)")),
)
PER_BUCKET = {
    "hour": N_("Activity per hour (UTC)"),
    "day": N_("Activity per day (UTC)"),
    "week": N_("Activity per week (UTC, weeks from Monday)"),
}
#: Rules the dashboard's stylesheet does not hold: the review's charts and wide cells.
EXTRA_STYLE = """
.chart .hbar-track { fill: #e3e8ef; stroke: var(--ink-soft); stroke-width: 1; }
.chart .hbar-fill { fill: var(--series-1); }
.chart .hbar-fill.over { fill: var(--bad); }
.chart .lane-bar.series-1 { fill: var(--series-1); }
.chart .lane-bar.series-2 { fill: var(--series-3); }
.chart .lane-bar.series-3 { fill: var(--series-2); }
.chart .lane-bar.series-4 { fill: var(--series-4); }
.chart .lane-name { font-weight: 700; }
td.reason { overflow-wrap: anywhere; min-inline-size: 16rem; }
.masthead .brand { margin-inline-end: 0; }
"""


def render(review: AfterAction, *, fmt: Format, language: Language = "en") -> str:
    """The review as text in ``fmt``; HTML and Markdown in ``language``."""
    if fmt == "json":
        return json.dumps(review.as_dict(), ensure_ascii=False, indent=1) + "\n"
    words = Words(language)
    if fmt == "md":
        return markdown(review, words)
    page = environment(language).get_template(TEMPLATE)
    return page.render(
        review=review,
        words=words,
        stylesheet=Markup((STATIC / "style.css").read_text(encoding="utf-8") + EXTRA_STYLE),  # noqa: S704 - our own file
        charts=_charts(review, words),
    )


class Words:
    """Formatting of one language: sentences, numbers, times, durations and ε."""

    def __init__(self, language: Language) -> None:
        self.language = language
        self.gettext = i18n.translations(language).gettext

    def _(self, text: str, **values: Any) -> str:
        translated = self.gettext(text)
        return translated % values if values else translated

    def number(self, value: float | None) -> str:
        return "—" if value is None else format_decimal(value, locale=self.language)

    def epsilon(self, micro: int) -> str:
        return format_decimal(micro / 1_000_000, format="#,##0.######", locale=self.language)

    def percent(self, spent: int, cap: int) -> str:
        return "—" if cap <= 0 else format_percent(spent / cap, locale=self.language)

    def when(self, text: str | None) -> str:
        if text is None:
            return "—"
        moment = dt.datetime.fromisoformat(text)
        return format_datetime(moment, "medium", tzinfo=dt.UTC, locale=self.language) + " UTC"

    def isolated(self, text: str) -> Markup:
        """``text`` (escaped) in a ``<bdi>``, for a time or an id inside a sentence."""
        return Markup("<bdi>{}</bdi>").format(text)

    def bucket(self, text: str, bucket: str) -> str:
        moment = dt.datetime.fromisoformat(text)
        day = format_skeleton("MMMd", moment, locale=self.language)
        if bucket != "hour":
            return day
        return day + " " + format_skeleton("Hm", moment, locale=self.language)

    def duration(self, seconds: float | None) -> str:
        """The two largest units, in the language's short unit names (the exact seconds
        are in the JSON)."""
        if seconds is None:
            return "—"
        left, parts = round(seconds), list[tuple[int, str]]()
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            count, left = divmod(left, size)
            if count or (parts and len(parts) < 2):
                parts.append((count, unit))
            if len(parts) == 2:
                break
        parts = [p for p in parts if p[0]] or [(0, "second")]
        return " ".join(
            format_unit(n, f"duration-{u}", length="short", locale=self.language) for n, u in parts
        )

    def event(self, event: Event) -> str:
        if event.kind == "first-push":
            return self._("First push of %(schema)s", schema=event.schema or "—")
        if event.kind == "first-release":
            return self._(
                "First release to %(partner)s (%(schema)s)",
                partner=event.partner or "—",
                schema=event.schema or "—",
            )
        return self.action(event.action, event.policy_hash)

    def action(self, action: str, policy_hash: str | None = None) -> str:
        if action not in ACTIONS:
            return action
        return self._(
            ACTIONS[action], **({"hash": short(policy_hash)} if "policy" in action else {})
        )

    def account(self, scope: str, partner: str) -> str:
        return self._("All partners") if scope == "global" else partner

    def period(self, name: str) -> str:
        return self._("all time") if name == "total" else name


def short(digest: str | None, keep: int = 16) -> str:
    if not digest:
        return "—"
    return digest if len(digest) <= keep else digest[:keep] + "…"


def _charts(review: AfterAction, words: Words) -> dict[str, Markup]:
    nodes = len(review.checkpoints) > 1
    refusals = [
        charts.Bar(
            label=(f"{r.node} → " if nodes else "") + f"{r.partner}: {r.rule}",
            value=r.count,
            figure=words.number(r.count),
        )
        for r in review.refusals
    ]
    used = [
        charts.Bar(
            label=(f"{b.node} → " if nodes else "")
            + f"{words.account(b.account.scope, b.account.partner_id)} · {b.account.schema_id}",
            value=b.account.spent_micro,
            cap=b.account.cap_micro,
            figure=words._(
                "%(spent)s of %(cap)s",
                spent=words.epsilon(b.account.spent_micro),
                cap=words.epsilon(b.account.cap_micro),
            ),
        )
        for b in review.budgets
    ]
    return {
        "timeline": _markup(_timeline(review, words)),
        "refusals": _markup(
            charts.bars(
                refusals,
                title=words._("Refusals by rule"),
                empty=words._("No request was refused in this window."),
            )
        ),
        "budgets": _markup(
            charts.bars(
                used,
                title=words._("Privacy budget spent against caps"),
                empty=words._("No budget account is in force."),
            )
        ),
    }


def _timeline(review: AfterAction, words: Words) -> str:
    counts = review.timeline
    lanes = []
    for column, name in LANES:
        values: Sequence[int] = [getattr(c, column) for c in counts]
        lanes.append(charts.Lane(words._(name, count=words.number(max(values, default=0))), values))
    number: Callable[[float], str] = words.number
    return charts.timeline(
        lanes,
        [words.bucket(c.start, review.bucket) for c in counts],
        title=words._(PER_BUCKET[review.bucket]),
        empty=words._("Nothing happened in this window."),
        number=number,
    )


def _markup(svg: str) -> Markup:
    """SVG from `exchange.ui.charts`: ElementTree escaped every text in it."""
    return Markup(svg)  # noqa: S704


# --- Markdown -------------------------------------------------------------------------------


def cell(text: object) -> str:
    """A table cell: one line, pipes escaped, and no markup a renderer would run."""
    out = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;")
    return out.replace(">", "&gt;").replace("|", "\\|").replace("`", "'")


def _table(words: Words, heads: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(words._(h) for h in heads) + " |"]
    lines.append("|" + "|".join(" --- " for _ in heads) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def markdown(review: AfterAction, words: Words) -> str:
    """The review as Markdown: the HTML's sentences and tables, without the charts."""
    _ = words._
    nodes = ", ".join(node for node, _head in review.checkpoints)
    lat = review.latency
    out = [
        f"# {_('After-action review')}",
        "",
        cell(
            _(
                "What %(nodes)s shared, how fast, what was refused and what went wrong, "
                "from %(start)s to %(end)s.",
                nodes=nodes,
                start=words.when(review.start),
                end=words.when(review.end),
            )
        ),
        "",
        _(
            "Every figure here was recomputed from the node's audit log after the log "
            "verified, and from the budget caps of the node's policy. The review holds no data "
            "value: only counts, rules, privacy budgets, times, and the entries of incidents."
        ),
        "",
        f"## {_('Verified audit logs')}",
        "",
    ]
    out += _table(
        words,
        ("Node", "Entries", "Root hash", "Checkpoint signed at"),
        [(n, h.tree_size, h.root_hash, words.when(h.time)) for n, h in review.checkpoints],
    )
    out += [f"## {_('What was shared with whom')}", ""]
    out += _table(
        words,
        ("Node", "Partner", "Schema", "Releases", "Served again", "ε spent", "First", "Last"),
        [
            (
                s.node,
                s.partner,
                s.schema,
                s.releases,
                s.replayed,
                words.epsilon(s.epsilon_micro),
                words.when(s.first),
                words.when(s.last),
            )
            for s in review.shared
        ],
    )
    heading = _("From an agency's push to a partner's release")
    out += [f"## {heading}", ""]
    out += [
        _(
            "For each report an agency pushed, the time until each partner's next release of "
            "that schema from the same node. The log does not say which weeks a release "
            "covered, so this is how soon fresh data could reach a partner, not proof that it "
            "did. Median and 95th percentile by nearest rank: always a delay that was observed."
        ),
        "",
        _(
            "%(unreleased)s of %(pushes)s pushes were followed by no release in the window.",
            unreleased=words.number(lat.unreleased_pushes),
            pushes=words.number(lat.pushes),
        ),
        "",
    ]
    out += _table(
        words,
        ("Node", "Schema", "Partner", "Pushes released", "Median", "95th percentile"),
        [
            (
                r.node,
                r.schema,
                r.partner,
                r.delays.count,
                words.duration(r.delays.median_seconds),
                words.duration(r.delays.p95_seconds),
            )
            for r in lat.rows
        ],
    )
    out += [f"## {_('Refusals by rule')}", ""]
    out += _table(
        words,
        ("Node", "Partner", "Rule", "Refusals"),
        [(r.node, r.partner, r.rule, r.count) for r in review.refusals],
    )
    out += [f"## {_('Privacy budget spent against caps')}", ""]
    out += _table(
        words,
        ("Node", "Partner", "Schema", "Budget period", "ε spent", "ε budget", "Budget used"),
        [
            (
                b.node,
                words.account(b.account.scope, b.account.partner_id),
                b.account.schema_id,
                words.period(b.account.period),
                words.epsilon(b.account.spent_micro),
                words.epsilon(b.account.cap_micro),
                words.percent(b.account.spent_micro, b.account.cap_micro),
            )
            for b in review.budgets
        ],
    )
    out += [f"## {_('Incidents')}", ""]
    out += _table(
        words,
        ("Time", "Node", "What happened", "Outcome", "Actor", "Resource", "Reason"),
        [
            (
                words.when(i.time),
                i.node,
                f"{words.action(i.action)} ({i.action})",
                _(i.outcome),
                i.actor,
                i.resource,
                i.reason,
            )
            for i in review.incidents
        ],
    )
    out += [f"## {_('Timeline')}", ""]
    out += _table(
        words,
        ("Time", "Pushes", "Releases", "Refusals", "Incidents"),
        [
            (words.bucket(c.start, review.bucket), c.pushes, c.releases, c.refusals, c.incidents)
            for c in review.timeline
            if c.pushes or c.releases or c.refusals or c.incidents
        ],
    )
    out += _table(
        words,
        ("Time", "Node", "Event"),
        [(words.when(e.time), e.node, words.event(e)) for e in review.events],
    )
    return "\n".join(out).rstrip("\n") + "\n"
