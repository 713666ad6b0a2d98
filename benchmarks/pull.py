"""Latency of a signed pull of a 1,000-cell release, beside a bare endpoint, in the same run.

    .venv/bin/python benchmarks/pull.py                 # 100 of each
    .venv/bin/python benchmarks/pull.py --rounds 300

One server process (uvicorn, loopback) serves both:

* the real ``POST /v1/releases``: the client signs (RFC 9421), the node verifies the
  signature, checks the peer registry and records the nonce, decides the policy, reserves
  the budget, runs the aggregate SQL, draws the noise, stores the release, appends to the
  audit log and signs its response; the client verifies that signature and stores the
  release with it (``exchange.clients.pulling.pull``, what ``exchange pull`` does);
* ``GET /bench/bare``: a plain FastAPI endpoint that runs the same SQL over the same key
  set and returns the same JSON document (exact values instead of noisy ones): no
  signature, no policy, no ledger, no noise, no storage.

Every signed pull is a fresh release (a one-row correction is pushed before each, untimed,
so the cache cannot answer); cached repeats are timed separately. Rounds alternate the
two endpoints, so both see the same machine noise. Prints p50/p95 and the p50 ratio; the
goal is a ratio of 2 or less.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from fastapi import Response
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from exchange.api.app import create_app
from exchange.api.partner_auth import authenticate
from exchange.api.releasing import release_document, signed_json
from exchange.clients.pulling import peer_client, pull
from exchange.demo.data import as_csv
from exchange.signing.signatures import RequestMessage, ResponseMessage, sign_request, sign_response
from nodes import aggregates, keys, peers, tokens
from nodes.database import reading
from nodes.directory import init_node, sample_gazetteer
from nodes.identity import load_current, public_key_text
from nodes.node import Node
from nodes.releases import pipeline, store
from nodes.releases.document import Release
from nodes.releases.tables import releases as release_rows
from nodes.settings import NodeSettings
from policies.decision import ReleaseRequest, decide_with_keys
from policies.query import ReleaseQuery
from schemas.periods import week_of
from tests.servers import kill_hard, start_python, unused_port

PROVINCES, WEEKS = 50, 20  # admin level 1 x weeks = 1,000 cells
POLICY = """\
version: 1
node: XA
schemas:
  weekly_epi@1:
    global_budget: {epsilon: 10000, period: total}
    weeks_per_person: 2
agreements:
  - id: bench
    partners: [XB]
    schema: weekly_epi@1
    measures: [cases]
    dimensions:
      area: {level: 1}
      week: {period: week}
    embargo_days: 0
    purposes: [benchmark]
    valid_from: 2020-01-01
    valid_until: 2035-12-31
    privacy: {mechanism: laplace, epsilon: 0.01}
    budget: {epsilon: 10000, period: total}
