"""The node's HTTP API: the FastAPI app, its routes, request guards, problem+json errors,
bodies and upload sessions, metrics and logs, and the partner side of a release."""
