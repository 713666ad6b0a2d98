"""What a node is and holds: settings, identity, storage, the budget ledger, the audit log."""
