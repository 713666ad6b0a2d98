"""The policy in plain words, and the "what would partner X get" form (TestClient)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from exchange.ui.views.operator_policy import read_form, sunset
from nodes.node import Node
from policies.document import Agreement
from tests.release_support import edited_policy, install_policy, sample_policy_text
from tests.ui_support import csrf_of, issue, sign_in, ui_client

CHECK = "/ui/operator/policy/check"
MARKUP = '<img src=x onerror="alert(1)">'
QUESTION = {
    "partner": "XB",
    "schema": "weekly_epi@1",
    "group_by": "area, week",
    "measures": "cases",
    "purpose": "outbreak_response",
    "since": "",
    "until": "",
    "filters": "",
}


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def policy_ending_in(days: int) -> str:
    """The sample policy, with XB's weekly_epi agreement ending ``days`` from today."""
    end = (today() + dt.timedelta(days=days)).isoformat()
    return edited_policy(("valid_until: 2026-12-31", f"valid_until: {end}")).replace(
        "valid_until: 2026-12-31", "valid_until: 2099-12-31"
    )


@pytest.fixture
def signed_in(client: TestClient, node: Node) -> tuple[TestClient, str, dict[str, str]]:
    """An operator's dashboard session (client, its CSRF value) and a bearer header for
    the API, on a node running the sample policy with agreements that outlive the clock."""
    install_policy(node, policy_ending_in(40))
    csrf = sign_in(ui_client(client), issue(node, "operator", name="operator-ui"))
    bearer = {"Authorization": f"Bearer {issue(node, 'operator', name='operator-api')}"}
    return client, csrf, bearer


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:p|h2|dd|bdi|span)>', html, re.S)
    assert found is not None, f"no element #{element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def reasons_of(html: str) -> list[str]:
    block = re.search(r'<ul id="check-reasons"[^>]*>(.*?)</ul>', html, re.S)
    assert block is not None
    return [" ".join(item.split()) for item in re.findall(r"<li>(.*?)</li>", block.group(1), re.S)]


def api_question(form: dict[str, str]) -> dict[str, Any]:
    split = [p.strip() for p in form["group_by"].split(",") if p.strip()]
    return {
        "partner_id": form["partner"],
        "query": {
            "schema_id": form["schema"],
            "group_by": split,
            "measures": [m.strip() for m in form["measures"].split(",") if m.strip()],
            "purpose": form["purpose"] or None,
        },
    }


# The policy in words


def test_each_agreement_says_its_days_left_before_the_sunset(
    signed_in: tuple[TestClient, str, dict[str, str]], node: Node
) -> None:
    client, _csrf, _bearer = signed_in
    page = client.get("/ui/operator/policy")
    assert page.status_code == 200
    ids = [a.id for a in node.policy.document.agreements]
    assert ids[0] == "XB-epi-2026"
    assert text_of(page.text, "days-left-1") == "40"
    assert text_of(page.text, "days-left-2") == "None: it has ended."  # XC's ended 2026-06-30
    assert text_of(page.text, "days-left-3") == f"{(dt.date(2099, 12, 31) - today()).days:,}"
    assert escape(node.policy.hash) in page.text


def test_sunset_counts_days_to_the_last_day_itself() -> None:
    agreement = Agreement.model_validate(
        {
            "id": "A",
            "partners": ["XB"],
            "schema": "weekly_epi@1",
            "measures": ["cases"],
            "embargo_days": 0,
            "purposes": ["p"],
            "valid_from": "2026-01-01",
            "valid_until": "2026-12-31",
            "privacy": {"epsilon": 0.5},
            "budget": {"epsilon": 1},
        }
    )
    assert sunset(agreement, dt.date(2026, 11, 30)) == {"state": "in_force", "days_left": 31}
    assert sunset(agreement, dt.date(2026, 12, 31)) == {"state": "in_force", "days_left": 0}
    assert sunset(agreement, dt.date(2027, 1, 1))["state"] == "ended"
    assert sunset(agreement, dt.date(2025, 12, 31))["state"] == "upcoming"


def test_the_policy_page_shows_every_agreement_and_red_line(
    signed_in: tuple[TestClient, str, dict[str, str]], node: Node
) -> None:
    client, _csrf, _bearer = signed_in
    page = client.get("/ui/operator/policy").text
    for agreement in node.policy.document.agreements:
        assert f"Agreement {agreement.id}" in page
    for red in node.policy.document.red_lines:
        assert f"Red line {red.id}" in page
        assert str(escape(red.reason)) in page
    assert "down to admin level 1, never finer" in page
    assert "only whole months" in page
    assert "Nothing from the last 14 days." in page
    assert "ε 1 and δ 1e-07, Gaussian noise" in page


def test_a_red_line_reason_is_escaped(client: TestClient, node: Node) -> None:
    text = sample_policy_text().replace(
        "reason: security operations in Province 4", f"reason: '{MARKUP}'"
    )
    install_policy(node, text)
    sign_in(ui_client(client), issue(node, "operator"))
    page = client.get("/ui/operator/policy").text
    assert MARKUP not in page
    assert escape(MARKUP) in page


# The check form


