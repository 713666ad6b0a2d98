"""Joint exercises: a federation of real node servers, a synthetic cross-border outbreak, and
a timeline of injected shocks, each checked against what the system should do
(``exchange exercise SCENARIO.yaml``; see docs/exercises.md)."""
