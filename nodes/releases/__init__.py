"""Releases, from both sides: the pull path (`pipeline`: policy, budget, exact aggregate,
noise, audit), its tables and store, the document a partner receives, and what this node
received from its peers (`received`)."""
