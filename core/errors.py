"""Domain errors: each carries a stable ``code`` that adapters map to HTTP or frames."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class NotFound(DomainError):
    code = "not_found"


class ValidationFailed(DomainError):
    """Input was refused; ``fields`` maps each bad field to what is wrong with it."""

    code = "validation_failed"

    @classmethod
    def of(cls, fields: dict[str, str]) -> "ValidationFailed":
        first = next(iter(fields.items()))
        return cls(f"{first[0]}: {first[1]}", fields=fields)


class Conflict(DomainError):
    code = "conflict"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unauthorized(DomainError):
    code = "unauthorized"
