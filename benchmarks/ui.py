"""Every dashboard page on a full node: server time beside the bare query behind it, and weight.

    .venv/bin/python benchmarks/ui.py                      # 1M rows, 10,000 releases, 1M entries
    .venv/bin/python benchmarks/ui.py --rows 100000 --releases 1000 --entries 100000
    .venv/bin/python benchmarks/ui.py --data /var/tmp/ui-bench    # keep the data set for reruns

The node (SQLite, WAL, synchronous=FULL) holds ``--rows`` stored report rows, ``--releases``
releases made to partners, ``--received`` releases received from a peer and ``--entries``
audit entries under a signed checkpoint (benchmarks/ui_data.py builds it, fast, with the
node's own functions). Then, in process, through the ASGI app and a TestClient signed in
as each role the way a browser signs in (GET and POST /ui/sign-in), each page of `PAGES` is
requested ``--rounds`` times and the figures are printed beside a baseline of the same run:

* **server time**, p50 and p95: from the request entering the app to the last byte of its
  response, measured by an ASGI wrapper around the app (the TestClient's own cost is left
  out); goal: p95 <= 200 ms;
* **bare query**, p50 and p95: the `nodes/` functions the page's view calls, timed alone
  on the same node; the difference is what the page adds (templates, session, policy check);
* **weight without its data**: the page's HTML with every table body emptied (the rows
  are the data; they grow with what the node holds, a page of them is bounded by the
  pager) plus the static files it links (stylesheet, scripts, icon), as a first visit loads
  them; goal: <= 200 kB. The full HTML size is printed too.

A page that answers 404 is printed as "not built" (its view does not exist yet): rerun when
it lands. Any other status than 200 is printed as it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ui_data import Dataset, Sizes, load_or_build

from exchange.api.app import create_app
from nodes import activity, ledger, peers, reports, tokens
from nodes.audit import browse, epoch, witness
from nodes.audit import reading as audit_reading
from nodes.audit import status as audit_status
from nodes.audit import summary as audit_summary
from nodes.audit.lookup import Filters
from nodes.database import reading
from nodes.node import Node
from nodes.releases import received, store
from nodes.reviews import transparency
from nodes.settings import NodeSettings
from nodes.tokens import TokenRecord
from policies.accounts import accounts_in_force

GOAL_MS = 200.0
GOAL_BYTES = 200 * 1024
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_TBODY = re.compile(r"(<tbody[^>]*>).*?(</tbody>)", re.DOTALL)
_ASSET = re.compile(r'(?:href|src)="(/ui/static/[^"?#]+)"')


@dataclass(frozen=True)
class Context:
    """What the bare queries need: the node, the data set and the agency's token."""

    node: Node
    data: Dataset
    agency: TokenRecord

    @property
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


Bare = Callable[[Context], object]


def _outflow(c: Context) -> object:
    with reading(c.node.engine) as conn:
        released = store.counts(conn)
    return released, audit_summary.release_refusals(c.node.engine)


def _budgets(c: Context) -> object:
    with reading(c.node.engine) as conn:
        return ledger.report(conn, accounts_in_force(c.node.policy, c.now))


def _transparency(c: Context) -> object:
    head = transparency.latest_head(c.node)
    found = [] if head is None else list(transparency.node_entries(c.node, head))
    return found, peers.list_peers(c.node.engine, include_removed=True)


def _received_page(c: Context) -> object:
    return received.listing(c.node.engine, offset=0, limit=50), received.count(c.node.engine)


def _checkpoints(c: Context) -> object:
    return browse.checkpoint_history(c.node.engine), epoch.read_all(c.node.settings.keys_dir)


def _flows(c: Context) -> object:
    since = c.now - dt.timedelta(weeks=12)
    return (
        activity.inflow_by_week(c.node.engine, since=since),
        reports.summary(c.node.engine),
        _outflow(c),
        audit_summary.outcome_counts(c.node.engine, action="release.request"),
        activity.recent_refusals(c.node.engine, limit=10),
    )


