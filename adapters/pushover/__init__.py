"""Pushover: pushes to agents through the Pushover messages API."""
