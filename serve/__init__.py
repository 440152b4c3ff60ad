"""HTTP tagging service on FastAPI."""
