"""``exchange demo``: three real servers on loopback, and what the newcomer is shown."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from exchange.demo.cluster import prepare
from exchange.demo.data import NATIONS, outbreak_rows
from exchange.demo.walkthrough import run
from nodes import peers
from nodes.directory import sample_gazetteer

pytestmark = pytest.mark.slow


def test_the_demo_exchanges_what_the_policies_allow(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run(tmp_path / "demo", console=Console(file=out, width=160))
    printed = out.getvalue()

    assert result.pushed == {"XA": 2304, "XB": 2304, "XC": 2304}
    assert len(result.received) == 6
    pairs = {(r.document["recipient"]["id"], r.peer_id) for r in result.received}
    assert pairs == {(a, b) for a in ("XA", "XB", "XC") for b in ("XA", "XB", "XC") if a != b}
    for received in result.received:
        release = received.release
        areas = {cell["area"] for cell in release["cells"]}
        if release["query"]["group_by"][0] == "area:adm1":
            assert areas == {f"{received.peer_id}-P{p}" for p in range(1, 5)}
            assert set(release["measures"]) == {"cases", "admissions"}
        else:
            assert areas == {received.peer_id}
            assert release["measures"] == ["cases"]
        assert all(a > 0 for a in release["accuracy"].values())

    assert [d.status for d in result.denials] == [403, 403]
    assert "admin level 0" in result.denials[0].problem["reasons"][0]
    assert "no-deaths" in result.denials[1].problem["reasons"][0]

    assert result.cached is not None
    assert result.cached.cached
    assert result.cached.release["epsilon_spent"] == 0
    xa_budgets = {row["account"]: row for row in result.budgets["XA"]}
    assert xa_budgets["XB"]["spent"] == 1.0  # the repeat cost nothing
    assert xa_budgets["all partners"]["spent"] == 1.5

    for expected in (
        "What each nation received",
        "XC asked XA: 403",
        "red line no-deaths",
        "cached=True, ε spent 0",
        "Budgets left",
    ):
        assert expected in printed


def test_the_outbreaks_are_epidemic_curves_not_noise(tmp_path: Path) -> None:
    """Each district's weekly cases rise to one peak and fall: a wave, district by district."""
    nation = NATIONS[0]
    rows = outbreak_rows(nation, sample_gazetteer(nation.id), today=dt.date(2026, 6, 1))
    by_district: dict[str, dict[str, int]] = {}
    for row in rows:
        weeks = by_district.setdefault(str(row["area"]), {})
        weeks[str(row["week"])] = weeks.get(str(row["week"]), 0) + int(str(row["cases"]))
    peaks = set()
    for weekly in by_district.values():
        series = [weekly[w] for w in sorted(weekly)]
        peak = series.index(max(series))
        peaks.add(peak)
        assert max(series) > 5 * (series[0] + 1)  # a real wave above its start
        assert sum(series[peak:]) > 0
        assert series[-1] < max(series)
    assert len(peaks) > 3  # districts peak in different weeks


def test_prepare_lets_every_node_know_the_others(tmp_path: Path) -> None:
    nodes = prepare(tmp_path, {n.id: f"http://{n.id.lower()}:8000" for n in NATIONS})
    try:
        for demo in nodes:
            known = {p.id for p in peers.list_peers(demo.opened.engine)}
            assert known == {n.id for n in NATIONS} - {demo.id}
            assert (demo.settings.directory / "policy.yaml").is_file()
    finally:
        for demo in nodes:
            demo.opened.close()


def test_exchange_demo_exits_0_within_a_minute() -> None:
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "exchange", "demo"],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "COLUMNS": "160"},
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert time.monotonic() - started < 60
    assert "cached=True" in finished.stdout
    assert "403" in finished.stdout


def test_keep_running_prints_each_dashboard_and_a_working_token_per_role(tmp_path: Path) -> None:
    """What ``exchange demo --keep-running`` prints is enough to sign in to every dashboard."""
    import re

    import httpx2

    from exchange.demo.walkthrough import DemoResult

    out = io.StringIO()
    signed_in: list[tuple[str, str, str]] = []

    def explore(result: DemoResult) -> None:
        printed = out.getvalue()
        for demo in result.nodes:
            assert f"{demo.id}: dashboard {demo.url}/ui/" in printed
            assert f"public transparency page {demo.url}/ui/transparency" in printed
            with httpx2.Client(base_url=demo.url, timeout=30) as browser:
                assert browser.get("/ui/transparency").status_code == 200  # the demo turns it on
                for role in ("agency", "analyst", "auditor", "operator"):
                    section = printed.split(f"{demo.id}: dashboard")[1].split(": dashboard")[0]
                    (secret,) = re.findall(rf"sign in as {role}\s+(xt_\S+)", section)
                    form = browser.get("/ui/sign-in").text
                    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
                    assert csrf is not None
                    answer = browser.post(
                        "/ui/sign-in", data={"token": secret, "csrf": csrf.group(1)}
                    )
                    assert answer.status_code == 303, answer.text[:500]
                    signed_in.append((demo.id, role, answer.headers["location"]))
                    browser.cookies.clear()

    run(tmp_path / "demo", console=Console(file=out, width=200), keep_running=True, wait=explore)
    assert len(signed_in) == 12
    assert {location for _node, role, location in signed_in if role == "analyst"} == {
        "/ui/received"
    }
