"""Releases pulled for real between demo nodes, for the FHIR, HXL and ``exchange received``
tests: agencies push, XA pulls from XC (districts by week and age band, with suppression of
small noisy values) and from XB (national weekly totals), each signed and stored."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import tests.federation as fed
from exchange.clients.pulling import PullResult, pull
from exchange.demo.data import policy_yaml
from tests.federation import Member, federation, query


def close_policy(nation: fed.Nation) -> str:
    """The demo's policy, with districts, age bands and suppression for the close partner."""
    text = policy_yaml(nation).replace(
        "      area: {level: 1}\n      week: {period: week}\n",
        "      area: {level: 2}\n      week: {period: week}\n      age_band: {}\n",
        1,
    )
    return text.replace("    budget: {epsilon: 8, period: total}\n",
                        "    budget: {epsilon: 8, period: total}\n    suppress_below: 8\n", 1)  # fmt: skip


@dataclass
class Pulled:
    xa: Member  # the recipient
    xc: Member  # provider of ``districts``
    districts: PullResult  # XC -> XA: area:adm2 x week x age band, cases and admissions
    national: PullResult  # XB -> XA: area:adm0 x week, cases


@contextmanager
def pulled(directory: Path) -> Iterator[Pulled]:
    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        patch.setattr(fed, "policy_yaml", close_policy)
        members = federation(stack, directory, itertools.repeat(""), ("XA", "XB", "XC"))
        xa, xb, xc = members["XA"], members["XB"], members["XC"]
        both = ("cases", "admissions")
        yield Pulled(
            xa,
            xc,
            districts=pull(
                xa.node, xa.client_to(xc), query("area:adm2", "week", "age_band", measures=both)
            ),
            national=pull(xa.node, xa.client_to(xb), query("area:adm0", "week")),
        )
