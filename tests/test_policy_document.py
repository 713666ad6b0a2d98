"""Loading policies: the sample loads, its hash is stable, and every invalid policy is refused
naming the file, the place, the line and the reason."""

from __future__ import annotations

import pytest

from nodes.node import Node
from nodes.settings import NodeSettings
from policies.document import PolicyError
from policies.node_policy import policy_hash
from tests.release_support import NOW, install_policy, policy_from_text, sample_policy_text


def refused(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        policy_from_text(text)
    return caught.value


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


def test_the_sample_policy_loads() -> None:
    policy = policy_from_text(sample_policy_text())
    assert [a.id for a in policy.document.agreements] == [
        "XB-epi-2026",
        "XC-epi-2026",
        "XB-cases-2026",
        "regional-capacity-2026",
    ]
    assert {a.id for a in policy.agreements_for("XC", "hospital_capacity@1")} == {
        "regional-capacity-2026"
    }
    assert policy.red_areas("weekly_epi@1").keys() == {"XA-P4"}
    assert policy.hash.startswith("sha256:")
    assert len(policy.hash) == 71


def test_the_hash_ignores_formatting_but_not_content() -> None:
    text = sample_policy_text()
    reformatted = "# a new comment\n" + text.replace("version: 1\nnode: XA", "node: XA\nversion: 1")
    assert policy_from_text(reformatted).hash == policy_from_text(text).hash
    changed = replace_once(text, "epsilon: 0.5}", "epsilon: 0.4}")
    assert policy_from_text(changed).hash != policy_from_text(text).hash
    assert policy_from_text(text).hash == policy_hash(policy_from_text(text).document)


def test_yaml_syntax_error_names_the_line() -> None:
    error = refused("version: 1\nnode: XA\nagreements: [\n")
    assert error.source == "policy.yaml"
    assert error.problems[0].line is not None
    assert error.problems[0].line >= 3


def test_a_repeated_key_is_refused_rather_than_silently_overwritten() -> None:
    text = replace_once(
        sample_policy_text(),
        "    embargo_days: 14\n",
        "    embargo_days: 14\n    embargo_days: 0\n",
    )
    error = refused(text)
    assert "embargo_days" in str(error)
    assert "appears twice" in str(error)


def test_a_shape_error_names_place_line_and_reason() -> None:
    text = replace_once(sample_policy_text(), "epsilon: 0.5}", "epsilon: -1}")
    error = refused(text)
    (problem,) = error.problems
    assert problem.place == ("agreements", 0, "privacy", "epsilon")
    assert (
        problem.line
        == sample_policy_text()
        .splitlines()
        .index("    privacy: {mechanism: laplace, epsilon: 0.5}")
        + 1
    )
    assert str(error).startswith("policy.yaml: invalid policy: agreements[0].privacy.epsilon (line")
    assert "greater than 0" in str(error)


def test_unknown_fields_are_refused() -> None:
    error = refused(
        replace_once(sample_policy_text(), "    suppress_below: 5\n", "    supress_below: 5\n")
    )
    assert any(p.place[-1] == "supress_below" for p in error.problems)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("measures: [cases, deaths, admissions]", "measures: [cases, deaths, tests]", None),
        (
            "  - id: case-outcomes\n",
            "  - id: no-deaths\n    measures: [deaths]\n  - id: case-outcomes\n",
            "red line no-deaths: measure deaths never leaves",
        ),
        (
            "  - id: case-outcomes\n",
            "  - id: no-sex\n    dimensions: [sex]\n  - id: case-outcomes\n",
            "red line no-sex: dimension sex never leaves",
        ),
        (
            "  - id: case-outcomes\n",
            "  - id: no-capacity\n    schema: hospital_capacity@1\n  - id: case-outcomes\n",
            "red line no-capacity: hospital_capacity@1 never leaves this node",
        ),
    ],
)
def test_an_agreement_contradicting_a_red_line_is_a_load_error(
    old: str, new: str, expected: str | None
) -> None:
    text = replace_once(sample_policy_text(), old, new)
    if expected is None:  # control: changing the measures alone is fine
        policy_from_text(text)
        return
    error = refused(text)
    assert expected in str(error)
    assert all(p.line is not None for p in error.problems)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "schema: weekly_epi@1\n    measures: [cases]",
            "schema: weekly_epi@9\n    measures: [cases]",
            "no schema weekly_epi@9",
        ),
        ("measures: [cases, deaths, admissions]", "measures: [cases, beds]", "has no measure beds"),
        ("      sex: {}\n", "      shoe_size: {}\n", "has no dimension shoe_size"),
        ("areas: [XA-P4]", "areas: [XA-P9]", "area XA-P9 is not in this node's gazetteer"),
        ('"15-44": ["15-24", "25-44"]', '"15-44": ["5-14", "25-44"]', "already in another group"),
        ('"15-44": ["15-24", "25-44"]', '"15-44": ["15-24", "25-99"]', "25-99 is not in code list"),
        (
            "area: {level: 1}                # provinces",
            "area: {period: month}  #",
            "takes 'level'",
        ),
        ("filters: [area, age_band]", "filters: [area, week]", "cannot be filtered"),
        (
            "filters: [area, age_band]",
            "filters: [area, outcome]",
            "only if it is among the dimensions",
        ),
        ("node: XA", "node: XB", "this policy is for node XB, not XA"),
        ("partners: [XC]\n", "partners: [XA]\n", "a node does not pull from itself"),
        (
            "  line_list@1:\n    global_budget: {epsilon: 6, period: year}\n    weeks_per_person: 1\n",
            "",
            "global_budget is not set",
        ),
        ("valid_until: 2026-06-30", "valid_until: 2025-06-30", "before valid_from"),
        (
            "{mechanism: laplace, epsilon: 0.25}",
            "{mechanism: gaussian, epsilon: 0.25}",
            "delta is required",
        ),
        ("id: XB-cases-2026", "id: XB-epi-2026", "is used twice"),
        (
            "purposes: [situational_awareness]",
            "purposes: [Situational Awareness]",
            "is not a purpose name",
        ),
    ],
)
def test_a_policy_that_does_not_fit_the_node_is_refused(old: str, new: str, expected: str) -> None:
    error = refused(replace_once(sample_policy_text(), old, new))
    assert expected in str(error)