def _entry(c: Context) -> object:
    entry = browse.stored_entry(c.node.engine, c.data.audit_seq)
    signed = audit_reading.checkpoint(c.node.engine, sign_with=c.node.key.private_key, now=c.now)
    return browse.check_inclusion(
        c.node.engine, entry=entry, signed=signed, public_key=c.node.key.public_key
    )


def _witnesses(c: Context) -> object:
    listed = peers.list_peers(c.node.engine, include_removed=True)
    with reading(c.node.engine) as conn:
        return (
            [witness.last_accepted(conn, p.id) for p in listed],
            witness.flagged_peers(conn),
            witness.declared_epochs(conn),
        )


@dataclass(frozen=True)
class Page:
    name: str
    role: str | None  # None: read without signing in
    url: str  # {received_id} and {audit_seq} come from the data set
    bare: Bare | None  # None: the page reads nothing from the database


PAGES: tuple[Page, ...] = (
    Page("sign-in", None, "/ui/sign-in", None),
    Page("transparency", None, "/ui/transparency", _transparency),
    Page("upload", "agency", "/ui/upload", None),
    Page(
        "my reports",
        "agency",
        "/ui/reports",
        lambda c: reports.list_for(c.node.engine, token=c.agency, limit=50),
    ),
    Page("schemas", "agency", "/ui/schemas", None),
    Page("partner data", "analyst", "/ui/received", _received_page),
    Page(
        "received release",
        "analyst",
        "/ui/received/{received_id}",
        lambda c: received.find(c.node.engine, c.data.received_id),
    ),
    Page(
        "node", "operator", "/ui/operator", lambda c: audit_status.summary(c.node.engine, now=c.now)
    ),
    Page(
        "inflow, outflow",
        "operator",
        "/ui/operator/flows",
        _flows,
    ),
    Page("budgets", "operator", "/ui/operator/budgets", _budgets),
    Page(
        "peers",
        "operator",
        "/ui/operator/peers",
        lambda c: (
            peers.list_peers(c.node.engine, include_removed=True),
            audit_status.summary(c.node.engine, now=c.now),
        ),
    ),
    Page("policy", "operator", "/ui/operator/policy", None),
    Page(
        "audit log",
        "auditor",
        "/ui/audit",
        lambda c: browse.newest(c.node.engine, Filters()),
    ),
    Page(
        "audit log, filtered",
        "auditor",
        "/ui/audit?action=release",
        lambda c: browse.newest(c.node.engine, Filters(action="release")),
    ),
    Page(
        "audit entry",
        "auditor",
        "/ui/audit/entries/{audit_seq}",
        _entry,
    ),
    Page("checkpoints", "auditor", "/ui/audit/checkpoints", _checkpoints),
    Page("witnesses", "auditor", "/ui/audit/witnesses", _witnesses),
)