@pytest.mark.parametrize(
    "changes",
    [
        {},  # allowed
        {"partner": "XD"},  # no agreement
        {"group_by": "area:adm2, week"},  # finer than the agreement allows
        {"schema": "humanitarian_sitrep@1"},  # a red line
    ],
)
def test_the_form_answers_as_the_api_does(
    signed_in: tuple[TestClient, str, dict[str, str]], changes: dict[str, str]
) -> None:
    client, csrf, bearer = signed_in
    form = {**QUESTION, **changes}
    page = client.post(CHECK, data={**form, "csrf": csrf})
    assert page.status_code == 200, page.text
    api = client.post("/v1/policy/check", json=api_question(form), headers=bearer).json()
    verdict = text_of(page.text, "check-verdict")
    assert verdict == ("Allowed" if api["allowed"] else "Refused")
    assert text_of(page.text, "check-rule") == api["rule"]
    assert reasons_of(page.text) == [str(escape(r)) for r in api["reasons"]]
    if api["allowed"]:
        assert text_of(page.text, "check-cells") == f"{api['cells']:,}"
        assert f"ε {api['cost']['epsilon']:g} for this release" in page.text
        left_after = [f"{line['left_after']:g}" for line in api["budget"]]
        assert left_after == ["9.5", "19.5"]
        for value in left_after:
            assert f"<bdi>{value}</bdi>" in page.text


def test_the_check_spends_nothing(
    signed_in: tuple[TestClient, str, dict[str, str]], node: Node
) -> None:
    client, csrf, _bearer = signed_in
    for _ in range(2):
        page = client.post(CHECK, data={**QUESTION, "csrf": csrf}).text
        assert "<bdi>9.5</bdi>" in page  # 10 left before, 9.5 after: nothing was charged


def test_the_form_without_its_csrf_value_is_refused(
    signed_in: tuple[TestClient, str, dict[str, str]],
) -> None:
    client, _csrf, _bearer = signed_in
    missing = client.post(CHECK, data=QUESTION)
    assert missing.status_code == 403
    assert "security token is missing or wrong" in missing.text
    wrong = client.post(CHECK, data={**QUESTION, "csrf": "not-the-value"})
    assert wrong.status_code == 403
    assert "check-verdict" not in wrong.text


def test_bad_input_is_summarized_at_the_top_and_beside_each_field(
    signed_in: tuple[TestClient, str, dict[str, str]],
) -> None:
    client, csrf, _bearer = signed_in
    bad = {**QUESTION, "partner": "x y", "since": "last week", "filters": "area"}
    page = client.post(CHECK, data={**bad, "csrf": csrf})
    assert page.status_code == 422
    summary = re.search(r'id="error-summary".*?</div>', page.text, re.S)
    assert summary is not None
    links = re.findall(r'href="#(check-[a-z_]+)"', summary.group(0))
    assert links == ["check-partner", "check-since", "check-filters"]
    for field in ("partner", "since", "filters"):
        assert f'id="check-{field}-error"' in page.text
    assert 'id="check-partner" name="partner" value="x y"' in page.text  # kept as typed
    assert page.text.count('aria-invalid="true"') == 3
    assert "check-verdict" not in page.text
    assert csrf_of(page.text) == csrf


def test_read_form_maps_each_problem_to_its_field() -> None:
    from starlette.datastructures import FormData

    values, question, errors = read_form(
        FormData({**QUESTION, "group_by": "area, area:adm1", "measures": "Cases"})
    )
    assert question is None
    assert list(errors) == ["group_by", "measures"]
    assert values["group_by"] == "area, area:adm1"
    _values, fine, none = read_form(FormData({**QUESTION, "filters": "area=XA-P1, XA-P2\n\n"}))
    assert none == {}
    assert fine is not None
    assert fine.query.filters == {"area": ("XA-P1", "XA-P2")}


def test_a_partner_id_typed_into_the_form_is_escaped(
    signed_in: tuple[TestClient, str, dict[str, str]],
) -> None:
    client, csrf, _bearer = signed_in
    page = client.post(CHECK, data={**QUESTION, "partner": MARKUP, "csrf": csrf})
    assert page.status_code == 422
    assert MARKUP not in page.text
    assert escape(MARKUP) in page.text


def test_a_red_line_reason_in_a_denial_is_escaped(client: TestClient, node: Node) -> None:
    text = sample_policy_text().replace(
        "reason: displacement figures are shared only through the regional UNHCR office",
        f"reason: '{MARKUP}'",
    )
    install_policy(node, text)
    csrf = sign_in(ui_client(client), issue(node, "operator"))
    form = {**QUESTION, "schema": "humanitarian_sitrep@1", "csrf": csrf}
    page = client.post(CHECK, data=form).text
    assert "red line displacement-figures" in page
    assert MARKUP not in page
    assert escape(MARKUP) in page


# Who may use them


@pytest.mark.parametrize("role", ["agency", "analyst", "auditor"])
def test_other_roles_are_refused_the_policy_pages(
    client: TestClient, node: Node, role: str
) -> None:
    csrf = sign_in(ui_client(client), issue(node, role))  # type: ignore[arg-type]
    assert client.get("/ui/operator/policy").status_code == 403
    refused = client.post(CHECK, data={**QUESTION, "csrf": csrf})
    assert refused.status_code == 403
    assert "check-verdict" not in refused.text


@pytest.mark.parametrize("language", ["fr", "es", "ar"])
def test_the_policy_pages_answer_in_each_language(
    signed_in: tuple[TestClient, str, dict[str, str]], language: str
) -> None:
    client, csrf, _bearer = signed_in
    client.cookies.set("exchange_lang", language)
    page = client.get("/ui/operator/policy")
    assert page.status_code == 200
    assert page.headers["content-language"] == language
    checked = client.post(CHECK, data={**QUESTION, "csrf": csrf})
    assert checked.status_code == 200
    assert f'lang="{language}"' in checked.text
