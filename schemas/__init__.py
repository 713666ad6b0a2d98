"""Standard report schemas: pure models, code lists and the registry of ``name@version``.

Nothing here does I/O, so every rule can be tested exhaustively and read by an auditor.
"""
