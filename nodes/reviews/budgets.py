"""Privacy budget spent against caps, recomputed from the audit log alone.

Every release that spent budget wrote, in the transaction that charged the ledger, one
``release`` entry with the partner, the schema and the micro-ε charged
(`nodes.releases.pipeline`). So the ledger's spent total of an account is the sum of those
entries over the account's period (``total``, a year or a month, by the entry's UTC time),
and anyone holding the log can recompute it. The caps come from the policy
(`policies.accounts`). After a restore the ledger may hold more than the log shows (it never
gives budget back, docs/operations.md); a review says what the log proves.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from policies.accounts import Charge


@dataclass(frozen=True)
class Account:
    """One ledger account: who it charges, for which schema and period, its cap and what the
    log shows spent on it (micro-ε, as the ledger counts)."""

    scope: str  # "partner" or "global" (every partner together)
    partner_id: str  # "*" for the global account
    schema_id: str
    period: str  # "total", "2026" or "2026-03"
    cap_micro: int
    spent_micro: int


def periods_of(moment: dt.datetime) -> tuple[str, str, str]:
    """The ledger periods a charge at ``moment`` counts in: all time, its year, its month
    (the keys `policies.budget.period_key` gives)."""
    moment = moment.astimezone(dt.UTC)
    return ("total", f"{moment.year:04d}", f"{moment.year:04d}-{moment.month:02d}")


def charged(entry: dict[str, Any]) -> int:
    """The micro-ε a normalized entry charged: only allowed ``release`` entries spend."""
    if entry["action"] != "release" or entry["outcome"] != "allowed":
        return 0
    return int(entry.get("epsilon_micro") or 0)


class Spending:
    """Micro-ε charged per (partner, schema, ledger period), folded entry by entry, so any
    policy's accounts can be read from it afterwards (`account`)."""

    def __init__(self, *, until: dt.datetime) -> None:
        self.until = until
        self.spent: Counter[tuple[str, str, str]] = Counter()

    def add(self, entry: dict[str, Any]) -> int:
        """Fold one normalized entry; returns what it charged (0 for most entries)."""
        micro = charged(entry)
        moment = dt.datetime.fromisoformat(entry["time"]) if micro else None
        if moment is not None and moment < self.until:
            for period in periods_of(moment):
                self.spent[(entry.get("partner") or "", entry.get("schema") or "", period)] += micro
        return micro

    def account(self, charge: Charge) -> Account:
        """The account with what was charged to it: a partner's own, or every partner's."""
        if charge.scope == "global":
            spent = sum(
                micro
                for (_partner, schema, period), micro in self.spent.items()
                if schema == charge.schema_id and period == charge.period
            )
        else:
            spent = self.spent[(charge.partner_id, charge.schema_id, charge.period)]
        c = charge
        return Account(c.scope, c.partner_id, c.schema_id, c.period, c.cap_micro, spent)


def accounts(
    entries: Iterable[dict[str, Any]], charges: Sequence[Charge], *, until: dt.datetime
) -> tuple[Account, ...]:
    """Each account of ``charges`` with what the entries before ``until`` spent on it."""
    spending = Spending(until=until)
    for entry in entries:
        spending.add(entry)
    return tuple(spending.account(charge) for charge in charges)
