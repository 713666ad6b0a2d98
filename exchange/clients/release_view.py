"""Showing a received release to a person: a rich table, CSV for a spreadsheet, curves, or
the formats other tools read (HXL-tagged CSV, a FHIR MeasureReport: ``rendered``).

Every number is shown with its 95% accuracy (the half-width of its interval), because a
noisy count without its error bar invites over-reading; suppressed cells say so.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rich.table import Table

from exchange.formats.fhir import measure_report
from exchange.formats.hxl_export import release_hxl
from schemas.periods import WeekSystem

if TYPE_CHECKING:
    from nodes.releases.store import StoredRelease
    from schemas.registry import SchemaRegistry

Rendering = Literal["csv", "hxl", "fhir"]


def _dimensions(release: dict[str, Any]) -> list[str]:
    return [str(d) for d in release.get("dimensions", [])]


def _measures(release: dict[str, Any]) -> list[str]:
    return [str(m) for m in release.get("measures", [])]


def _shown(cell: dict[str, Any]) -> str:
    if cell.get("suppressed") or cell.get("value") is None:
        return "suppressed"
    return f"{cell['value']} ± {cell['accuracy']:g}"


def _budget_left(release: dict[str, Any]) -> str:
    left: dict[str, float] = release.get("budget_left", {})
    names = {"partner": "yours", "global": "all partners'"}
    return ", ".join(
        f"{names.get(scope, scope)} {value:g}"
        for scope, value in sorted(left.items(), reverse=True)
    )


def release_table(document: dict[str, Any], *, max_rows: int | None = None) -> Table:
    """The cells as a table; the caption says who released what, at what cost."""
    release = document["release"]
    dims, measures = _dimensions(release), _measures(release)
    cached = " (cached: nothing charged)" if release.get("cached") else ""
    table = Table(
        *dims,
        *measures,
        title=f"{release['schema']} from {document['provider']['id']} "
        f"to {document['recipient']['id']}, release {release['release_id']}",
        caption=f"ε spent {release['epsilon_spent']:g}{cached}; budget left: "
        + _budget_left(release)
        + f"; ± is the {release.get('confidence', 0.95):.0%} accuracy",
    )
    cells = release["cells"]
    for cell in cells if max_rows is None else cells[:max_rows]:
        table.add_row(*(str(cell[d]) for d in dims), *(_shown(cell[m]) for m in measures))
    if max_rows is not None and len(cells) > max_rows:
        table.add_row(*(["…"] * (len(dims) + len(measures))))
    return table


def release_csv(document: dict[str, Any]) -> str:
    """One row per cell: the dimensions, then each measure with its accuracy."""
    release = document["release"]
    dims, measures = _dimensions(release), _measures(release)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*dims, *(f"{m}{suffix}" for m in measures for suffix in ("", "_accuracy"))])
    for cell in release["cells"]:
        values: list[Any] = [cell[d] for d in dims]
        for m in measures:
            values += [cell[m]["value"], cell[m]["accuracy"]]
        writer.writerow(values)
    return out.getvalue()


#: The dimension a curve runs along.
TIME_DIMENSION = "week"


@dataclass(frozen=True)
class Series:
    """The cells of one curve: every dimension fixed but the week, weeks in release order."""

    key: tuple[str, ...]  # the values of the other dimensions, in the release's order
    cells: tuple[dict[str, Any], ...]


def curves(document: dict[str, Any]) -> list[Series]:
    """The release's cells cut into one series per combination of the other dimensions
    (one per area, for a release by area and week), in the order they first appear;
    empty when the release has no week dimension, so there is no curve to draw."""
    release = document["release"]
    dims = _dimensions(release)
    if TIME_DIMENSION not in dims:
        return []
    others = [d for d in dims if d != TIME_DIMENSION]
    grouped: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for cell in release["cells"]:
        grouped.setdefault(tuple(str(cell[d]) for d in others), []).append(cell)
    return [Series(key, tuple(cells)) for key, cells in grouped.items()]


#: The type of a document this node rebuilt from its own store: never the signed bytes.
COPY_TYPE = "crisis-exchange/release-copy"


def provided_document(stored: StoredRelease, *, node_id: str, node_name: str) -> dict[str, Any]:
    """A release this node made, in the shape a partner received it, for the same converters.

    Rebuilt from the store (``Release.as_document``), so it is not what was signed: its type
    says so, and it carries no budget (what was left then is not what is left now).
    """
    from nodes.releases.document import Release

    release = Release.of(
        stored, node_id=node_id, budget=(), charged_micro=stored.epsilon_micro, cached=False
    )
    return {
        "type": COPY_TYPE,
        "signed": False,
        "provider": {"id": node_id, "name": node_name},
        "recipient": {"id": stored.partner_id},
        "release": release.as_document(),
    }


def rendered(
    document: dict[str, Any],
    kind: Rendering,
    *,
    registry: SchemaRegistry,
    week_system: WeekSystem,
    area_names: Mapping[str, str] | None = None,
) -> str:
    """A release document as text another tool reads: CSV, HXL-tagged CSV, or a FHIR R4
    MeasureReport whose weeks are read in ``week_system`` (the document does not name one).
    The one place the command line and the dashboard render releases."""
    if kind == "csv":
        return release_csv(document)
    schema_id = str(document["release"].get("schema", ""))
    schema = registry.get(schema_id) if schema_id in registry else None
    if kind == "hxl":
        return release_hxl(document, schema=schema, area_names=area_names)
    report = measure_report(document, week_system=week_system, schema=schema)
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"
