"""Turning ``--by``, ``--measures`` and ``--filter`` options into a ReleaseQuery, the same way
for ``policy check`` (what would a partner get) and ``pull`` (what do we ask a peer for)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchange.cli.common import fail

if TYPE_CHECKING:
    from policies.query import ReleaseQuery


def split(values: list[str] | None) -> tuple[str, ...]:
    """``--by area:adm1 --by week`` and ``--by area:adm1,week`` mean the same."""
    return tuple(
        part.strip() for value in values or () for part in value.split(",") if part.strip()
    )


def filters(values: list[str] | None) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for item in values or ():
        name, sep, listed = item.partition("=")
        if not sep or not listed:
            fail(f"--filter {item!r}: write DIMENSION=VALUE[,VALUE...], e.g. area=XA-P1")
        found[name.strip()] = found.get(name.strip(), ()) + split([listed])
    return found


def build_query(
    *,
    schema: str,
    measures: list[str] | None,
    by: list[str] | None,
    filter_: list[str] | None,
    since: str | None,
    until: str | None,
    purpose: str | None,
) -> ReleaseQuery:
    """The query the options describe, or one red line saying which option is wrong."""
    from pydantic import ValidationError

    from policies.query import ReleaseQuery

    try:
        return ReleaseQuery(
            schema_id=schema,
            measures=split(measures),
            group_by=split(by),
            filters=filters(filter_),
            since=since,
            until=until,
            purpose=purpose,
        )
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