def test_overlapping_agreements_for_one_partner_and_schema_are_refused() -> None:
    text = sample_policy_text().replace(
        "partners: [XC]\n    schema: weekly_epi@1", "partners: [XB, XC]\n    schema: weekly_epi@1"
    )
    error = refused(text)
    assert "overlaps agreement XB-epi-2026 for partner XB" in str(error)
    # ...and adjoining windows are fine: one ends before the other begins.
    sequential = text.replace(
        "valid_from: 2026-01-01\n    valid_until: 2026-06-30",
        "valid_from: 2027-01-01\n    valid_until: 2027-06-30",
    )
    policy_from_text(sequential)


def test_all_problems_are_listed_at_once() -> None:
    text = replace_once(sample_policy_text(), "epsilon: 0.5}", "epsilon: 0}")
    text = replace_once(text, "embargo_days: 28", "embargo_days: -3")
    assert len(refused(text).problems) == 2


def test_a_node_without_a_policy_file_shares_nothing(node: Node) -> None:
    assert node.policy.missing
    assert node.policy.document.agreements == ()


def test_a_node_with_an_invalid_policy_does_not_start(settings: NodeSettings) -> None:
    settings.policy_file.write_text(
        replace_once(sample_policy_text(), "embargo_days: 14", "embargo_days: fourteen"),
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as caught:
        Node.open(settings)
    message = str(caught.value)
    assert str(settings.policy_file) in message
    assert "agreements[0].embargo_days (line" in message
    assert "integer" in message


def test_reloading_an_invalid_policy_keeps_the_current_one(node: Node) -> None:
    good = install_policy(node)
    with pytest.raises(PolicyError):
        node.apply_policy("version: 2\nnode: XA\n", source="new.yaml", actor="operator", now=NOW)
    assert node.policy is good


def test_a_node_refuses_to_start_with_weakened_opendp(
    settings: NodeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import opendp.mod

    monkeypatch.setattr(opendp.mod, "GLOBAL_FEATURES", {"contrib", "honest-but-curious"})
    with pytest.raises(RuntimeError, match="OpenDP features must be exactly"):
        Node.open(settings)
