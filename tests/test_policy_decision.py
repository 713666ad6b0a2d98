"""decide(): deny by default, every rule that can refuse, and what an allowed decision says."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.decision import Decision, Denied, ReleaseRequest, decide
from policies.node_policy import NodePolicy, deny_all
from policies.query import ReleaseQuery
from schemas.registry import SchemaRegistry
from tests.release_support import NOW, policy_from_text, sample_policy_text


@pytest.fixture(scope="module")
def policy() -> NodePolicy:
    return policy_from_text(sample_policy_text())


def ask(
    policy: NodePolicy, partner: str = "XB", now: dt.datetime = NOW, **query: object
) -> Decision:
    fields: dict[str, object] = {"schema_id": "weekly_epi@1", "purpose": "outbreak_response"}
    fields.update(query)
    return decide(ReleaseRequest(partner, ReleaseQuery.model_validate(fields)), policy, now)


def denied(decision: Decision) -> str:
    assert not decision.allowed, decision.reasons
    assert isinstance(decision, Denied)  # a type with no effective query, cost or charges
    return decision.sentence


def test_an_allowed_decision_carries_effective_query_cost_and_charges(policy: NodePolicy) -> None:
    decision = ask(
        policy, measures=("cases",), group_by=("area", "week"), since="2026-W01", until="2026-W11"
    )
    assert decision.allowed
    assert decision.rule == "agreement XB-epi-2026"
    effective = decision.effective
    assert effective is not None
    assert effective.group_by == ("area:adm1", "week:week")
    assert (effective.since, effective.until) == ("2026-W01", "2026-W09")  # 14-day embargo
    assert decision.cells == 3 * 9  # provinces 1-3 (4 is red-lined) x 9 weeks
    assert decision.cost is not None
    assert decision.cost.epsilon_micro == 500_000
    (cases,) = decision.cost.measures
    assert cases.d_in == 2  # bound 1 x weeks_per_person 2
    assert cases.scale == pytest.approx(4.0)
    assert cases.accuracy == pytest.approx(12.45, abs=0.01)
    assert [(c.scope, c.partner_id, c.period, c.cap_micro) for c in decision.charges] == [
        ("partner", "XB", "2026", 10_000_000),
        ("global", "*", "2026", 20_000_000),
    ]
    assert decision.policy_hash == policy.hash
    assert any("nothing newer than 14 days" in r for r in decision.reasons)


def test_no_agreement_means_no(policy: NodePolicy) -> None:
    reason = denied(ask(policy, partner="XD"))
    assert reason == (
        "no agreement lets XD receive weekly_epi@1 from node XA; a node shares only what it "
        "has agreed to share"
    )


def test_a_node_without_policy_denies_everything(policy: NodePolicy) -> None:
    empty = deny_all(
        source="policy.yaml",
        node_id="XA",
        registry=SchemaRegistry(),
        gazetteer=policy.gazetteer,
        week_system="iso",
    )
    assert "has no policy file" in denied(ask(empty))


def test_the_diplomats_sentence(policy: NodePolicy) -> None:
    reason = denied(ask(policy, group_by=("area:adm2",)))
    assert (
        reason == "agreement XB-epi-2026 allows admin level 1, the request asked for admin level 2"
    )


def test_a_denial_lists_every_reason(policy: NodePolicy) -> None:
    decision = ask(
        policy,
        measures=("tests",),
        group_by=("area:2",),
        filters={"sex": ["male"]},
        purpose="trade",
    )
    assert decision.reasons == (
        "agreement XB-epi-2026 allows measures cases, deaths, admissions, the request asked for tests",
        "agreement XB-epi-2026 allows admin level 1, the request asked for admin level 2",
        "agreement XB-epi-2026 does not let XB filter by sex; it allows filters on area, age_band",
        "agreement XB-epi-2026 allows purposes outbreak_response, preparedness; the request states trade",
    )


def test_red_lines_are_named(policy: NodePolicy) -> None:
    assert "red line displacement-figures" in denied(ask(policy, schema_id="humanitarian_sitrep@1"))
    assert "red line border-province: area XA-P4 never leaves" in denied(
        ask(policy, filters={"area": ["XA-P4"]})
    )
    assert "red line case-outcomes: dimension outcome never leaves" in denied(
        ask(policy, schema_id="line_list@1", group_by=("outcome",))
    )


def test_a_red_line_is_the_rule_that_refuses(policy: NodePolicy) -> None:
    """Red lines override every agreement, so a refusal they cause names them, not the
    agreement whose check ran into them (the audit log's ``rule`` and the operator's page
    count refusals by it)."""
    by_area = ask(policy, filters={"area": ["XA-P4"]})
    assert not by_area.allowed
    assert by_area.rule == "red line border-province"
    by_dimension = ask(policy, schema_id="line_list@1", group_by=("outcome",))
    assert by_dimension.rule == "red line case-outcomes"
    beyond_the_agreement = ask(policy, group_by=("area:adm2",))
    assert beyond_the_agreement.rule == "agreement XB-epi-2026"


def test_case_based_rows_never_leave_only_counts(policy: NodePolicy) -> None:
    assert "has no dimension case_id" in denied(
        ask(policy, schema_id="line_list@1", group_by=("case_id",))
    )
    assert "has no dimension report_date" in denied(
        ask(policy, schema_id="line_list@1", group_by=("report_date",))
    )
    decision = ask(policy, schema_id="line_list@1", group_by=("area", "week:month"))
    assert decision.allowed
    assert decision.effective is not None
    assert decision.effective.measures == ("cases",)


def test_sunset_and_start_dates(policy: NodePolicy) -> None:
    last_day = dt.datetime(2026, 6, 30, 23, 59, tzinfo=dt.UTC)
    xc = {"partner": "XC", "purpose": "situational_awareness", "group_by": ("week:month",)}
    assert ask(policy, now=last_day, **xc).allowed  # type: ignore[arg-type]
    after = denied(ask(policy, now=last_day + dt.timedelta(minutes=1), **xc))  # type: ignore[arg-type]
    assert (
        after
        == "agreement XC-epi-2026 ended on 2026-06-30 (its sunset date) and no longer allows anything"
    )
    before = denied(ask(policy, now=dt.datetime(2025, 12, 31, tzinfo=dt.UTC), **xc))  # type: ignore[arg-type]
    assert before == "agreement XC-epi-2026 takes effect on 2026-01-01; it allows nothing before"


def test_purpose_must_be_stated_and_agreed(policy: NodePolicy) -> None:
    assert "the request states none" in denied(ask(policy, purpose=None))
    assert ask(policy, purpose="preparedness").allowed


def test_months_only_means_months_only(policy: NodePolicy) -> None:
    xc = {"partner": "XC", "purpose": "situational_awareness"}
    reason = denied(ask(policy, group_by=("week:week",), **xc))  # type: ignore[arg-type]
    assert reason == "agreement XC-epi-2026 allows whole months only, the request asked for weeks"
    # Defaulted granularity is the agreement's; XC gets national totals by month.
    decision = ask(policy, group_by=("area", "week"), **xc)  # type: ignore[arg-type]
    assert decision.effective is not None
    assert decision.effective.group_by == ("area:adm0", "week:month")


def test_monthly_ranges_cover_whole_months(policy: NodePolicy) -> None:
    xc = {"partner": "XC", "purpose": "situational_awareness", "group_by": ("week:month",)}
    later = dt.datetime(2026, 4, 15, tzinfo=dt.UTC)  # 28-day embargo: up to 2026-W11
    grown = ask(policy, now=later, since="2026-W03", until="2026-W06", **xc)  # type: ignore[arg-type]
    assert grown.effective is not None
    assert (grown.effective.since, grown.effective.until) == ("2026-W01", "2026-W09")
    assert grown.cells == 2  # January and February
    shrunk = ask(policy, now=later, since="2026-W01", **xc)  # type: ignore[arg-type]
    assert shrunk.effective is not None
    assert shrunk.effective.until == "2026-W09"  # March is not over before the embargo


def test_a_range_cannot_reveal_a_week_that_grouping_may_not(policy: NodePolicy) -> None:
    # XC may see months only: a one-week range of totals would be a weekly figure.
    xc = {"partner": "XC", "purpose": "situational_awareness"}
    later = dt.datetime(2026, 4, 15, tzinfo=dt.UTC)
    totals = ask(policy, now=later, since="2026-W07", until="2026-W07", **xc)  # type: ignore[arg-type]
    assert totals.effective is not None
    assert (totals.effective.since, totals.effective.until) == ("2026-W06", "2026-W09")
    # XB may see weeks: its ranges stay as asked.
    weekly = ask(policy, since="2026-W07", until="2026-W07")
    assert weekly.effective is not None
    assert weekly.effective.since == weekly.effective.until


def test_the_embargo_clamps_and_can_leave_nothing(policy: NodePolicy) -> None:
    clamped = ask(policy, since="2026-W05", until="2026-W11")
    assert clamped.effective is not None
    assert clamped.effective.until == "2026-W09"
    inside = ask(policy, since="2026-W05", until="2026-W08")
    assert inside.effective is not None
    assert inside.effective.until == "2026-W08"
    assert not any("embargo" in r or "newer" in r for r in inside.reasons)
    assert "nothing to release" in denied(ask(policy, since="2026-W10"))


def test_bad_weeks_are_refused(policy: NodePolicy) -> None:
    assert "has 53 weeks, so week 54 does not exist" in denied(ask(policy, since="2026-W54"))


def test_stocks_are_never_summed_over_time(policy: NodePolicy) -> None:
    capacity = {"schema_id": "hospital_capacity@1", "purpose": "patient_transfer"}
    reason = denied(ask(policy, group_by=("area",), **capacity))  # type: ignore[arg-type]
    assert "beds_available is a stock" in reason
    assert "cannot be summed over week" in reason
    assert "is a stock" in denied(ask(policy, group_by=("week:month",), **capacity))  # type: ignore[arg-type]
    assert ask(policy, group_by=("area", "week"), **capacity).allowed  # type: ignore[arg-type]
    one_week = ask(policy, group_by=("area",), since="2026-W08", until="2026-W08", **capacity)  # type: ignore[arg-type]
    assert one_week.allowed


def test_filters_use_the_agreements_groups_and_levels(policy: NodePolicy) -> None:
    grouped = ask(policy, group_by=("age_band",), filters={"age_band": ["45+", "0-14"]})
    assert grouped.effective is not None
    assert grouped.effective.filters == {"age_band": ("0-14", "45+")}
    assert grouped.effective.code_groups["age_band"]["45+"] == ("45-64", "65+")
    assert "0-4 is not a value of age_band" in denied(ask(policy, filters={"age_band": ["0-4"]}))
    assert "the filter names XA-P1-D1 at admin level 2" in denied(
        ask(policy, filters={"area": ["XA-P1-D1"]})
    )
    assert "area XA-P9 is not in node XA's gazetteer" in denied(
        ask(policy, filters={"area": ["XA-P9"]})
    )


def test_a_release_too_large_is_refused() -> None:
    text = sample_policy_text().replace(
        "    suppress_below: 5\n", "    suppress_below: 5\n    max_cells: 20\n", 1
    )
    reason = denied(ask(policy_from_text(text), group_by=("area", "week")))
    assert "the release would have 156 cells; agreement XB-epi-2026 allows at most 20" in reason


def test_sensitivity_grows_with_weeks_when_people_can_recur() -> None:
    text = sample_policy_text().replace("    weeks_per_person: 2\n", "", 1)
    decision = ask(policy_from_text(text), measures=("cases", "admissions"), since="2026-W01")
    assert decision.cost is not None
    assert [(c.measure, c.d_in) for c in decision.cost.measures] == [
        ("cases", 9),  # bound 1 x 9 weeks
        ("admissions", 18),  # bound 2 x 9 weeks
    ]
    assert decision.cost.epsilon_micro == 500_000


def test_gaussian_releases_price_l2_sensitivity_under_zcdp(policy: NodePolicy) -> None:
    decision = ask(
        policy,
        schema_id="hospital_capacity@1",
        purpose="patient_transfer",
        group_by=("area", "week"),
    )
    assert decision.cost is not None
    assert decision.cost.mechanism == "gaussian"
    assert [c.d_in for c in decision.cost.measures] == [2, 2]  # ceil(sqrt(4 weeks x 1^2))
    assert 0 < decision.cost.epsilon_micro <= 1_000_000
    assert decision.cost.delta == pytest.approx(1e-7)


def test_naive_time_is_refused(policy: NodePolicy) -> None:
    with pytest.raises(ValueError, match="naive"):
        ask(policy, now=dt.datetime(2026, 3, 16))
