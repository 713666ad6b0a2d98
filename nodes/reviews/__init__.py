"""Reviews: what a node tells its people and the public about what it did, read from its
verified audit log. The CLI calls them reports (``exchange report after-action``,
``exchange report transparency``); in code *report* already means an agency's push.

* `verified_log`: the log, verified, with the entries a review wants
* `budgets`: ε spent per ledger account, recomputed from the log, beside the caps
* `after_action`: what was shared, how fast, what was refused and what went wrong
* `transparency`: the public account of releases, refusals, budgets and escalations per
  period; `transparency_check` signs it and checks a signed one against an export
"""
