"""A release as a FHIR R4 ``MeasureReport``: what hospital and public-health systems read.

One summary report per release, one group per measure, one stratifier whose components are
the released dimensions, one stratum per cell. A noisy count is only honest with its error
bar, so the 95% accuracy, the noise scale, the mechanism and the ε travel as extensions
(declared in docs/formats.md under ``BASE``); a suppressed cell carries FHIR's own
``data-absent-reason`` (``masked``) and no value, never a zero that a reader would add up.

The release document does not say which week numbering (ISO or MMWR) its weeks use, so the
caller names it: the node's own setting for its releases, and for a received one the
setting the federation shares (it is recorded in the report, so a reader sees the guess).
Plain dicts, standard library only: the official models check them in the tests.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from schemas.codelists import CODE_LISTS
from schemas.model import ReportSchema
from schemas.periods import WeekSystem, week_start

#: The canonical base of everything this profile names (an identifier, not a download).
BASE = "https://crisis-exchange.org/fhir"
EXTENSION = f"{BASE}/StructureDefinition"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
GENDER = "http://hl7.org/fhir/administrative-gender"
NODE_SYSTEM = f"{BASE}/node"


def measure_canonical(schema_id: str) -> str:
    """``weekly_epi@1`` -> ``{BASE}/Measure/weekly_epi|1`` (a versioned canonical)."""
    name, _, version = schema_id.partition("@")
    return f"{BASE}/Measure/{name}" + (f"|{version}" if version else "")


def _ext(name: str, kind: str, value: Any) -> dict[str, Any]:
    return {"url": f"{EXTENSION}/{name}", f"value{kind}": value}


def _present(extensions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Extensions whose value the release states (an extension never holds null)."""
    return [e for e in extensions if all(v is not None for v in e.values())]


def _period(query: dict[str, Any], week_system: WeekSystem) -> dict[str, str]:
    since, until = query.get("since"), query.get("until")
    if not since or not until:
        raise ValueError("the release names no week range (query.since and query.until)")
    start = week_start(str(since), week_system)
    end = week_start(str(until), week_system) + dt.timedelta(days=6)
    return {"start": start.isoformat(), "end": end.isoformat()}


def _code_system(dimension: str, grain: str | None, week_system: WeekSystem) -> str:
    if dimension == "sex":
        return GENDER  # our sex codes are FHIR's administrative gender codes
    if dimension == "week":
        return f"{BASE}/CodeSystem/" + ("month" if grain == "month" else f"epi-week-{week_system}")
    return f"{BASE}/CodeSystem/{dimension}"


def _display(schema: ReportSchema | None, dimension: str, value: str) -> str | None:
    codelist = schema.codelist_of(dimension) if schema else None
    if codelist is None or value not in CODE_LISTS[codelist].values():
        return None
    return CODE_LISTS[codelist].get(value).label.en


def _concept(system: str, code: str, display: str | None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding], "text": display or code}


