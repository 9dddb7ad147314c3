"""Domain errors: what services raise when they refuse a request. They know nothing of HTTP.

Each carries a sentence for the user (its message) and, where the fault lies in particular
fields, one message per field. The API maps the class to a status code in one place
(backend/main.py, `STATUS_OF`), and the response is the same `{detail, errors}` shape that
request validation produces; the CLI prints the sentence and exits non-zero.

- `Invalid`: a value the user can correct (a field, a mask, an answer).
- `Unreadable`: input that could not be read as what it claims to be (an archive, a file).
- `NotFound`: the thing asked for does not exist (or is not part of what was named).
- `Conflict`: the action does not apply to the thing in its current state.
- `TooLarge`: the input is over a size limit.
- `Unavailable`: something the request needs (the task queue) cannot be reached now.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request refused for a reason the user can act on; `str(exc)` is the sentence."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if errors is None:
            errors = [{"field": field, "message": message}] if field else []
        self.errors = errors

    @property
    def detail(self) -> str:
        """The response's sentence: a single-field error names its field, as validation does."""
        if self.field and len(self.errors) == 1:
            return f"Invalid input — {self.field}: {self.message}"
        return self.message


class Invalid(DomainError):
    """A value the user can correct; `errors` names the fields when there are several."""


class Unreadable(DomainError):
    """Input that could not be read as what it claims to be."""


class NotFound(DomainError):
    """The thing asked for does not exist, or is not part of what the request named."""


class Conflict(DomainError):
    """The action does not apply in the current state."""


class TooLarge(DomainError):
    """The input is over a size limit."""


class Unavailable(DomainError):
    """A service the request needs cannot be reached now; trying again later may work."""
