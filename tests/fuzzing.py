"""What the schemathesis tests share: the checks a case's own token makes meaningless."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.checks import negative_data_rejection


def checks_voided_by_our_token(case: schemathesis.Case) -> list[Any]:
    """The tests send a valid ``Authorization`` with every case. A negative case whose only
    invalid part was that header (left out, or malformed) is therefore valid as sent, and its
    acceptance is no finding: leave out the check that expects a refusal."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return []
    data = meta.phase.data
    negated = [getattr(data, "parameter", None)]
    negated += [getattr(m, "parameter", None) for m in getattr(data, "mutations", None) or ()]
    if "Authorization" in negated:
        return [negative_data_rejection]
    return []
