"""Domain errors and their translation into answers a person understands.

Services raise `AppError` subclasses; the HTTP middleware turns them into
`{"error": {"code", "message"}}` (JSON) or an error page (HTML), and socket handlers
into an error acknowledgement. Messages are written as English msgids and translated.
"""

from __future__ import annotations

from typing import Any


def N_(message: str) -> str:
    """Marks a message for the catalogue; it is translated where it is shown."""
    return message


class AppError(Exception):
    status = 400
    code = "bad_request"
    message = N_("The request could not be handled.")

    def __init__(self, message: str | None = None, *, code: str | None = None, status: int | None = None,
                 details: Any = None, **params: Any) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details
        self.params = params
        super().__init__(self.message)


class BadRequest(AppError):
    pass


class ValidationFailed(AppError):
    status = 422
    code = "validation_failed"
    message = N_("Some fields are not valid.")


class Unauthenticated(AppError):
    status = 401
    code = "unauthenticated"
    message = N_("Please sign in first.")


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    message = N_("You are not allowed to do this.")


class CsrfFailed(AppError):
    status = 403
    code = "csrf_failed"
    message = N_("This form has expired or came from another site. Reload the page and try again.")


class NotFound(AppError):
    status = 404
    code = "not_found"
    message = N_("Not found.")


class Conflict(AppError):
    status = 409
    code = "conflict"
    message = N_("This conflicts with the current state.")


class InvalidCredentials(AppError):
    status = 401
    code = "invalid_credentials"
    message = N_("Wrong username or password.")
