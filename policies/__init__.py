"""Red lines and privacy: policy documents, the deny-by-default engine, DP release, budget arithmetic."""