def _grains(query: dict[str, Any]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in query.get("group_by", []):
        name, _, grain = str(item).partition(":")
        out[name] = grain or None
    return out


def _label(schema: ReportSchema | None, name: str) -> str | None:
    if schema is None:
        return None
    if name in schema.measure_by_name:
        return schema.measure_by_name[name].label.en
    field = schema.field_by_name.get(name)
    return field.label.en if field else None


def _score(cell: dict[str, Any], unit: str | None) -> dict[str, Any]:
    if cell.get("suppressed") or cell.get("value") is None:
        return {"extension": [{"url": DATA_ABSENT, "valueCode": "masked"}]}
    score: dict[str, Any] = {"value": cell["value"]}
    if unit:
        score["unit"] = unit
    return score


def _group(
    release: dict[str, Any],
    measure: str,
    schema: ReportSchema | None,
    week_system: WeekSystem,
) -> dict[str, Any]:
    dims = [str(d) for d in release.get("dimensions", [])]
    grains = _grains(release.get("query", {}))
    known = schema.measure_by_name.get(measure) if schema else None
    unit = known.unit if known else None
    extensions = [
        _ext("accuracy", "Decimal", release.get("accuracy", {}).get(measure)),
        _ext("confidence", "Decimal", release.get("confidence")),
        _ext("noise-scale", "Decimal", release.get("scale", {}).get(measure)),
        _ext("noise-mechanism", "Code", release.get("mechanism")),
    ]
    if known is not None:
        extensions.append(_ext("measure-kind", "Code", str(known.kind)))
    strata = []
    for cell in release.get("cells", []):
        components = []
        for d in dims:
            value = str(cell[d])
            system = _code_system(d, grains.get(d), week_system)
            components.append(
                {
                    "code": _concept(f"{BASE}/CodeSystem/dimension", d, _label(schema, d)),
                    "value": _concept(system, value, _display(schema, d, value)),
                }
            )
        strata.append(
            {
                "extension": _present([_ext("accuracy", "Decimal", cell[measure].get("accuracy"))]),
                "component": components,
                "measureScore": _score(cell[measure], unit),
            }
        )
    stratifier = {
        "code": [_concept(f"{BASE}/CodeSystem/dimension", d, _label(schema, d)) for d in dims],
        "stratum": strata,
    }
    return {
        "extension": _present(extensions),
        "code": _concept(f"{BASE}/CodeSystem/measure", measure, _label(schema, measure)),
        "stratifier": [stratifier] if dims else [],
    }


def _fhir_id(text: str) -> str:
    """FHIR ids are ``[A-Za-z0-9\\-.]{1,64}``."""
    cleaned = "".join(c if (c.isalnum() and c.isascii()) or c in "-." else "-" for c in text)
    return cleaned[:64] or "release"


def measure_report(
    document: dict[str, Any],
    *,
    week_system: WeekSystem,
    schema: ReportSchema | None = None,
) -> dict[str, Any]:
    """The release ``document`` (``{"provider", "recipient", "release"}``) as a JSON-ready
    R4 MeasureReport. ``schema`` adds labels, units and code displays when this node knows
    the release's schema. Raises ValueError when the release names no week range.
    """
    release = document["release"]
    provider = document.get("provider", {})
    recipient = document.get("recipient", {})
    provider_id = str(provider.get("id", release.get("node_id", "")))
    release_id = str(release["release_id"])
    query = release.get("query", {})
    extensions = [
        _ext("epsilon-spent", "Decimal", release.get("epsilon_spent")),
        _ext("release-epsilon", "Decimal", release.get("release_epsilon")),
        _ext("delta", "Decimal", release.get("delta")),
        _ext("policy-hash", "String", release.get("policy_hash")),
        _ext("cached", "Boolean", release.get("cached")),
        _ext("week-system", "Code", week_system),
        _ext("purpose", "Code", query.get("purpose")),
    ]
    recipient_id = recipient.get("id", release.get("partner_id"))
    if recipient_id:
        extensions.append(
            _ext("recipient", "Identifier", {"system": NODE_SYSTEM, "value": str(recipient_id)})
        )
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "id": _fhir_id(f"{provider_id}-release-{release_id}"),
        "extension": _present(extensions),
        "identifier": [
            {"system": f"{NODE_SYSTEM}/{quote(provider_id, safe='')}/release", "value": release_id}
        ],
        "status": "complete",
        "type": "summary",
        "measure": measure_canonical(str(release.get("schema", ""))),
        "date": release.get("created_at"),
        "reporter": {
            "type": "Organization",
            "identifier": {"system": NODE_SYSTEM, "value": provider_id},
            "display": str(provider.get("name") or provider_id),
        },
        "period": _period(query, week_system),
        "group": [
            _group(release, str(m), schema, week_system) for m in release.get("measures", [])
        ],
    }
    if report["date"] is None:
        del report["date"]
    return report
