"""Webhooks: Standard Webhooks signing and delivery over HTTP."""
