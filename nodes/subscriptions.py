"""Standing subscriptions: a partner's question, answered once per period."""

from __future__ import annotations
