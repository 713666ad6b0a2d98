"""Each role's pages, in the order the menu shows them, and where a sign-in lands."""

from __future__ import annotations

from collections.abc import Mapping

from nodes.access import Role
from schemas.errors import N_

#: A role's name as a page shows it.
ROLE_NAMES: Mapping[Role, str] = {
    "agency": N_("agency"),
    "analyst": N_("analyst"),
    "auditor": N_("auditor"),
    "operator": N_("operator"),
}

MENU: Mapping[Role, tuple[tuple[str, str], ...]] = {
    "agency": (
        ("/ui/upload", N_("Upload a report")),
        ("/ui/reports", N_("My reports")),
        ("/ui/schemas", N_("Schemas")),
    ),
    "analyst": (
        ("/ui/received", N_("Partner data")),
        ("/ui/schemas", N_("Schemas")),
    ),
    "auditor": (
        ("/ui/audit", N_("Audit log")),
        ("/ui/audit/checkpoints", N_("Checkpoints")),
        ("/ui/audit/witnesses", N_("Witnesses")),
    ),
    "operator": (
        ("/ui/operator", N_("Node")),
        ("/ui/operator/flows", N_("Inflow and outflow")),
        ("/ui/operator/budgets", N_("Budgets")),
        ("/ui/operator/peers", N_("Peers")),
        ("/ui/operator/policy", N_("Policy")),
        ("/ui/received", N_("Partner data")),
    ),
}


def home(role: Role) -> str:
    """The first page of ``role``'s menu: where signing in lands."""
    return MENU[role][0][0]


def current(role: Role, path: str) -> str | None:
    """The menu entry a page belongs to: the longest menu address that is the page's own
    or a folder above it (``/ui/audit/entries/7`` is under "Audit log", while
    ``/ui/audit/checkpoints`` is its own entry)."""
    under = [href for href, _ in MENU[role] if path == href or path.startswith(href + "/")]
    return max(under, key=len, default=None)
