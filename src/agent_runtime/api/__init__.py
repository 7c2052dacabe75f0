"""HTTP API (FastAPI). The only package that imports FastAPI; maps error codes to statuses."""
