"""Property tests of the decision function over random policies, requests and dates.

* adding a red line never lets more through (a policy it contradicts does not load at all);
* removing an agreement never lets more through;
* an agreement outside its validity window never allows;
* no allowed decision reveals a measure, dimension, granularity or filter the agreement
  does not grant, nor anything a red line forbids.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nodes.directory import sample_gazetteer
from policies.decision import Decision, Denied, ReleaseRequest, decide_with_keys
from policies.document import (
    Agreement,
    Budget,
    DimensionRule,
    PolicyDocument,
    PolicyError,
    Privacy,
    RedLine,
    SchemaSettings,
)
from policies.keyspace import KeySpace
from policies.node_policy import NodePolicy, compile_policy
from policies.query import ReleaseQuery, area_level, split_group
from policies.window import shift
from schemas.codelists import CODE_LISTS
from schemas.model import FieldType
from schemas.periods import month_of_week
from schemas.registry import SchemaRegistry

REGISTRY = SchemaRegistry()
GAZETTEER = sample_gazetteer("XA")
SCHEMAS = ("weekly_epi@1", "line_list@1", "hospital_capacity@1", "humanitarian_sitrep@1")
PARTNERS = ("XB", "XC", "XD")
PURPOSES = ("alpha", "beta", "gamma")
MEASURES = sorted({m.name for s in REGISTRY for m in s.measures})
DIMENSIONS = sorted({d for s in REGISTRY for d in s.dimensions})
AREAS = sorted(GAZETTEER.codes)
DAYS = st.dates(dt.date(2025, 1, 1), dt.date(2027, 6, 30))
WEEKS = st.builds(lambda y, w: f"{y}-W{w:02d}", st.sampled_from([2025, 2026]), st.integers(1, 53))


def chain(code: str) -> list[str]:
    """The area and its ancestors."""
    out = [code]
    while (parent := GAZETTEER.by_code[out[-1]].parent) is not None:
        out.append(parent)
    return out


def compile_or_none(document: PolicyDocument) -> NodePolicy | None:
    try:
        return compile_policy(
            document,
            source="generated",
            node_id="XA",
            registry=REGISTRY,
            gazetteer=GAZETTEER,
            week_system="iso",
        )
    except PolicyError:
        return None


@st.composite
def dimension_rule(draw: st.DrawFn, schema_id: str, name: str) -> DimensionRule:
    schema = REGISTRY.get(schema_id)
    kind = schema.dimension_type(name)
    if kind == FieldType.AREA:
        return DimensionRule(level=draw(st.integers(0, 2)))
    if kind == FieldType.WEEK:
        return DimensionRule(period=draw(st.sampled_from([None, "week", "month"])))
    if not draw(st.booleans()):
        return DimensionRule()
    codelist = schema.codelist_of(name)
    assert codelist is not None
    codes = CODE_LISTS[codelist].ordered()
    slots = draw(st.lists(st.integers(-1, 2), min_size=len(codes), max_size=len(codes)))
    groups = {
        f"g{g}": tuple(c for c, s in zip(codes, slots, strict=True) if s == g)
        for g in sorted(set(slots) - {-1})
    }
    return DimensionRule(groups=groups or None)


@st.composite
def agreement(draw: st.DrawFn, index: int, partner: str, schema_id: str) -> Agreement:
    schema = REGISTRY.get(schema_id)
    names = [m.name for m in schema.measures]
    dims = draw(st.lists(st.sampled_from(schema.dimensions), unique=True))
    filterable = [d for d in dims if schema.dimension_type(d) in (FieldType.AREA, FieldType.CODE)]
    start = draw(DAYS)
    return Agreement(
        id=f"A{index}",
        partners=(partner,),
        schema=schema_id,
        measures=tuple(draw(st.lists(st.sampled_from(names), min_size=1, unique=True))),
        dimensions={d: draw(dimension_rule(schema_id, d)) for d in dims},
        filters=tuple(draw(st.lists(st.sampled_from(filterable), unique=True)))
        if filterable
        else (),
        embargo_days=draw(st.integers(0, 60)),
        purposes=tuple(draw(st.lists(st.sampled_from(PURPOSES), min_size=1, unique=True))),
        valid_from=start,
        valid_until=start + dt.timedelta(days=draw(st.integers(0, 400))),
        privacy=Privacy(epsilon=draw(st.sampled_from([0.1, 0.5, 1.0]))),
        budget=Budget(epsilon=5),
        max_cells=draw(st.sampled_from([50, 250_000])),
    )


RED_LINES = st.one_of(
    st.builds(
        lambda s, m: RedLine(id="new", schema=s, measures=(m,)),
        st.sampled_from([None, *SCHEMAS]),
        st.sampled_from(MEASURES),
    ),
    st.builds(
        lambda s, d: RedLine(id="new", schema=s, dimensions=(d,)),
        st.sampled_from([None, *SCHEMAS]),
        st.sampled_from(DIMENSIONS),
    ),
    st.builds(lambda a: RedLine(id="new", areas=(a,)), st.sampled_from(AREAS)),
    st.builds(lambda s: RedLine(id="new", schema=s), st.sampled_from(SCHEMAS)),
)


@st.composite
def documents(draw: st.DrawFn) -> PolicyDocument:
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(PARTNERS[:2]), st.sampled_from(SCHEMAS)),
            unique=True,
            max_size=4,
        )
    )
    agreements = tuple(draw(agreement(i, p, s)) for i, (p, s) in enumerate(pairs))
    red_lines = tuple(
        RedLine(id=f"R{i}", areas=(a,))
        for i, a in enumerate(draw(st.lists(st.sampled_from(AREAS), max_size=1)))
    )
    budgets = {s: SchemaSettings(global_budget=Budget(epsilon=20)) for s in SCHEMAS}
    return PolicyDocument(
        version=1, node="XA", red_lines=red_lines, schemas=budgets, agreements=agreements
    )


@st.composite
def requests(draw: st.DrawFn) -> tuple[ReleaseRequest, dt.datetime]:
    schema = REGISTRY.get(draw(st.sampled_from(SCHEMAS)))
    names = [m.name for m in schema.measures]
    grains = st.sampled_from([None, "adm0", "adm1", "adm2", "week", "month", "x"])
    dims = draw(st.lists(st.sampled_from(schema.dimensions), unique=True, max_size=3))
    group_by = []
    for d in dims:
        grain = draw(grains)
        group_by.append(d if grain is None else f"{d}:{grain}")
    values = st.sampled_from([*AREAS[:6], "0-4", "65+", "g0", "g1", "female", "idp"])
    filters = draw(
        st.dictionaries(
            st.sampled_from(schema.dimensions), st.lists(values, min_size=1, max_size=2), max_size=2
        )
    )
    query = ReleaseQuery(
        schema_id=schema.id,
        measures=tuple(draw(st.lists(st.sampled_from(names), unique=True, max_size=2))),
        group_by=tuple(group_by),
        filters={k: tuple(v) for k, v in filters.items()},
        since=draw(st.none() | WEEKS),
        until=draw(st.none() | WEEKS),
        purpose=draw(st.none() | st.sampled_from(PURPOSES)),
    )
    now = dt.datetime.combine(draw(DAYS), dt.time(12), tzinfo=dt.UTC)
    return ReleaseRequest(draw(st.sampled_from(PARTNERS)), query), now


@st.composite
def fitting_request(
    draw: st.DrawFn, document: PolicyDocument
) -> tuple[ReleaseRequest, dt.datetime]:
    """Mostly a request shaped by one of the document's agreements (so that many are
    allowed and the properties bite), sometimes one drawn at random."""
    if not document.agreements or draw(st.integers(0, 4)) == 0:
        return draw(requests())
    chosen = draw(st.sampled_from(document.agreements))
    schema = REGISTRY.get(chosen.schema_id)
    group_by: list[str] = []
    dims = (
        draw(st.lists(st.sampled_from(list(chosen.dimensions)), unique=True, max_size=3))
        if chosen.dimensions
        else []
    )
    for name in dims:
        rule = chosen.dimensions[name]
        kind = schema.dimension_type(name)
        if kind == FieldType.AREA:
            grain = draw(st.sampled_from([None, f"adm{rule.level}", "adm0", "adm2"]))
        elif kind == FieldType.WEEK:
            grain = draw(st.sampled_from([None, "week", "month"]))
        else:
            grain = None
        group_by.append(name if grain is None else f"{name}:{grain}")
    filters: dict[str, tuple[str, ...]] = {}
    for name in (
        draw(st.lists(st.sampled_from(chosen.filters), unique=True)) if chosen.filters else []
    ):
        rule = chosen.dimensions[name]
        codelist = schema.codelist_of(name)
        if schema.dimension_type(name) == FieldType.AREA:
            assert rule.level is not None
            fits = [c for c in AREAS if GAZETTEER.by_code[c].level <= rule.level]
            anything = AREAS
        else:
            assert codelist is not None
            fits = list(rule.groups or CODE_LISTS[codelist].ordered())
            anything = [*fits, *CODE_LISTS[codelist].ordered()]
        values = st.sampled_from(fits) | st.sampled_from(fits) | st.sampled_from(anything)
        filters[name] = tuple(draw(st.lists(values, min_size=1, max_size=2, unique=True)))
    query = ReleaseQuery(
        schema_id=schema.id,
        measures=tuple(draw(st.lists(st.sampled_from(chosen.measures), unique=True, max_size=2))),
        group_by=tuple(group_by),
        filters=filters,
        since=draw(st.one_of(st.none(), st.none(), WEEKS)),
        until=draw(st.one_of(st.none(), st.none(), WEEKS)),
        purpose=draw(st.sampled_from(chosen.purposes)),
    )
    day = draw(st.dates(chosen.valid_from, chosen.valid_until))
    return ReleaseRequest(chosen.partners[0], query), dt.datetime.combine(day, dt.time(12), dt.UTC)


def lets_through(
    weaker: tuple[Decision, KeySpace | None], stronger: tuple[Decision, KeySpace | None]
) -> None:
    """Whatever the stronger policy allows, the weaker allows too, and no less of it."""
    decision, keys = stronger
    if not decision.allowed:
        return
    base, base_keys = weaker
    assert base.allowed, (decision.reasons, base.reasons)
    assert base.effective == decision.effective
    assert base.cost == decision.cost
    assert keys is not None
    assert base_keys is not None
    assert len(keys.columns) >= len(base_keys.columns)
    base_columns = {c.name: c for c in base_keys.columns}
    for column in keys.columns:
        if column.name in base_columns:  # every stored value that counts, counted before
            assert set(column.positions) <= set(base_columns[column.name].positions)
    for axis, base_axis in zip(keys.axes, base_keys.axes, strict=True):
        assert set(axis.keys) <= set(base_axis.keys)


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(documents(), RED_LINES, st.data())
def test_adding_a_red_line_never_lets_more_through(
    document: PolicyDocument, red: RedLine, data: st.DataObject
) -> None:
    asked = data.draw(st.lists(fitting_request(document), min_size=1, max_size=8))
    policy = compile_or_none(document)
    assume(policy is not None)
    assert policy is not None
    stricter = compile_or_none(
        document.model_copy(update={"red_lines": (*document.red_lines, red)})
    )
    if stricter is None:
        return  # the red line contradicts an agreement: the node would not start at all
    for request, now in asked:
        lets_through(
            decide_with_keys(request, policy, now), decide_with_keys(request, stricter, now)
        )


@FAST
@given(documents(), st.integers(0, 3), st.data())
def test_removing_an_agreement_never_lets_more_through(
    document: PolicyDocument, index: int, data: st.DataObject
) -> None:
    assume(index < len(document.agreements))
    asked = data.draw(st.lists(fitting_request(document), min_size=1, max_size=8))
    policy = compile_or_none(document)
    assume(policy is not None)
    assert policy is not None
    kept = tuple(a for i, a in enumerate(document.agreements) if i != index)
    fewer = compile_or_none(document.model_copy(update={"agreements": kept}))
    assert fewer is not None
    for request, now in asked:
        lets_through(decide_with_keys(request, policy, now), decide_with_keys(request, fewer, now))


@FAST
@given(documents(), st.data())
def test_allowed_decisions_stay_inside_their_agreement(
    document: PolicyDocument, data: st.DataObject
) -> None:
    asked = data.draw(st.lists(fitting_request(document), min_size=1, max_size=8))
    policy = compile_or_none(document)
    assume(policy is not None)
    assert policy is not None
    for request, now in asked:
        decision = decide_with_keys(request, policy, now)[0]
        if not decision.allowed:
            assert isinstance(decision, Denied)  # no effective query, no charges
            continue
        agreement = next(a for a in document.agreements if a.id == decision.agreement_id)
        assert request.partner_id in agreement.partners
        assert agreement.valid_from <= now.date() <= agreement.valid_until  # never expired
        effective = decision.effective
        assert effective is not None
        assert decision.cost is not None
        assert set(effective.measures) <= set(agreement.measures)
        assert effective.purpose in agreement.purposes
        assert set(effective.filters) <= set(agreement.filters)
        for name, values in effective.filters.items():
            rule = agreement.dimensions[name]
            if rule.level is not None:  # a filter is no finer than a grouping may be
                assert all(GAZETTEER.by_code[v].level <= rule.level for v in values)
            elif rule.groups is not None:
                assert set(values) <= set(rule.groups)
        for item in effective.group_by:
            name, grain = split_group(item)
            rule = agreement.dimensions[name]  # KeyError = a dimension outside the agreement
            if rule.level is not None:
                assert grain is not None
                assert area_level(grain) <= rule.level
            if rule.period == "month":
                assert grain == "month"
            if rule.groups is not None:
                assert effective.code_groups[name] == rule.groups
        keys = decide_with_keys(request, policy, now)[1]
        assert keys is not None
        for code in policy.red_areas(effective.schema_id):
            inside = {c for c in AREAS if code in chain(c)}  # the area and all within it
            assert not inside & {k for axis in keys.axes for k in axis.keys}
            assert not {code, *inside, *chain(code)} & {
                v for column in keys.columns for v in column.positions
            }
        week_rule = agreement.dimensions.get("week")
        if week_rule is None or week_rule.period == "month":  # ranges of whole months only
            assert month_of_week(effective.since, "iso") != month_of_week(
                shift(effective.since, -1, "iso"), "iso"
            )
            assert month_of_week(effective.until, "iso") != month_of_week(
                shift(effective.until, 1, "iso"), "iso"
            )
        for red in policy.red_lines_for(effective.schema_id):
            assert not red.whole_schema
            assert not set(red.measures) & set(effective.measures)
            assert not set(red.dimensions) & {*effective.dimensions, *effective.filters}
        assert decision.cost.epsilon_micro <= round(agreement.privacy.epsilon * 1_000_000)
        assert decision.cells <= agreement.max_cells


@FAST
@given(documents(), st.data())
def test_after_every_sunset_nothing_is_allowed(
    document: PolicyDocument, data: st.DataObject
) -> None:
    asked = data.draw(st.lists(fitting_request(document), min_size=1, max_size=8))
    policy = compile_or_none(document)
    assume(policy is not None and document.agreements)
    assert policy is not None
    last = max(a.valid_until for a in document.agreements)
    for request, now in asked:
        after = max(now, dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), dt.UTC))
        decision = decide_with_keys(request, policy, after)[0]
        assert not decision.allowed
