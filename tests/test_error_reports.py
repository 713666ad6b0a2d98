"""Row errors are complete and readable: every row checked, sorted, each once, file numbering."""

from __future__ import annotations

import pytest

from exchange.api.bodies import parse_report
from nodes.node import Node
from schemas.columns import ErrorLog
from schemas.errors import ROW_MESSAGES
from schemas.validation import ReportValidationError, from_csv_rows, from_json_rows
from tests.samples import WEEKLY_HEADER, as_csv, weekly_rows


def refused(call: object) -> ReportValidationError:
    assert callable(call)
    with pytest.raises(ReportValidationError) as caught:
        call()
    return caught.value


def test_the_log_keeps_the_first_errors_by_row_and_field_after_sorting() -> None:
    log = ErrorLog(3)
    for row, name in [(9, "sex"), (4, "week"), (7, "area"), (4, "cases"), (2, "week"), (8, "a")]:
        log.add(row, name, "v", "not_in_codelist")
    assert [(e.row, e.field) for e in log.items] == [(2, "week"), (4, "cases"), (4, "week")]
    assert log.total == 6


def test_the_log_reports_each_error_once() -> None:
    log = ErrorLog(10)
    for _ in range(3):
        log.add(5, "sex", "x", "not_in_codelist")
    log.add(5, "sex", "x", "value_required")
    assert [(e.row, e.code) for e in log.items] == [(5, "not_in_codelist"), (5, "value_required")]
    assert log.total == 2


def test_the_log_maps_data_rows_to_file_lines() -> None:
    log = ErrorLog(10, [2, 5, 6])
    log.add(2, "week", "x", "not_a_week")
    assert log.items[0].row == 5
    assert log.row(3) == 6


def test_a_ragged_row_does_not_hide_the_other_rows(node: Node) -> None:
    schema = node.registry.get("weekly_epi@1")
    rows = [list(map(str, r.values())) for r in weekly_rows()]
    rows[1] = rows[1][:5]
    rows[4][3] = "x"
    rows[6].append("9")
    error = refused(lambda: from_csv_rows(schema, WEEKLY_HEADER, rows, node.validation))
    assert [(e.row, e.field, e.code) for e in error.errors] == [
        (3, "*", "ragged_row"),
        (6, "sex", "not_in_codelist"),
        (8, "*", "ragged_row"),
    ]
    assert error.errors[0].params == {"cells": 5, "expected": 8}
    assert error.errors[0].reason == "this row has 5 values; the header has 8"


def test_a_csv_of_only_ragged_rows_lists_them(node: Node) -> None:
    schema = node.registry.get("weekly_epi@1")
    error = refused(lambda: from_csv_rows(schema, WEEKLY_HEADER, [["a"], ["b"]], node.validation))
    assert [(e.row, e.code) for e in error.errors] == [(2, "ragged_row"), (3, "ragged_row")]


def test_json_rows_are_numbered_from_one_in_the_rows_array(node: Node) -> None:
    rows = weekly_rows()
    rows[0]["cases"] = "5"
    rows[3]["week"] = "2026-W1x"
    error = refused(
        lambda: from_json_rows(node.registry.get("weekly_epi@1"), rows, node.validation)
    )
    assert [(e.row, e.field, e.code) for e in error.errors] == [
        (1, "cases", "not_a_json_integer"),
        (4, "week", "not_a_week"),
    ]
    assert error.errors[0].reason == "cases must be a JSON integer, not string"


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
def test_csv_rows_are_the_files_lines_blank_lines_counted(node: Node, quoted: bool) -> None:
    lines = as_csv(weekly_rows()).splitlines()
    lines[3] = lines[3].replace("2026-W01", "2026-W77")
    if quoted:  # the careful path; a quoted value may span lines
        lines[1] = lines[1].replace("25-44", '"25-\n44"')
    body = "\n".join(["", lines[0], "", *lines[1:]]) + "\n"
    error = refused(
        lambda: parse_report(
            body.encode(), "text/csv", node.registry.get("weekly_epi@1"), node.validation
        )
    )
    found = [(e.row, e.field, e.code) for e in error.errors]
    if quoted:  # data row 1 starts on line 4 and ends on 5, so data row 3 is line 7
        assert found == [(4, "age_band", "not_in_codelist"), (7, "week", "no_such_week")]
    else:  # lines 1 and 3 are blank: data row 3 is line 6
        assert found == [(6, "week", "no_such_week")]


def test_the_cap_applies_after_sorting(node: Node) -> None:
    rows = weekly_rows(range(1, 30))
    for row in rows:
        row["sex"] = "x"
    rows[-1]["area"] = "XA-NOPE"
    schema = node.registry.get("weekly_epi@1")
    error = refused(lambda: from_json_rows(schema, rows, node.validation))
    assert error.total == len(rows) + 1
    assert len(error.errors) == 100
    assert [e.row for e in error.errors] == list(range(1, 101))


def test_every_code_has_a_sentence_and_codes_are_snake_case() -> None:
    assert all(code.replace("_", "").isalpha() and code.islower() for code in ROW_MESSAGES)
    assert {"not_in_codelist", "not_an_integer", "ragged_row"} <= set(ROW_MESSAGES)
