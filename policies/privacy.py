"""Differential privacy, through OpenDP only. The one place that enables OpenDP features.

Only ``contrib`` is enabled (``assert_only_contrib`` checks it at start-up): the others
(``honest-but-curious``, ``idealized-numerics``) weaken the guarantees. Releases use one
vector mechanism per measure on ``int64`` arrays: the discrete Laplace mechanism for pure
ε-DP, or the discrete Gaussian under zero-concentrated DP converted to (ε, δ) where an
agreement asks for it. Scales come from closed forms (never ``Context``, whose parameter
search costs seconds); the *charged* cost is always what the built measurement's privacy
map says, rounded up to integer micro-epsilon.

What is post-processing (free under DP): clamping to zero, rounding (the mechanisms are
already integer), and suppressing noisy values below a threshold. Post-processing costs no
privacy but is not unbiased: clamping raises the expected value of cells near zero (about
+0.96 per zero cell at Laplace scale 2), so a sum of many small released cells overstates.
``clamping_bias`` says by how much, from the mechanism and scale a release states.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import opendp.mod
import opendp.prelude as dp
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from policies.budget import MICRO, cap_micro, cost_micro

dp.enable_features("contrib")

Mechanism = Literal["laplace", "gaussian"]
CONFIDENCE = 0.95
_PARALLEL_CELLS = 4096  # below this, a thread pool costs more than it saves
_MARGIN = 1 + 1e-9
Counts = NDArray[np.int64]


class MeasureCost(BaseModel):
    """How one measure is noised: its sensitivity, the noise scale, what it spends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    measure: str
    d_in: int  # the most one person can change this measure's vector (L1, or L2 rounded up)
    scale: float
    epsilon_micro: int
    accuracy: float  # half-width of the 95% interval of each cell's noise


class PrivacyCost(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mechanism: Mechanism
    epsilon_micro: int  # the sum over measures: what the ledger charges
    delta: float | None
    confidence: float = CONFIDENCE
    measures: tuple[MeasureCost, ...]


def assert_only_contrib() -> None:
    """Raise if any OpenDP feature but ``contrib`` is on (someone enabled one elsewhere)."""
    enabled = set(opendp.mod.GLOBAL_FEATURES)
    if enabled != {"contrib"}:
        raise RuntimeError(f"OpenDP features must be exactly {{'contrib'}}, found {enabled}")


def _measurement(mechanism: Mechanism, scale: float) -> Any:
    domain = dp.vector_domain(dp.atom_domain(T=dp.i64))
    if mechanism == "laplace":
        return dp.m.make_laplace(domain, dp.l1_distance(T=dp.i64), scale=scale)
    return dp.m.make_gaussian(domain, dp.l2_distance(T=dp.i64), scale=scale)


def _loss(mechanism: Mechanism, measurement: Any, d_in: int, delta: float | None) -> float:
    if mechanism == "laplace":
        return float(measurement.map(d_in))
    assert delta is not None
    approximate: Any = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(measurement), delta)
    return float(approximate.map(d_in)[0])


