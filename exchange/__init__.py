"""How parties talk: the HTTP API, message signatures, the peer client and the CLI."""
