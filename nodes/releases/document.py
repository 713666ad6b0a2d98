"""A release as a partner receives it: `Release` and its JSON document.

Every cell of the public key set is present, suppressed ones included (value ``null``,
``suppressed: true``), each with the half-width of its 95% interval: the partner sees how
much to trust every number, and the shape of the release says nothing about the data.

A partner sees its own accounts and nothing about other partners: ``budget_left`` holds
only the partner's own budget, never the global one that all partners share (how much
of it is left would tell what the others pulled). Times use the one published spelling
(:func:`nodes.times.utc_text`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from itertools import product
from typing import Any

from nodes.releases.store import StoredRelease
from nodes.times import utc_text
from policies.accounts import BudgetLine
from policies.budget import epsilon
from policies.privacy import CONFIDENCE


@dataclass(frozen=True)
class Release:
    stored: StoredRelease
    node_id: str
    budget: tuple[BudgetLine, ...]  # the accounts after this answer
    charged_micro: int  # what this answer charged: 0 when served from the cache
    cached: bool

    @classmethod
    def of(
        cls,
        stored: StoredRelease,
        *,
        node_id: str,
        budget: tuple[BudgetLine, ...],
        charged_micro: int,
        cached: bool,
    ) -> Release:
        return cls(
            stored=stored,
            node_id=node_id,
            budget=budget,
            charged_micro=charged_micro,
            cached=cached,
        )

    @property
    def id(self) -> int:
        return self.stored.id

    @property
    def created_at(self) -> dt.datetime:
        return self.stored.created_at

    def cells(self) -> list[dict[str, Any]]:
        """One dict per key of the public key set, in row-major order of the axes."""
        stored = self.stored
        dimensions = [a.dimension for a in stored.axes]
        accuracy = {c.measure: c.accuracy for c in stored.noise}
        columns = [(m, stored.values[m], round(accuracy[m], 2)) for m in stored.query.measures]
        out: list[dict[str, Any]] = []
        for i, key in enumerate(product(*(a.keys for a in stored.axes))):
            cell: dict[str, Any] = dict(zip(dimensions, key, strict=True))
            for measure, values, half_width in columns:
                value = values[i]
                cell[measure] = {
                    "value": value,
                    "suppressed": value is None,
                    "accuracy": half_width,
                }
            out.append(cell)
        return out

    def as_document(self) -> dict[str, Any]:
        """JSON-ready: what the partner gets, and what it cost."""
        stored = self.stored
        left = {
            line.charge.scope: epsilon(line.left_micro)
            for line in self.budget
            if line.charge.scope == "partner" and line.charge.partner_id == stored.partner_id
        }
        return {
            "release_id": stored.id,
            "node_id": self.node_id,
            "partner_id": stored.partner_id,
            "schema": stored.schema_id,
            "query": stored.query.model_dump(mode="json"),
            "dimensions": [a.dimension for a in stored.axes],
            "measures": list(stored.query.measures),
            "cells": self.cells(),
            "mechanism": stored.mechanism,
            "delta": stored.delta,
            "confidence": CONFIDENCE,
            "accuracy": {c.measure: round(c.accuracy, 2) for c in stored.noise},
            # The scale lets a partner correct for post-processing (docs/policy.md).
            "scale": {c.measure: c.scale for c in stored.noise},
            "epsilon_spent": epsilon(self.charged_micro),
            "release_epsilon": epsilon(stored.epsilon_micro),
            "budget_left": left,
            "policy_hash": stored.policy_hash,
            "created_at": utc_text(stored.created_at),
            "cached": self.cached,
            # Only under an escalation: which, approved by whom, until when.
            **({"escalation": stored.escalation} if stored.escalation else {}),
        }
