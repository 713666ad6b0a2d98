"""The privacy budget ledger: reserve before noise, never refund, exact under concurrency.

A release is charged to two accounts, the partner's and the schema's global one, in one
transaction, each with one conditional update::

    UPDATE budget_ledger SET spent_micro = spent_micro + :cost
     WHERE <account> AND spent_micro + :cost <= :cap  RETURNING spent_micro

If either account cannot pay, no row comes back, the caller's transaction rolls back, and
neither is charged. Why this is exact with any number of workers: on PostgreSQL the update
takes the row's lock and, under READ COMMITTED, re-checks its WHERE against the committed
row once the lock is granted, so two releases can never both see the same ``spent``; on
SQLite, writers begin with ``BEGIN IMMEDIATE`` and hold the database write lock. Accounts
are always locked in the same order (partner, then global), so releases never deadlock.

The cap comes from the policy at the time of the charge (``:cap``); the row keeps the cap
last applied, for display. Amounts are integer micro-epsilon (`policies.budget`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Connection, and_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from nodes.releases.tables import budget_ledger
from policies.accounts import BudgetLine, BudgetOutlook, Charge
from policies.budget import epsilon, show
from schemas.errors import BudgetExhaustedError

_ACCOUNT = ("scope", "partner_id", "schema_id", "period")


class InsufficientBudgetError(BudgetExhaustedError):
    """An account cannot pay for the release; nothing was charged.

    The message and ``problem_extra`` go to the partner, so they say what is left only of
    the partner's own account: what is left of the global one, which all partners share,
    would tell one partner what the others pulled. ``line`` keeps the full account.
    """

    def __init__(self, line: BudgetLine, cost_micro: int) -> None:
        self.line = line
        self.cost_micro = cost_micro
        self.problem_extra: dict[str, object] = {
            "budget": line.charge.describe(),
            "cost": epsilon(cost_micro),
        }
        if line.charge.scope == "global":
            super().__init__(
                f"{line.charge.describe()}, shared by all partners, cannot pay for this "
                f"release (it costs {show(cost_micro)}); nothing was charged"
            )
            return
        self.problem_extra["budget_left"] = epsilon(line.left_micro)
        super().__init__(
            f"{line.charge.describe()} has {show(line.left_micro)} left and this release "
            f"costs {show(cost_micro)}; nothing was charged"
        )


def _where(charge: Charge) -> ColumnElement[bool]:
    return and_(*(budget_ledger.c[name] == getattr(charge, name) for name in _ACCOUNT))


def _ensure(conn: Connection, charge: Charge, now: dt.datetime) -> None:
    """Create the account at zero if it does not exist (safe against concurrent creators)."""
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(budget_ledger)
        .values(
            scope=charge.scope,
            partner_id=charge.partner_id,
            schema_id=charge.schema_id,
            period=charge.period,
            cap_micro=charge.cap_micro,
            spent_micro=0,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=list(_ACCOUNT))
    )


def _spent(conn: Connection, charge: Charge) -> int:
    found = conn.execute(select(budget_ledger.c.spent_micro).where(_where(charge))).scalar()
    return int(found or 0)


def reserve(
    conn: Connection, charges: Sequence[Charge], cost_micro: int, now: dt.datetime
) -> tuple[BudgetLine, ...]:
    """Charge ``cost_micro`` to every account in the caller's transaction; return each
    account after the charge. Raises InsufficientBudgetError (the caller rolls back)."""
    if cost_micro <= 0:
        raise ValueError("a release always costs something")
    for charge in charges:
        _ensure(conn, charge, now)
    after: list[BudgetLine] = []
    spent = budget_ledger.c.spent_micro
    for charge in charges:
        row = conn.execute(
            update(budget_ledger)
            .where(_where(charge), spent + cost_micro <= charge.cap_micro)
            .values(spent_micro=spent + cost_micro, cap_micro=charge.cap_micro, updated_at=now)
            .returning(spent)
        ).first()
        if row is None:
            line = BudgetLine(charge=charge, spent_micro=_spent(conn, charge))
            raise InsufficientBudgetError(line, cost_micro)
        after.append(BudgetLine(charge=charge, spent_micro=int(row[0])))
    return tuple(after)


def lines(conn: Connection, charges: Sequence[Charge]) -> tuple[BudgetLine, ...]:
    """The accounts as they stand (an account never charged has spent nothing)."""
    return tuple(BudgetLine(charge=c, spent_micro=_spent(conn, c)) for c in charges)


def outlook(conn: Connection, charges: Sequence[Charge], cost_micro: int) -> BudgetOutlook:
    return BudgetOutlook(lines=lines(conn, charges), cost_micro=cost_micro)


def all_lines(conn: Connection) -> list[BudgetLine]:
    """Every account ever charged, as stored (cap as last applied)."""
    rows = conn.execute(select(budget_ledger).order_by(*(budget_ledger.c[n] for n in _ACCOUNT)))
    return [
        BudgetLine(
            charge=Charge(
                scope=r.scope,
                partner_id=r.partner_id,
                schema_id=r.schema_id,
                period=r.period,
                cap_micro=r.cap_micro,
            ),
            spent_micro=r.spent_micro,
        )
        for r in rows
    ]


def report(conn: Connection, charges_in_force: Sequence[Charge]) -> list[BudgetLine]:
    """Every account: those the policy charges now (cap as the policy sets it today, spent
    from the ledger, zero if never charged) and every other account ever charged."""
    stored = {_key(line.charge): line for line in all_lines(conn)}
    out = [
        BudgetLine(
            charge=c, spent_micro=stored.pop(_key(c)).spent_micro if _key(c) in stored else 0
        )
        for c in charges_in_force
    ]
    out += stored.values()
    return sorted(out, key=lambda line: (line.charge.scope != "global", _key(line.charge)))


def accounts(conn: Connection) -> list[tuple[str, str, str, str, int, int]]:
    """Every account as (scope, partner, schema, period, spent, cap): what the audit anchor
    keeps (`nodes.audit.anchor`)."""
    rows = conn.execute(select(budget_ledger).order_by(*(budget_ledger.c[n] for n in _ACCOUNT)))
    return [
        (r.scope, r.partner_id, r.schema_id, r.period, int(r.spent_micro), int(r.cap_micro))
        for r in rows
    ]


def raise_to(
    conn: Connection, anchored: Sequence[tuple[str, str, str, str, int, int]], now: dt.datetime
) -> list[tuple[str, int, int]]:
    """Raise every account to at least its anchored total in the caller's transaction, after
    a restore: spent budget only grows, so the larger of the restored and the anchored totals
    is the truth and nothing spent is given back. Returns (account, restored, raised) for
    each account raised."""
    raised: list[tuple[str, int, int]] = []
    for scope, partner_id, schema_id, period, spent, cap in anchored:
        charge = Charge.model_validate(
            {
                "scope": scope,
                "partner_id": partner_id,
                "schema_id": schema_id,
                "period": period,
                "cap_micro": cap,
            }
        )
        _ensure(conn, charge, now)
        before = _spent(conn, charge)
        if before < spent:
            conn.execute(
                update(budget_ledger)
                .where(_where(charge))
                .values(spent_micro=spent, updated_at=now)
            )
            raised.append((charge.describe(), before, spent))
    return raised


def _key(charge: Charge) -> tuple[str, ...]:
    return tuple(getattr(charge, name) for name in _ACCOUNT)
