"""The closed vocabularies of audit entries, so tools can count and filter without parsing prose.

Every new entry names its action, outcome, role and the *kind* of its actor and resource from
fixed lists (docs/audit.md, "Vocabulary"); `nodes.audit.log.append` types them as ``Literal``
(mypy catches a misspelt outcome) and checks them again at run time (`check`). Free text
stays in ``reason`` only.

Entries written before these vocabularies (format 1, without ``partner``, ``schema`` and
``epsilon_micro``) are stored and verified exactly as written: their bytes are what was
signed. `normalize` maps their old spellings onto today's for reading (the CLI's
``entries`` and ``summary``); it never changes what is stored or exported.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, get_args

from nodes.audit.errors import InvalidEntryError

Action = Literal[
    "audit.anchor",
    "audit.epoch",
    "audit.export",
    "auth.failed",
    "auth.forbidden",
    "escalation.approve",
    "escalation.expire",
    "escalation.propose",
    "escalation.revoke",
    "key.rotate",
    "node.backup",
    "node.restore",
    "notice.create",
    "notice.fetch",
    "peer.add",
    "peer.epoch",
    "peer.flagged",
    "peer.key.add",
    "peer.key.revoke",
    "peer.remove",
    "policy.apply",
    "policy.load",
    "release",
    "release.receive",
    "release.request",
    "report.push",
    "session.close",
    "session.open",
    "subscription.add",
    "subscription.cancel",
    "subscription.end",
    "subscription.fetch",
    "token.issue",
    "token.revoke",
    "token.rotate",
]
#: allowed: the act happened; denied: refused (policy, budget, scope, role, credential,
#: signature); replayed: answered from an earlier result, nothing new done or charged;
#: flagged: a peer's checkpoint contradicts what it showed before.
Outcome = Literal["allowed", "denied", "replayed", "flagged"]
Role = Literal["agency", "analyst", "auditor", "operator", "partner", "node", "unknown"]

ACTIONS: Final = frozenset(get_args(Action))
OUTCOMES: Final = frozenset(get_args(Outcome))
ROLES: Final = frozenset(get_args(Role))
#: ``actor`` is ``KIND:NAME`` or, for these kinds, the bare kind: ``token:NAME`` (a bearer
#: token), ``partner:ID`` (a peer node), ``operator:ACCOUNT`` or ``operator`` (the CLI on the
#: node's machine), ``node`` (this node by itself), ``unknown`` (no credential we know).
ACTOR_KINDS: Final = frozenset({"token", "partner", "operator", "node", "unknown"})
_BARE_ACTORS: Final = frozenset({"operator", "node", "unknown"})
#: ``resource`` is ``KIND:VALUE`` segments joined by ``/``; the last names the thing, any
#: before it its owner (``partner:XC/release:7``). Only the first kind is checked.
RESOURCE_KINDS: Final = frozenset(
    {"checkpoint", "key", "log", "partner", "policy", "release", "report", "route", "schema"}
    | {"session", "token", "escalation", "notice", "subscription"}
)

#: ``rule`` names what refused a release: the policy decision's rule (``agreement ID``,
#: ``red line ID``, ``deny by default``; ids as policies.document spells them) or
#: ``budget`` (the agreement allowed it, the privacy budget could not pay).
RULE_FORM: Final = re.compile(
    r"(?:agreement|red line) [A-Za-z0-9][A-Za-z0-9_.-]{0,63}|deny by default|budget"
)

#: Format-1 outcomes and their meaning today.
_OLD_OUTCOMES: Final = {
    "done": "allowed",
    "received": "allowed",
    "loaded": "allowed",
    "cached": "replayed",
    "rejected": "denied",
}


def check(
    *, actor: str, role: str, action: str, outcome: str, resource: str, rule: str | None = None
) -> None:
    """Raise InvalidEntryError unless every field is in its vocabulary."""
    if rule is not None and RULE_FORM.fullmatch(rule) is None:
        raise InvalidEntryError(
            "rule must be 'agreement ID', 'red line ID', 'deny by default' or 'budget'"
        )
    if action not in ACTIONS:
        raise InvalidEntryError(f"action is not one of the audit actions: {sorted(ACTIONS)}")
    if outcome not in OUTCOMES:
        raise InvalidEntryError(f"outcome must be one of {sorted(OUTCOMES)}")
    if role not in ROLES:
        raise InvalidEntryError(f"role must be one of {sorted(ROLES)}")
    kind, sep, name = actor.partition(":")
    if kind not in ACTOR_KINDS or (not sep and kind not in _BARE_ACTORS) or (sep and not name):
        raise InvalidEntryError(f"actor must be KIND:NAME, KIND one of {sorted(ACTOR_KINDS)}")
    kind, sep, value = resource.partition(":")
    if kind not in RESOURCE_KINDS or not sep or not value:
        raise InvalidEntryError(f"resource must start with KIND:, one of {sorted(RESOURCE_KINDS)}")


def normalize(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry (parsed) in today's vocabulary, for reading; format-1 spellings mapped.

    Adds ``format`` (1 or 2), ``rule`` (None where the entry has none) and, for format 1,
    ``partner``, ``schema`` and ``epsilon_micro`` recovered where the old spelling carried
    them (else None).
    """
    if "epsilon_micro" in entry:
        return {"rule": None, **entry, "format": 2}
    out = {**entry, "format": 1, "partner": None, "schema": None, "epsilon_micro": None}
    out["rule"] = None
    out["outcome"] = _OLD_OUTCOMES.get(entry["outcome"], entry["outcome"])
    actor: str = entry["actor"]
    kind, sep, name = actor.partition(":")
    if kind in {"peer", "partner"} and sep:
        out["actor"] = f"partner:{name}"
        out["partner"] = name
    elif kind in {"unverified-key", "anonymous"}:
        out["actor"] = "unknown"
    elif kind not in ACTOR_KINDS:
        out["actor"] = f"token:{actor}"
    resource: str = entry["resource"]
    if resource.startswith("peer:"):
        out["resource"] = "partner:" + resource.removeprefix("peer:")
        out["partner"] = out["partner"] or resource.removeprefix("peer:").split("/")[0]
    elif resource.startswith("schema:"):
        out["schema"] = resource.removeprefix("schema:").split("/")[0]
    elif resource.startswith("release/"):
        out["resource"] = "release:" + resource.removeprefix("release/")
    elif resource.startswith("schema/"):
        out["schema"] = resource.removeprefix("schema/")
        out["resource"] = "schema:" + out["schema"]
    return out
