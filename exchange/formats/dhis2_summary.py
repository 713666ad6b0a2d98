"""What DHIS2 answers to ``POST /api/dataValueSets``: counts, and the web message around them.

The counts are of data values, as DHIS2 counts them: a value of a cell the node does not
hold yet is ``imported``, one that changes a current cell is ``updated``, one equal to the
current value is ``ignored`` (and so is every value of a set with conflicts: nothing of it
is stored). The comparison is with the cells' current values, not with an earlier report,
so after a correction the original sent again counts as updates and becomes current again.

The envelope is DHIS2's ``WebMessage`` (2.38 and later): 200 with ``status: OK`` when the
import went through, 409 ``Conflict`` with ``status: ERROR`` when it did not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import compress
from typing import Any

from exchange.formats.dhis2 import Converted, IdSchemes
from exchange.formats.dhis2_conflicts import MAX_CONFLICTS, ConflictLog
from schemas.validation import Batch

Cell = tuple[object, ...]


@dataclass(frozen=True)
class Counts:
    imported: int = 0
    updated: int = 0
    ignored: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class Comparison:
    counts: Counts
    changed: Batch | None  # the rows to store: new or different cells; None if none


def compare(converted: Converted, current: Mapping[Cell, Cell]) -> Comparison:
    """Count the values against the current cells and keep only the rows that change."""
    batch = converted.batch
    schema = batch.schema
    n = converted.values
    if not current:
        return Comparison(Counts(imported=n), batch)
    keys = list(zip(*(batch.columns[k] for k in schema.cell_key), strict=True))
    names = [m.name for m in schema.measures]
    stated = list(zip(*(batch.columns[m] for m in names), strict=True))
    now = list(map(current.get, keys))
    keep = [c is None or c != s for c, s in zip(now, stated, strict=True)]
    position = {name: i for i, name in enumerate(names)}
    imported = updated = ignored = 0
    cells = converted.cells
    for cell, measure in zip(cells.cells(), cells.measures, strict=True):
        was = now[cell]
        if was is None:
            imported += 1
        elif was[position[measure]] == stated[cell][position[measure]]:
            ignored += 1
        else:
            updated += 1
    counts = Counts(imported=imported, updated=updated, ignored=ignored)
    rows = sum(keep)
    if rows == 0:
        return Comparison(counts, None)
    if rows == batch.rows:
        return Comparison(counts, batch)
    columns = {name: list(compress(column, keep)) for name, column in batch.columns.items()}
    return Comparison(
        counts,
        Batch(schema=schema, columns=columns, rows=rows, gazetteer=batch.gazetteer),
    )


def import_summary(
    *,
    counts: Counts,
    log: ConflictLog | None,
    description: str,
    schemes: IdSchemes,
    dry_run: bool,
    failed: bool,
) -> tuple[int, dict[str, Any]]:
    """The HTTP status and DHIS2 web message of an import's outcome."""
    conflicts = [c.as_json() for c in log.conflicts()] if log else []
    summary: dict[str, Any] = {
        "responseType": "ImportSummary",
        "status": "ERROR" if failed else "SUCCESS",
        "importOptions": {
            "idSchemes": {
                "dataElementIdScheme": schemes.data_element,
                "orgUnitIdScheme": schemes.org_unit,
                "categoryOptionComboIdScheme": schemes.category_option_combo,
                "idScheme": schemes.other,
            },
            "dryRun": dry_run,
            "async": False,
            "importStrategy": "CREATE_AND_UPDATE",
            "atomicMode": "ALL",
        },
        "description": description,
        "importCount": {
            "imported": counts.imported,
            "updated": counts.updated,
            "ignored": counts.ignored,
            "deleted": counts.deleted,
        },
        "conflicts": conflicts,
        "rejectedIndexes": sorted(log.rejected) if log else [],
        "dataSetComplete": "false",
    }
    if failed:
        return 409, {
            "httpStatus": "Conflict",
            "httpStatusCode": 409,
            "status": "ERROR",
            "message": "An error occurred, please check import summary.",
            "response": summary,
        }
    return 200, {
        "httpStatus": "OK",
        "httpStatusCode": 200,
        "status": "OK",
        "message": "Import was successful.",
        "response": summary,
    }


def conflicts_description(log: ConflictLog, values: int) -> str:
    shown = len(log.conflicts())
    more = (
        f" (the first {MAX_CONFLICTS} are listed; {log.left_out} more were found)"
        if log.left_out
        else ""
    )
    return (
        f"Import was refused: {shown + log.left_out} conflict(s){more}. A data value set is "
        f"stored whole or not at all, so none of its {values} data values was stored; fix "
        "every conflict and send the set again"
    )


def refusal(
    reason: str, *, values: int, schemes: IdSchemes, dry_run: bool
) -> tuple[int, dict[str, Any]]:
    """A set refused as a whole (a parameter, an unreadable body): no conflicts, the reason."""
    return import_summary(
        counts=Counts(ignored=values),
        log=ConflictLog(),
        description=f"The import process failed: {reason}",
        schemes=schemes,
        dry_run=dry_run,
        failed=True,
    )
