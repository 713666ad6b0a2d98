"""Emergency escalations: a temporary widening of one agreement, in force once a second operator approves it."""

from __future__ import annotations
