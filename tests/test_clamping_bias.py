"""Clamping negative noisy counts to zero is free post-processing but biases small cells
upward; ``clamping_bias`` gives partners the size of that bias from mechanism and scale."""

from __future__ import annotations

import numpy as np
import pytest

from policies import privacy

CELLS = 200_000


def released_mean(
    mechanism: privacy.Mechanism, true_value: int, epsilon: float
) -> tuple[float, float]:
    """The mean released value of many cells with the same true value, and the scale."""
    delta = 1e-6 if mechanism == "gaussian" else None
    cost = privacy.plan(mechanism, {"cases": 1}, epsilon=epsilon, delta=delta)
    exact = np.full(CELLS, true_value, dtype=np.int64)
    noisy = privacy.noisy(cost, {"cases": exact})["cases"]
    clamped, _suppressed = privacy.publishable(noisy, 0)
    return float(clamped.mean()), cost.measures[0].scale


def test_about_one_per_zero_cell_at_laplace_scale_2() -> None:
    assert privacy.clamping_bias("laplace", 2.0) == pytest.approx(0.9595, abs=1e-4)
    assert privacy.clamping_bias("laplace", 2.0, 3) == pytest.approx(
        0.9595 * np.exp(-1.5), rel=1e-3
    )


@pytest.mark.parametrize(
    ("mechanism", "true_value", "epsilon"),
    [("laplace", 0, 0.5), ("laplace", 2, 0.5), ("gaussian", 0, 1.0), ("gaussian", 1, 1.0)],
)
def test_the_bias_matches_what_the_mechanism_releases(
    mechanism: privacy.Mechanism, true_value: int, epsilon: float
) -> None:
    mean, scale = released_mean(mechanism, true_value, epsilon)
    bias = privacy.clamping_bias(mechanism, scale, true_value)
    assert bias > 0.1
    assert mean - true_value == pytest.approx(bias, abs=0.05 * max(1.0, scale / 2))
    # a partner subtracting the bias is unbiased again, to sampling error
    assert mean - bias == pytest.approx(true_value, abs=0.05 * max(1.0, scale / 2))


def test_large_counts_are_not_biased() -> None:
    assert privacy.clamping_bias("laplace", 2.0, 100) < 1e-20
    assert privacy.clamping_bias("gaussian", 2.0, 100) == 0.0


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        privacy.clamping_bias("laplace", 2.0, -1)