def _scale_for(mechanism: Mechanism, d_in: int, epsilon: float, delta: float | None) -> float:
    """The scale that spends at most ``epsilon``; the tiny margin absorbs float rounding in
    the privacy map, so a share of 166,667 µε is charged 166,667 µε, not one more."""
    if mechanism == "laplace":
        return d_in / epsilon * _MARGIN
    # zCDP rho gives (rho + 2 sqrt(rho ln 1/delta), delta)-DP; OpenDP's conversion is tighter.
    assert delta is not None
    log_term = math.log(1 / delta)
    rho = (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2
    return d_in / math.sqrt(2 * rho) * _MARGIN


def _accuracy(mechanism: Mechanism, scale: float) -> float:
    alpha = 1 - CONFIDENCE
    if mechanism == "laplace":
        return float(dp.discrete_laplacian_scale_to_accuracy(scale, alpha))
    return float(dp.discrete_gaussian_scale_to_accuracy(scale, alpha))


def plan(
    mechanism: Mechanism,
    sensitivities: Mapping[str, int],
    *,
    epsilon: float,
    delta: float | None,
) -> PrivacyCost:
    """Split ``epsilon`` (and ``delta``) over the measures in whole µε; price each with the
    privacy map of the measurement that will actually run."""
    total = cap_micro(epsilon)
    count = len(sensitivities)
    shares = [total // count + (1 if i < total % count else 0) for i in range(count)]
    delta_share = None if delta is None else delta / count
    costs: list[MeasureCost] = []
    for (measure, d_in), share in zip(sensitivities.items(), shares, strict=True):
        scale = _scale_for(mechanism, d_in, share / MICRO, delta_share)
        spent = _loss(mechanism, _measurement(mechanism, scale), d_in, delta_share)
        costs.append(
            MeasureCost(
                measure=measure,
                d_in=d_in,
                scale=scale,
                epsilon_micro=cost_micro(spent),
                accuracy=_accuracy(mechanism, scale),
            )
        )
    return PrivacyCost(
        mechanism=mechanism,
        epsilon_micro=sum(c.epsilon_micro for c in costs),
        delta=delta,
        measures=tuple(costs),
    )


def _noise_one(cost: MeasureCost, cost_plan: PrivacyCost, exact: Counts) -> Counts:
    measurement = _measurement(cost_plan.mechanism, cost.scale)
    delta_share = None if cost_plan.delta is None else cost_plan.delta / len(cost_plan.measures)
    spent = cost_micro(_loss(cost_plan.mechanism, measurement, cost.d_in, delta_share))
    if spent > cost.epsilon_micro:  # never draw noise that costs more than was charged
        raise RuntimeError(f"{cost.measure}: mechanism costs {spent} µε, {cost.epsilon_micro} paid")
    exact = np.ascontiguousarray(exact, dtype=np.int64)
    return np.asarray(measurement(exact), dtype=np.int64)


def noisy(cost_plan: PrivacyCost, exact: Mapping[str, Counts]) -> dict[str, Counts]:
    """Apply each measure's mechanism to its exact vector. Call only after the budget is
    committed: this is the moment privacy is spent. Large releases noise measures in
    parallel (OpenDP's sampler runs without the GIL)."""
    jobs = [(c, exact[c.measure]) for c in cost_plan.measures]
    cells = sum(len(v) for _c, v in jobs)
    if len(jobs) > 1 and cells >= _PARALLEL_CELLS:
        workers = min(len(jobs), os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outputs = list(pool.map(lambda job: _noise_one(job[0], cost_plan, job[1]), jobs))
    else:
        outputs = [_noise_one(c, cost_plan, values) for c, values in jobs]
    return {c.measure: out for (c, _v), out in zip(jobs, outputs, strict=True)}


def publishable(values: Counts, suppress_below: int) -> tuple[Counts, NDArray[np.bool_]]:
    """Post-processing: negative noisy counts become 0; those below the threshold are marked
    suppressed (the cell stays in the release, its value withheld). Clamping is free under DP
    but biases small cells upward: see ``clamping_bias``."""
    clamped = np.maximum(values, 0)
    return clamped, clamped < suppress_below


def clamping_bias(mechanism: Mechanism, scale: float, true_value: int = 0) -> float:
    """How much clamping at zero raises a cell's expected released value: E[max(x + N, 0)] - x.

    That is E[max(-(x + N), 0)], the expected part of the noise below -x. For the discrete
    Laplace mechanism (P(N = k) proportional to a^|k|, a = exp(-1/scale)) it is
    a^(x+1) / ((1 + a)(1 - a)): 0.96 at scale 2 and x = 0, shrinking by a factor a per unit
    of x. For the discrete Gaussian (P(N = k) proportional to exp(-k^2 / 2 scale^2)) it is
    summed over the distribution. Raises ValueError for a negative ``true_value``.
    """
    if true_value < 0 or scale <= 0:
        raise ValueError("a true count is non-negative and a scale positive")
    if mechanism == "laplace":
        a = math.exp(-1 / scale)
        return float(a ** (true_value + 1) / ((1 + a) * (1 - a)))
    reach = math.ceil(40 * scale) + 1  # beyond 40 scales the mass is below 1e-300
    noise = np.arange(-reach, reach + 1, dtype=np.float64)
    weights = np.exp(-(noise**2) / (2 * scale**2))
    below = np.maximum(-(true_value + noise), 0)
    return float((below * weights).sum() / weights.sum())