class ServerTime:
    """An ASGI wrapper: the time from a request's arrival to its response's last byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - start

        await self.app(scope, receive, timed)


def sign_in(client: TestClient, secret: str) -> None:
    """As a browser does: the form (its CSRF cookie and field), then the post."""
    client.cookies.clear()
    form = client.get("/ui/sign-in")
    found = _CSRF.search(form.text)
    assert found is not None, "the sign-in page has no CSRF field"
    answer = client.post(
        "/ui/sign-in",
        data={"token": secret, "csrf": found.group(1)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text[:500]


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def weight(client: TestClient, html: str, assets: dict[str, int]) -> tuple[int, int]:
    """(HTML with its table bodies emptied + the static files it links, full HTML)."""
    shell = _TBODY.sub(r"\1\2", html)
    linked = 0
    for path in sorted(set(_ASSET.findall(html))):
        if path not in assets:
            assets[path] = len(client.get(path).content)
        linked += assets[path]
    return len(shell.encode()) + linked, len(html.encode())


def time_bare(bare: Bare, context: Context, rounds: int) -> tuple[float, float]:
    bare(context)  # warm
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        bare(context)
        times.append(time.perf_counter() - start)
    return percentiles(times)


def run(data: Dataset, rounds: int) -> None:
    settings = NodeSettings.load(
        Path(data.directory) / "xa",
        checkpoint_interval_seconds=3600,  # no checkpoint signed in the middle of a timing
        public_transparency=True,
    )
    sizes = data.sizes
    print(
        f"data set in {data.directory}: {data.report_rows:,} stored report rows, "
        f"{sizes.releases:,} releases, {sizes.received:,} received releases, "
        f"{sizes.entries:,} audit entries (built in {data.built_seconds:.0f} s)"
    )
    start = time.perf_counter()
    node = Node.open(settings)  # verifies the whole log, as a node starting up does
    print(f"node opened (whole audit log verified) in {time.perf_counter() - start:.1f} s")
    try:
        agency = tokens.authenticate(
            node.engine, data.tokens["agency"], now=dt.datetime.now(dt.UTC)
        )
        context = Context(node, data, agency)
        timer = ServerTime(create_app(settings, node=node))
        assets: dict[str, int] = {}
        header = (
            f"{'page':<20} {'role':<9} {'URL':<30} {'p50 ms':>7} {'p95 ms':>7} "
            f"{'bare p50':>8} {'bare p95':>8} {'HTML kB':>8} {'weight kB':>9}  verdict"
        )
        print(f"\n{rounds} requests per page after one warm-up; bare query timed alone, same node")
        print(header)
        print("-" * len(header))
        with TestClient(
            timer, base_url="http://127.0.0.1", raise_server_exceptions=False
        ) as client:
            for role in (None, "agency", "analyst", "operator", "auditor"):
                if role is None:
                    client.cookies.clear()
                else:
                    sign_in(client, data.tokens[role])
                for page in (p for p in PAGES if p.role == role):
                    print(_measure(client, timer, page, context, rounds, assets), flush=True)
    finally:
        node.close()


def _measure(
    client: TestClient,
    timer: ServerTime,
    page: Page,
    context: Context,
    rounds: int,
    assets: dict[str, int],
) -> str:
    url = page.url.format(received_id=context.data.received_id, audit_seq=context.data.audit_seq)
    first = client.get(url, follow_redirects=False)
    label = f"{page.name:<20} {page.role or 'public':<9} {url[:30]:<30}"
    if first.status_code == 404:
        return f"{label} {'not built':>7}"
    if first.status_code != 200:
        return f"{label} status {first.status_code}"
    times = []
    for _ in range(rounds):
        client.get(url, follow_redirects=False)
        times.append(timer.last)
    p50, p95 = percentiles(times)
    if page.bare is None:
        bare = f"{'-':>8} {'-':>8}"
    else:
        bare = "{:>8.1f} {:>8.1f}".format(*time_bare(page.bare, context, rounds))
    shell, full = weight(client, first.text, assets)
    verdict = "ok" if p95 <= GOAL_MS and shell <= GOAL_BYTES else "MISSES"
    return (
        f"{label} {p50:>7.1f} {p95:>7.1f} {bare} "
        f"{full / 1024:>8.1f} {shell / 1024:>9.1f}  {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="stored report rows")
    parser.add_argument("--releases", type=int, default=10_000, help="releases to partners")
    parser.add_argument(
        "--received",
        type=int,
        default=None,
        help="releases received from a peer (default: as many as --releases)",
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="audit entries")
    parser.add_argument("--rounds", type=int, default=20, help="requests per page")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="keep the data set here and reuse it when the sizes match",
    )
    args = parser.parse_args()
    sizes = Sizes(
        rows=args.rows,
        releases=args.releases,
        entries=args.entries,
        received=args.releases if args.received is None else args.received,
    )
    if args.data is not None:
        run(load_or_build(args.data.resolve(), sizes), args.rounds)
        return
    with tempfile.TemporaryDirectory(prefix="exchange-ui-bench-") as directory:
        run(load_or_build(Path(directory), sizes), args.rounds)


if __name__ == "__main__":
    main()
