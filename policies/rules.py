"""One agreement against one request: every rule that can refuse it, and the effective query.

`AgreementCheck` walks the request (measures, groupings, filters, weeks, stocks, purpose),
collecting every problem as a sentence naming the agreement or red line that refuses it,
and the notes of what it changed (the embargo, month alignment, red-lined areas left out).
Only a request with no problem yields an `EffectiveQuery`; it never holds a measure,
dimension or filter the agreement does not list, nor one a red line forbids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from policies.document import Agreement, DimensionRule
from policies.node_policy import NodePolicy
from policies.query import EffectiveQuery, ReleaseQuery, area_level, split_group
from policies.window import last_releasable_week, window
from schemas.codelists import CODE_LISTS
from schemas.model import FieldType, MeasureKind, StockOverTimeError
from schemas.periods import InvalidWeekError, parse_week, weeks_between


def _listing(items: Iterable[object]) -> str:
    values = [str(i) for i in items]
    return ", ".join(values) if values else "none"


class AgreementCheck:
    def __init__(
        self,
        partner_id: str,
        query: ReleaseQuery,
        policy: NodePolicy,
        agreement: Agreement,
        now: dt.datetime,
    ) -> None:
        self.partner_id = partner_id
        self.query = query
        self.policy = policy
        self.agreement = agreement
        self.now = now
        self.schema = policy.registry.get(query.schema_id)
        self.rule = f"agreement {agreement.id}"
        self._problems: list[str] = []
        self._red_lines: list[str] = []
        self._notes: list[str] = []
        self._groups: dict[str, dict[str, tuple[str, ...]]] = {}

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(self._problems)

    @property
    def red_lines(self) -> tuple[str, ...]:
        """The red lines the request ran into, in the order found: the rules that refuse it
        whatever the agreement says."""
        return tuple(self._red_lines)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self._notes)

    def effective(self) -> EffectiveQuery | None:
        """The effective query, or None (and `problems` says why) if anything is refused."""
        measures = self._measures()
        group_by = self._group_by()
        filters = self._filters()
        weeks = self._weeks(group_by)
        purpose = self._purpose()
        if self._problems or weeks is None or purpose is None:
            return None
        since, until = weeks
        self._stocks(measures, group_by, since, until)
        if self._problems:
            return None
        self._notes.insert(0, self._summary(measures, group_by, purpose))
        for red in self.policy.red_lines_for(self.schema.id):
            if red.areas:
                self._notes.append(
                    f"red line {red.id}: data of {_listing(red.areas)} never leaves; it is "
                    "left out of every total"
                )
        return EffectiveQuery(
            schema_id=self.schema.id,
            measures=measures,
            group_by=group_by,
            filters=filters,
            since=since,
            until=until,
            purpose=purpose,
            code_groups=self._groups,
        )

    def _summary(self, measures: tuple[str, ...], group_by: tuple[str, ...], purpose: str) -> str:
        by = f"by {_listing(group_by)}" if group_by else "as totals"
        return (
            f"{self.rule} allows {self.partner_id} to receive {_listing(measures)} of "
            f"{self.schema.id} {by}, for {purpose}, until {self.agreement.valid_until}"
        )

    def _refused_by_red_line(self, kind: str, name: str) -> bool:
        find = self.policy.measure_red_line if kind == "measure" else self.policy.dimension_red_line
        red = find(self.schema.id, name)
        if red is not None:
            self._problems.append(f"red line {red.id}: {kind} {name} never leaves")
            self._red_lines.append(red.id)
        return red is not None

    def _measures(self) -> tuple[str, ...]:
        asked = self.query.measures or self.agreement.measures
        for name in asked:
            if name not in self.schema.measure_by_name:
                self._problems.append(f"{self.schema.id} has no measure {name}")
            elif self._refused_by_red_line("measure", name):
                continue
            elif name not in self.agreement.measures:
                self._problems.append(
                    f"{self.rule} allows measures {_listing(self.agreement.measures)}, "
                    f"the request asked for {name}"
                )
        return tuple(m.name for m in self.schema.measures if m.name in asked)

    def _dimension_rule(self, name: str, verb: str) -> DimensionRule | None:
        """The agreement's rule for a dimension the request uses, or None with a problem."""
        allowed = self.agreement.dimensions
        if name not in self.schema.dimensions:
            self._problems.append(f"{self.schema.id} has no dimension {name}")
        elif not self._refused_by_red_line("dimension", name):
            if name in allowed:
                return allowed[name]
            self._problems.append(
                f"{self.rule} does not let {self.partner_id} {verb} {name}; it allows "
                f"grouping by {_listing(allowed)}"
            )
        return None

    def _group_by(self) -> tuple[str, ...]:
        chosen: dict[str, str] = {}
        for item in self.query.group_by:
            name, grain = split_group(item)
            rule = self._dimension_rule(name, "group by")
            if rule is not None:
                canonical = self._granularity(name, grain, rule)
                if canonical is not None:
                    chosen[name] = canonical
        return tuple(chosen[d] for d in self.schema.dimensions if d in chosen)

    def _granularity(self, name: str, grain: str | None, rule: DimensionRule) -> str | None:
        kind = self.schema.dimension_type(name)
        if kind == FieldType.AREA:
            allowed = rule.level if rule.level is not None else 0
            try:
                asked = allowed if grain is None else area_level(grain)
            except ValueError as exc:
                self._problems.append(str(exc))
                return None
            if asked > allowed:
                self._problems.append(
                    f"{self.rule} allows admin level {allowed}, the request asked for admin "
                    f"level {asked}"
                )
                return None
            return f"{name}:adm{asked}"
        if kind == FieldType.WEEK:
            allowed_period = rule.period or "week"
            asked_period = grain or allowed_period
            if asked_period not in ("week", "month"):
                self._problems.append(f"'{grain}' is not a period; write {name}:week or :month")
                return None
            if asked_period == "week" and allowed_period == "month":
                self._problems.append(
                    f"{self.rule} allows whole months only, the request asked for weeks"
                )
                return None
            return f"{name}:{asked_period}"
        if grain is not None:
            self._problems.append(f"{name} takes no granularity; the agreement sets its groups")
            return None
        if rule.groups is not None:
            self._groups[name] = rule.groups
        return name

    def _filters(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for name, values in sorted(self.query.filters.items()):
            if name in self.schema.dimensions and name not in self.agreement.filters:
                if not self._refused_by_red_line("dimension", name):
                    self._problems.append(
                        f"{self.rule} does not let {self.partner_id} filter by {name}; it "
                        f"allows filters on {_listing(self.agreement.filters)}"
                    )
                continue
            rule = self._dimension_rule(name, "filter by")
            if rule is None:
                continue
            if self.schema.dimension_type(name) == FieldType.AREA:
                self._area_filter(values, rule)
            else:
                self._code_filter(name, values, rule)
            out[name] = tuple(sorted(set(values)))
        return out

    def _area_filter(self, values: tuple[str, ...], rule: DimensionRule) -> None:
        gazetteer = self.policy.gazetteer
        allowed = rule.level if rule.level is not None else 0
        red = self.policy.red_areas(self.schema.id)
        for code in values:
            area = gazetteer.by_code.get(code)
            if area is None:
                self._problems.append(
                    f"area {code} is not in node {self.policy.node_id}'s gazetteer"
                )
            elif area.level > allowed:
                self._problems.append(
                    f"{self.rule} allows admin level {allowed}, the filter names {code} at "
                    f"admin level {area.level}"
                )
            elif code in red:
                self._problems.append(f"red line {red[code].id}: area {code} never leaves")
                self._red_lines.append(red[code].id)

    def _code_filter(self, name: str, values: tuple[str, ...], rule: DimensionRule) -> None:
        if rule.groups is not None:
            known: tuple[str, ...] = tuple(rule.groups)
            self._groups[name] = rule.groups
        else:
            codelist = self.schema.codelist_of(name)
            assert codelist is not None
            known = CODE_LISTS[codelist].ordered()
        for value in values:
            if value not in known:
                self._problems.append(
                    f"{value} is not a value of {name} that {self.rule} releases "
                    f"({_listing(known)})"
                )

    def _weeks(self, group_by: tuple[str, ...]) -> tuple[str, str] | None:
        system = self.policy.week_system
        parsed: list[str | None] = []
        for label, text in (("since", self.query.since), ("until", self.query.until)):
            try:
                parsed.append(None if text is None else parse_week(text, system))
            except InvalidWeekError as exc:
                self._problems.append(f"{label}: {exc}")
                return None
        days = self.agreement.embargo_days
        found = window(
            since=parsed[0],
            until=parsed[1],
            last_allowed=last_releasable_week(self.now.astimezone(dt.UTC).date(), days, system),
            monthly=self._monthly(group_by),
            embargo_rule=f"{self.rule} releases nothing newer than {days} days",
            system=system,
        )
        if found.empty:
            self._problems.append(
                f"nothing to release: once the embargo of {self.rule} ({days} days) and "
                f"whole periods apply, the range {found.since} to {found.until} is empty"
            )
            return None
        self._notes.extend(found.notes)
        return found.since, found.until

    def _monthly(self, group_by: tuple[str, ...]) -> bool:
        """Whole months, unless the agreement allows weeks: otherwise two ranges a week apart
        would reveal a week by difference, whether or not the request groups by week."""
        week = next(
            (d for d in self.schema.dimensions if self.schema.dimension_type(d) == FieldType.WEEK),
            None,
        )
        if week is None:
            return False
        rule = self.agreement.dimensions.get(week)
        allows_weeks = rule is not None and (rule.period or "week") == "week"
        return not allows_weeks or f"{week}:month" in group_by

    def _stocks(
        self, measures: tuple[str, ...], group_by: tuple[str, ...], since: str, until: str
    ) -> None:
        """A stock (beds occupied) summed over weeks means nothing: refuse it."""
        week = next(
            (d for d in self.schema.dimensions if self.schema.dimension_type(d) == FieldType.WEEK),
            None,
        )
        if week is None:
            return
        by_week = f"{week}:week" in group_by
        single = len(weeks_between(since, until, self.policy.week_system)) == 1
        for name in measures:
            if self.schema.measure_by_name[name].kind != MeasureKind.STOCK or by_week or single:
                continue
            try:
                self.schema.check_aggregation(name, week)
            except StockOverTimeError as exc:
                self._problems.append(f"{exc}; group by {week}, or ask for a single week")

    def _purpose(self) -> str | None:
        allowed = _listing(self.agreement.purposes)
        purpose = self.query.purpose
        if purpose is None:
            self._problems.append(f"{self.rule} allows purposes {allowed}; the request states none")
        elif purpose not in self.agreement.purposes:
            self._problems.append(
                f"{self.rule} allows purposes {allowed}; the request states {purpose}"
            )
        return purpose
