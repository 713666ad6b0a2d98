"""``exchange received`` and ``exchange releases`` on node directories holding real releases.

XA pulled from XC and XB (signed, stored); the commands open XA's (and XC's) directory as an
analyst or operator would, and their output is checked with the official FHIR models, the
HXL parser and the stored bytes. A row whose stored bytes were changed must fail ``verify``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import hxl
import pytest
from fhir.resources.R4B.measurereport import MeasureReport
from sqlalchemy import update
from typer.testing import CliRunner

from exchange.cli import app, common
from nodes.database import writing
from nodes.federation_tables import received_releases
from nodes.releases import received
from tests.release_formats_support import Pulled, pulled

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulled]:
    with pulled(tmp_path_factory.mktemp("received-cli")) as found:
        yield found


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as on a wide terminal, so a name is not wrapped across lines."""
    monkeypatch.setattr(common.console, "_width", 240)


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_list_shows_both_received_releases(world: Pulled) -> None:
    code, out = _run("received", "list", str(world.xa.settings.directory))
    assert code == 0, out
    assert "2 received release(s)" in out
    assert "Kingdom of XC" in out
    assert "Federation of XB" in out
    assert "outbreak_response" in out


def test_show_names_provider_question_cost_and_a_verified_signature(world: Pulled) -> None:
    result = world.national
    code, out = _run("received", "show", str(world.xa.settings.directory), str(result.received_id))
    assert code == 0, out
    assert "Provider: Federation of XB (XB)" in out
    assert f"weeks {result.release['query']['since']} – {result.release['query']['until']}" in out
    assert "area:adm0" in out
    assert f"ε spent: {result.release['epsilon_spent']:g}" in out
    assert f"verified: signed by XB's key {result.key_id}" in " ".join(out.split())


def test_verify_succeeds_on_the_stored_bytes(world: Pulled) -> None:
    code, out = _run(
        "received", "verify", str(world.xa.settings.directory), str(world.districts.received_id)
    )
    assert code == 0, out
    assert "verified" in out


def test_verify_fails_once_the_stored_bytes_are_changed(world: Pulled) -> None:
    engine = world.xa.node.engine
    stored = received.get(engine, world.national.received_id)
    copy = received.store(
        engine,
        peer_id=stored.peer_id,
        release_id=stored.release_id,
        schema_id=stored.schema_id,
        key_id=stored.key_id,
        cached=stored.cached,
        request=stored.request,
        response=stored.response,
        now=stored.received_at,
    )
    directory = str(world.xa.settings.directory)
    assert _run("received", "verify", directory, str(copy))[0] == 0  # a faithful copy verifies
    tampered = stored.response.body.replace(b'"value":', b'"value": ', 1)
    assert tampered != stored.response.body
    with writing(engine) as conn:
        conn.execute(
            update(received_releases)
            .where(received_releases.c.id == copy)
            .values(response_body=tampered)
        )
    code, out = _run("received", "verify", directory, str(copy))
    assert code == 1
    assert "does NOT verify" in " ".join(out.split())
    assert _run("received", "show", directory, str(copy))[0] == 1


def test_an_unknown_received_release_is_named(world: Pulled) -> None:
    code, out = _run("received", "verify", str(world.xa.settings.directory), "999999")
    assert code == 1
    assert "no received release 999999" in out


def test_export_json_is_the_signed_bytes_exactly(world: Pulled, tmp_path: Path) -> None:
    out = tmp_path / "release.json"
    rid = str(world.districts.received_id)
    code, text = _run(
        "received", "export", str(world.xa.settings.directory), rid, "--format", "json",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, text
    stored = received.get(world.xa.node.engine, world.districts.received_id)
    assert out.read_bytes() == stored.response.body


def test_export_fhir_is_a_valid_measure_report(world: Pulled, tmp_path: Path) -> None:
    out = tmp_path / "release.fhir.json"
    rid = str(world.districts.received_id)
    code, text = _run(
        "received", "export", str(world.xa.settings.directory), rid, "--format", "fhir",
        "--out", str(out), "--week-system", "mmwr",
    )  # fmt: skip
    assert code == 0, text
    report = MeasureReport.model_validate_json(out.read_text(encoding="utf-8"))
    cells = world.districts.release["cells"]
    assert [len(g.stratifier[0].stratum) for g in report.group] == [len(cells)] * 2
    assert report.period.start.weekday() == 6  # MMWR: a Sunday


def test_export_hxl_and_csv_to_standard_output(world: Pulled) -> None:
    directory, rid = str(world.xa.settings.directory), str(world.national.received_id)
    code, text = _run("received", "export", directory, rid, "--format", "hxl")
    assert code == 0, text
    data = hxl.data(list(csv.reader(io.StringIO(text))))
    assert [c.display_tag for c in data.columns][:2] == ["#country+code", "#date+week"]
    assert len(list(data)) == len(world.national.release["cells"])
    code, text = _run("received", "export", directory, rid)
    assert code == 0, text
    assert len(list(csv.DictReader(io.StringIO(text)))) == len(world.national.release["cells"])


def test_the_provider_lists_and_exports_what_it_released(world: Pulled, tmp_path: Path) -> None:
    directory = str(world.xc.settings.directory)
    release_id = str(world.districts.release["release_id"])
    code, out = _run("releases", "list", directory)
    assert code == 0, out
    assert "XA" in out
    target = tmp_path / "copy.json"
    code, out = _run("releases", "export", directory, release_id, "--format", "json",
                     "--out", str(target))  # fmt: skip
    assert code == 0, out
    assert "not the bytes the partner received" in " ".join(out.split())
    copy = json.loads(target.read_text(encoding="utf-8"))
    assert copy["type"] == "crisis-exchange/release-copy"
    assert copy["release"]["cells"] == world.districts.release["cells"]
    code, out = _run("releases", "export", directory, release_id, "--format", "hxl")
    assert code == 0, out
    data = hxl.data(list(csv.reader(io.StringIO(out))))
    assert "#adm2+name" in [c.display_tag for c in data.columns]
    code, out = _run("releases", "export", directory, "999999")
    assert code == 1
    assert "no release 999999" in out
