"""One module per group of pages; each holds a ``router`` of page routes.

- ``session``: sign-in and sign-out, the language switch, the front door.
- ``agency``: uploading a report (with a preview first).
- ``my_reports``: the agency's reports, each with its rows and corrections.
- ``schema_pages``: each schema's reference (fields, codes, labels) and its CSV template.
- ``partner_data``: what this node received from its peers, with charts.
- ``operator``: the node, its inflow and outflow, budgets, peers.
- ``operator_policy``: the policy in plain words, and what a partner would get and pay.
- ``auditor``: the audit log, entries with their proofs, checkpoints, witnesses, exports.
- ``transparency``: the public page, when the operator turns it on.
"""

from __future__ import annotations

from fastapi import APIRouter

from exchange.ui.views import (
    agency,
    auditor,
    my_reports,
    operator,
    operator_policy,
    partner_data,
    schema_pages,
    session,
    transparency,
)

#: Every page router, in the order they are matched.
PAGE_ROUTERS: tuple[APIRouter, ...] = (
    session.router,
    agency.router,
    my_reports.router,
    schema_pages.router,
    partner_data.router,
    operator.router,
    operator_policy.router,
    auditor.router,
    transparency.router,
)
