"""HTTP routes, one module per audience: agencies, schemas (public metadata), health."""
