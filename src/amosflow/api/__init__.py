"""The REST API of the control plane under /api/v1 (FastAPI, OpenAPI 3.1)."""