"""


def weeks(today: dt.date) -> list[str]:
    return [week_of(today - dt.timedelta(weeks=back), "iso") for back in range(WEEKS, 0, -1)]


def query(today: dt.date) -> ReleaseQuery:
    found = weeks(today)
    return ReleaseQuery(
        schema_id="weekly_epi@1",
        measures=("cases",),
        group_by=("area:adm1", "week"),
        since=found[0],
        until=found[-1],
        purpose="benchmark",
    )


def rows(today: dt.date, salt: int = 0) -> list[dict[str, object]]:
    areas = sample_gazetteer("XA", provinces=PROVINCES, districts=2).areas
    districts = [a.code for a in areas if a.level == 2]
    out: list[dict[str, object]] = []
    for w, week in enumerate(weeks(today)):
        for i, district in enumerate(districts):
            for band in ("0-4", "5-14", "15-24", "25-44", "45-64", "65+"):
                for sex in ("female", "male"):
                    cases = (w * 7 + i * 3 + len(band) + salt) % 40
                    out.append(
                        {
                            "area": district, "week": week, "age_band": band, "sex": sex,
                            "cases": cases, "deaths": 0, "admissions": cases // 5, "tests": cases * 3,
                        }
                    )  # fmt: skip
    return out


# -- the server process ---------------------------------------------------------------------


def serve(directory: Path, port: int) -> None:
    """The node's app plus the bare endpoint, in one uvicorn process."""
    settings = NodeSettings.load(directory)
    app = create_app(settings)
    prepared: dict[str, Any] = {}

    def bare_document(node: Node) -> bytes:
        if not prepared:  # the key set and a document template, once (untimed warm-up)
            decision, space = decide_with_keys(
                ReleaseRequest("XB", query(dt.datetime.now(dt.UTC).date())),
                node.policy,
                dt.datetime.now(dt.UTC),
            )
            assert space is not None
            assert decision.allowed, decision.sentence
            with reading(node.engine) as conn:
                first = conn.execute(select(release_rows.c.id).order_by(release_rows.c.id)).scalar()
                template = store.get(conn, int(first or 0))
            assert template is not None, "run one signed pull first"
            prepared.update(space=space, template=template)
        space, template = prepared["space"], prepared["template"]
        with reading(node.engine) as conn:
            exact = aggregates.exact(conn, space, ("cases",))
        stored = replace(template, values={"cases": exact["cases"].tolist()})
        release = Release.of(stored, node_id="XA", budget=(), charged_micro=0, cached=False)
        document = {
            "type": "crisis-exchange/release",
            "provider": {"id": "XA", "name": settings.name},
            "recipient": {"id": "XB", "key_id": "-"},
            "release": release.as_document(),
            "checkpoint": None,
        }
        # What a plain FastAPI endpoint does (JSONResponse's settings): no canonical form.
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    @app.get("/bench/bare", include_in_schema=False)
    def bare() -> Response:  # a plain def: FastAPI runs it in a worker thread
        return Response(bare_document(app.state.node), media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", server_header=False)


# -- the client ----------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def setup(work: Path, port: int) -> tuple[NodeSettings, NodeSettings, str]:
    """XA (1,000-cell releases for XB) and XB, each registered as the other's peer."""
    now = dt.datetime.now(dt.UTC)
    xa_settings, _ = init_node(
        work / "XA",
        node_id="XA",
        name="XA",
        public_url=f"http://127.0.0.1:{port}",
        gazetteer=sample_gazetteer("XA", provinces=PROVINCES, districts=2),
    )
    xa_settings.policy_file.write_text(POLICY)
    xb_settings, _ = init_node(work / "XB", node_id="XB", name="XB")
    for settings, other, url in (
        (xa_settings, xb_settings, "http://127.0.0.1:1"),
        (xb_settings, xa_settings, f"http://127.0.0.1:{port}"),
    ):
        node = Node.open(settings)
        peers.add_peer(
            node.engine, peer_id=other.node_id, name=other.node_id, url=url, now=now,
            keys=[peers.NewKey(public_key_text(load_current(other.keys_dir).public_key))],
        )  # fmt: skip
        if settings is xa_settings:
            _, secret = tokens.issue_token(
                node.engine, name="moh", role="agency", schemas=("weekly_epi@1",), now=now
            )
        node.close()
    return xa_settings, xb_settings, secret


def measure(xb: Node, base: str, secret: str, rounds: int) -> dict[str, list[float]]:
    """Alternate fresh pulls, cached repeats and bare requests; drop 5 warm-up rounds."""
    today = dt.datetime.now(dt.UTC).date()
    agency = {"Authorization": f"Bearer {secret}", "Content-Type": "text/csv"}
    samples: dict[str, list[float]] = {"fresh": [], "cached": [], "bare": []}
    with httpx2.Client(base_url=base, timeout=60) as http:
        pushed = http.post("/v1/reports/weekly_epi@1", content=as_csv(rows(today)), headers=agency)
        assert pushed.status_code == 201, pushed.text
        client = peer_client(xb, http, peers.get_peer(xb.engine, "XA"))
        wanted = query(today)
        first = pull(xb, client, wanted)
        assert len(first.release["cells"]) == PROVINCES * WEEKS, len(first.release["cells"])
        assert http.get("/bench/bare").status_code == 200
        correction = as_csv(rows(today)[:1])
        for round_ in range(rounds + 5):
            # A new data version, so the fresh pull cannot be answered from the cache.
            http.post("/v1/reports/weekly_epi@1", content=correction, headers=agency)
            timings = {
                "fresh": timed(lambda: pull(xb, client, wanted)),
                "cached": timed(lambda: pull(xb, client, wanted)),
                "bare": timed(lambda: http.get("/bench/bare").json()),
            }
            if round_ >= 5:
                for name, value in timings.items():
                    samples[name].append(value)
    return samples


def breakdown(
    xa_settings: NodeSettings, xb_settings: NodeSettings, secret: str
) -> dict[str, float]:
    """Median ms of each server-side step of a fresh release, in this process (no HTTP)."""
    xa = Node.open(xa_settings)
    key = load_current(xb_settings.keys_dir).private_key
    wanted = query(dt.datetime.now(dt.UTC).date())
    body = wanted.model_dump_json().encode()
    url = f"{xa_settings.public_url}/v1/releases"
    agency = {"Authorization": f"Bearer {secret}", "Content-Type": "text/csv"}
    correction = as_csv(rows(dt.datetime.now(dt.UTC).date())[:1])
    steps: dict[str, list[float]] = {}

    @contextmanager
    def clock(name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        steps.setdefault(name, []).append((time.perf_counter() - started) * 1000)

    space = decide_with_keys(ReleaseRequest("XB", wanted), xa.policy, dt.datetime.now(dt.UTC))[1]
    assert space is not None
    try:
        with TestClient(create_app(xa_settings, node=xa)) as agency_api:
            for _ in range(15):
                agency_api.post("/v1/reports/weekly_epi@1", content=correction, headers=agency)
                now = dt.datetime.now(dt.UTC)
                message = sign_request(
                    RequestMessage("POST", url, (("Content-Type", "application/json"),), body),
                    private_key=key,
                    now=now,
                )
                with clock("signature, peer key, nonce"):
                    partner = authenticate(xa, message, now=now)
                with clock("release(): policy, ledger, SQL, noise, store, audit"):
                    made = pipeline.release(xa, partner_id="XB", query=wanted, now=now)
                with clock("document and JSON"):
                    document = signed_json(release_document(xa, partner, made.as_document()))
                with clock("response signature"):
                    signing = keys.current_key(xa_settings.keys_dir).get().private_key
                    response = ResponseMessage(
                        200, (("Content-Type", "application/json"),), document, message
                    )
                    sign_response(response, private_key=signing, now=now)
                with (
                    clock("the aggregate SQL alone (inside release())"),
                    reading(xa.engine) as conn,
                ):
                    aggregates.exact(conn, space, ("cases",))
    finally:
        xa.close()
    return {name: statistics.median(values[3:]) for name, values in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    port = unused_port()  # stated in the node's settings, so known before it starts
    xa_settings, xb_settings, secret = setup(work, port)
    server = start_bench_server(xa_settings.directory, port)
    xb = Node.open(xb_settings)
    try:
        samples = measure(xb, f"http://127.0.0.1:{port}", secret, args.rounds)
    finally:
        kill_hard(server)
        xb.close()
    steps = breakdown(xa_settings, xb_settings, secret)

    cells = PROVINCES * WEEKS
    print(f"pull of a {cells}-cell release: {args.rounds} rounds, loopback, SQLite, one worker")
    labels = {
        "fresh": "signed pull, fresh release",
        "cached": "signed pull, cached repeat",
        "bare": "bare FastAPI endpoint",
    }
    for name, label in labels.items():
        values = samples[name]
        print(
            f"  {label:<28} p50 {percentile(values, 0.5):7.2f} ms   "
            f"p95 {percentile(values, 0.95):7.2f} ms"
        )
    bare = percentile(samples["bare"], 0.5)
    print(
        f"  ratio of p50s: fresh/bare {percentile(samples['fresh'], 0.5) / bare:.2f}x "
        f"(goal <= 2x), cached/bare {percentile(samples['cached'], 0.5) / bare:.2f}x"
    )
    print("server-side steps of a fresh release (median ms, in-process):")
    for name, value in steps.items():
        print(f"  {name:<52} {value:7.2f}")


def start_bench_server(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """Like tests.servers.start_server, but this script's app (with the bare endpoint)."""
    return start_python([__file__, "--serve", str(directory), "--port", str(port)], port)


if __name__ == "__main__":
    main()
