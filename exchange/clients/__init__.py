"""Clients of a node: the peer client and pulling (a partner's side of a release), the push
client an agency runs, and showing a received release to a person."""
