"""Signed evidence between nodes: RFC 9421 message signatures over RFC 9530 digests, and the
audit checkpoints peers witness through the releases they exchange."""
