"""Releases as HXL-tagged CSV, read back with ``libhxl`` (the HXL project's own parser).

Built from releases pulled for real, so the tags, values and provenance checked here are
those of the bytes a partner keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hxl
import pytest

from exchange.clients.release_view import provided_document
from exchange.formats.hxl_export import release_hxl
from nodes.database import reading
from nodes.releases import received, store
from schemas.standard import HUMANITARIAN_SITREP, WEEKLY_EPI
from tests.release_formats_support import Pulled, pulled


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulled]:
    with pulled(tmp_path_factory.mktemp("hxl")) as found:
        yield found


@dataclass(frozen=True)
class Parsed:
    columns: list[Any]
    rows: list[Any]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


def _parse(text: str, tmp_path: Path) -> Parsed:
    """Parsed from a file, as a partner's tool reads it, and read whole before it closes."""
    path = tmp_path / "release.csv"
    path.write_text(text, encoding="utf-8")
    with path.open("rb") as stream:
        data = hxl.data(stream, hxl.InputOptions(allow_local=True))
        return Parsed(list(data.columns), list(data))


def _document(world: Pulled, received_id: int) -> dict[str, Any]:
    return received.get(world.xa.node.engine, received_id).document


def test_districts_are_tagged_adm2_and_every_cell_is_a_row(world: Pulled, tmp_path: Path) -> None:
    document = _document(world, world.districts.received_id)
    data = _parse(release_hxl(document, schema=WEEKLY_EPI), tmp_path)
    tags = [c.display_tag for c in data.columns]
    assert tags[:3] == ["#adm2+code", "#date+week", "#group+age"]
    assert "#affected+cases" in tags
    assert "#affected+hospitalised" in tags
    rows = list(data)
    cells = document["release"]["cells"]
    assert len(rows) == len(cells)
    for row, cell in zip(rows, cells, strict=True):
        assert row.get("#adm2+code") == cell["area"]
        assert row.get("#date+week") == cell["week"]
        assert row.get("#group+age") == cell["age_band"]
        for measure, tag in (
            ("cases", "#affected+cases"),
            ("admissions", "#affected+hospitalised"),
        ):
            value = cell[measure]
            assert row.get(f"#meta+accuracy+{measure}") == str(value["accuracy"])
            if value["suppressed"]:
                assert row.get(tag) in ("", None)
                assert row.get(f"#meta+suppressed+{measure}") == "true"
            else:
                assert row.get(tag) == str(value["value"])
                assert row.get(f"#meta+suppressed+{measure}") == "false"
    assert any(cell["cases"]["suppressed"] for cell in cells)


def test_the_national_total_is_tagged_country(world: Pulled, tmp_path: Path) -> None:
    """Without the schema (a release of a schema this node does not know) tags still fit."""
    data = _parse(release_hxl(_document(world, world.national.received_id)), tmp_path)
    assert data.columns[0].display_tag == "#country+code"
    assert {row.get("#country+code") for row in data} == {"XB"}


def test_provenance_is_on_every_row(world: Pulled, tmp_path: Path) -> None:
    document = _document(world, world.districts.received_id)
    release = document["release"]
    data = _parse(release_hxl(document, schema=WEEKLY_EPI), tmp_path)
    for row in data:
        assert row.get("#org+provider+code") == "XC"
        assert row.get("#org+provider+name") == document["provider"]["name"]
        assert row.get("#meta+release+id") == str(release["release_id"])
        assert float(row.get("#meta+epsilon+num")) == release["epsilon_spent"]
        assert float(row.get("#meta+confidence+num")) == 0.95


def test_only_the_measures_match_their_hashtags(world: Pulled, tmp_path: Path) -> None:
    """HXL tools match tags by prefix: accuracy under #affected would be summed with cases."""
    document = _document(world, world.districts.received_id)
    data = _parse(release_hxl(document, schema=WEEKLY_EPI), tmp_path)
    affected = hxl.model.TagPattern.parse("#affected")
    matched = [c.display_tag for c in data.columns if affected.match(c)]
    assert matched == ["#affected+cases", "#affected+hospitalised"]


def test_the_first_row_is_for_people(world: Pulled) -> None:
    text = release_hxl(_document(world, world.districts.received_id), schema=WEEKLY_EPI)
    header, tags = text.splitlines()[:2]
    assert header.startswith("Area,Epi week,Age band,Cases,")
    assert tags.startswith("#adm2+code,")


def test_the_provider_adds_area_names(world: Pulled, tmp_path: Path) -> None:
    release = world.districts.release
    with reading(world.xc.node.engine) as conn:
        stored = store.get(conn, int(release["release_id"]))
    assert stored is not None
    names = {a.code: a.name for a in world.xc.node.gazetteer.areas}
    document = provided_document(stored, node_id="XC", node_name="Kingdom of XC")
    data = _parse(release_hxl(document, schema=WEEKLY_EPI, area_names=names), tmp_path)
    for row in data:
        assert row.get("#adm2+name") == names[row.get("#adm2+code")]


def test_provinces_and_schema_tags_of_another_schema(tmp_path: Path) -> None:
    cell = {"value": None, "suppressed": True, "accuracy": 4.0}
    document = {
        "provider": {"id": "XB", "name": "XB"},
        "release": {
            "release_id": 3,
            "query": {"group_by": ["area:adm1", "population_group"]},
            "dimensions": ["area", "population_group"],
            "measures": ["people_in_need"],
            "cells": [{"area": "XB-P1", "population_group": "idp", "people_in_need": cell}],
        },
    }
    data = _parse(release_hxl(document, schema=HUMANITARIAN_SITREP), tmp_path)
    tags = [c.display_tag for c in data.columns]
    assert tags[:3] == ["#adm1+code", "#group+population", "#inneed"]
    (row,) = list(data)
    assert row.get("#inneed") in ("", None)
    assert row.get("#meta+suppressed+people_in_need") == "true"
