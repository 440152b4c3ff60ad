"""HTTP tagging service on FastAPI: ``create_app`` (app factory), settings, micro-batcher."""
