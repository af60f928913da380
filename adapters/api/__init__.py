"""The REST API (``/api/v1``, Bearer API keys, JSON): see ``routes.OPERATIONS`` for every endpoint."""
