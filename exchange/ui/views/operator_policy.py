"""The policy in plain words, and "what would partner X get, and what would it cost?".

The page reads the node's loaded policy (``node.policy``, refreshed on every request like
the API's), as ``exchange policy check`` and ``POST /v1/policy/check`` do. The form builds
the same `PolicyCheck` the API validates and calls the same `nodes.releases.pipeline.check`,
so the page and the API give one answer: it decides and reads the ledger, and releases and
spends nothing. A form that cannot be read comes back with an error summary at the top and
each message beside its field (GOV.UK's pattern), not as an error page.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from exchange.api.dependencies import NodeDep
from exchange.api.routes.policy import PolicyCheck
from exchange.ui.pages import page_router
from exchange.ui.rendering import render
from exchange.ui.sessions import CheckedForm, OperatorViewer
from nodes import peers
from nodes.node import Node
from nodes.releases import pipeline
from policies.document import Agreement
from schemas.errors import N_
from schemas.labels import Language
from schemas.standard import WEEK

router = page_router()

#: The form's fields, in the order the page shows them.
FIELDS = ("partner", "schema", "group_by", "measures", "purpose", "since", "until", "filters")
_QUERY_FIELDS = {
    "schema_id": "schema",
    "group_by": "group_by",
    "measures": "measures",
    "purpose": "purpose",
    "since": "since",
    "until": "until",
    "filters": "filters",
}
_WEEK_MESSAGE = N_("Write an epi week as YYYY-Www, for example 2026-W05, or leave it empty.")
#: What to write in each field, said when what was written cannot be read.
MESSAGES = {
    "partner": N_(
        "Enter the partner's node id: 2 to 32 letters, digits, hyphens or underscores, for example XB."
    ),
    "schema": N_("Choose a schema."),
    "group_by": N_(
        "Write dimensions separated by commas, each at most once, with a granularity if you want one: area:adm1, week:month."
    ),
    "measures": N_(
        "Write measure names separated by commas, each once: lower-case letters, digits and underscores."
    ),
    "purpose": N_(
        "Write the purpose as the policy spells it, for example outbreak_response: lower-case letters, digits and underscores."
    ),
    "since": _WEEK_MESSAGE,
    "until": _WEEK_MESSAGE,
    "filters": N_(
        "Write one filter per line: a dimension, an equals sign and its values separated by commas, for example area=XA-P1,XA-P2."
    ),
}


@router.get("/ui/operator/policy")
async def policy_page(request: Request, _viewer: OperatorViewer, node: NodeDep) -> Response:
    choices = await run_in_threadpool(_choices, node)
    return render(
        request,
        "operator/policy.html",
        {**_policy_words(node, request.state.language), **choices, "values": {}, "errors": {}},
    )


@router.post("/ui/operator/policy/check")
async def check_page(
    request: Request, _viewer: OperatorViewer, node: NodeDep, form: CheckedForm
) -> Response:
    values, question, errors = read_form(form)
    choices = await run_in_threadpool(_choices, node)
    context: dict[str, Any] = {**choices, "values": values, "errors": errors}
    if question is None:
        return render(request, "operator/check.html", context, status_code=422)
    decision = await run_in_threadpool(
        functools.partial(
            pipeline.check,
            node,
            partner_id=question.partner_id,
            query=question.query,
            now=dt.datetime.now(dt.UTC),
        )
    )
    context |= {
        "result": decision.summary(),
        "lines": () if decision.budget is None else decision.budget.lines,
        "schema_label": _labels(node, request.state.language)["schema"],
    }
    return render(request, "operator/check.html", context)


def read_form(form: FormData) -> tuple[dict[str, str], PolicyCheck | None, dict[str, str]]:
    """The form's values as typed, the question they ask (None if they cannot be read), and
    a message for each field that cannot be read."""
    values = {name: _text(form.get(name)) for name in FIELDS}
    errors: dict[str, str] = {}
    filters: dict[str, tuple[str, ...]] = {}
    for line in values["filters"].splitlines():
        name, sep, listed = line.partition("=")
        if not line.strip():
            continue
        if not sep or not name.strip() or not split([listed]):
            errors["filters"] = MESSAGES["filters"]
            break
        filters[name.strip()] = filters.get(name.strip(), ()) + split([listed])
    try:
        question = PolicyCheck.model_validate(
            {
                "partner_id": values["partner"],
                "query": {
                    "schema_id": values["schema"],
                    "measures": split([values["measures"]]),
                    "group_by": split([values["group_by"]]),
                    "filters": filters,
                    "since": values["since"] or None,
                    "until": values["until"] or None,
                    "purpose": values["purpose"] or None,
                },
            }
        )
    except ValidationError as exc:
        question = None
        for error in exc.errors():
            where = error["loc"]
            field = "partner" if where[0] == "partner_id" else None
            if len(where) > 1 and where[0] == "query":
                field = _QUERY_FIELDS.get(str(where[1]))
            field = field or "group_by"  # a rule across fields: they are about grouping
            errors.setdefault(field, MESSAGES[field])
    if errors:
        return values, None, {name: errors[name] for name in FIELDS if name in errors}
    return values, question, errors


def split(values: list[str]) -> tuple[str, ...]:
    """``area:adm1, week`` -> (``area:adm1``, ``week``): as the CLI reads ``--by`` and
    ``--measures`` (`exchange.cli.query_options.split`, not imported: the server does not
    load the CLI)."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _choices(node: Node) -> dict[str, Any]:
    """What the form offers: schemas, partners (in agreements or registered), purposes."""
    document = node.policy.document
    registered = {p.id for p in peers.list_peers(node.engine)}
    named = {p for a in document.agreements for p in a.partners}
    return {
        "schemas": [s for s in node.registry],
        "known_partners": sorted(registered | named),
        "purposes": sorted({p for a in document.agreements for p in a.purposes}),
    }


def _labels(node: Node, language: Language) -> dict[str, Any]:
    """Label lookups in ``language``: a schema, a measure or a dimension of a schema."""

    def schema(schema_id: str) -> str:
        return (
            node.registry.get(schema_id).label.get(language) if schema_id in node.registry else ""
        )

    def measure(schema_id: str, name: str) -> str:
        if schema_id not in node.registry:
            return name
        found = node.registry.get(schema_id).measure_by_name.get(name)
        return found.label.get(language) if found else name

    def dimension(schema_id: str, name: str) -> str:
        fields = node.registry.get(schema_id).field_by_name if schema_id in node.registry else {}
        found = fields.get(name) or (WEEK if name == "week" else None)
        return found.label.get(language) if found else name

    return {"schema": schema, "measure": measure, "dimension": dimension}


def sunset(agreement: Agreement, today: dt.date) -> dict[str, Any]:
    """Whether ``agreement`` is in force ``today``, and the days left to its last day
    (``valid_until``, the sunset: nothing is allowed after it); 0 on the last day itself."""
    if today < agreement.valid_from:
        return {"state": "upcoming", "days_left": None}
    if today > agreement.valid_until:
        return {"state": "ended", "days_left": None}
    return {"state": "in_force", "days_left": (agreement.valid_until - today).days}


def _policy_words(node: Node, language: Language) -> dict[str, Any]:
    policy = node.policy
    today = dt.datetime.now(dt.UTC).date()
    return {
        "policy": policy,
        "document": policy.document,
        "today": today,
        "sunsets": {a.id: sunset(a, today) for a in policy.document.agreements},
        "label": _labels(node, language),
    }
