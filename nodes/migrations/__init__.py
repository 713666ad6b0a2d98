"""Alembic migrations of the node database; run them with ``exchange db upgrade``."""
