"""Domain errors and their translation into answers a person understands.

Services raise `AppError` subclasses; the HTTP middleware turns them into
`{"error": {"code", "message"}}` (JSON) or an error page (HTML), and socket handlers
into an error acknowledgement. Messages are written as English msgids and translated.

The body a client reads is built by one function, `error_body`, for every transport. HTTP statuses
belong to the edge: the core's own errors below carry a default `status`; a domain's errors carry
only their code, and the domain registers the status each code is answered with (`error_statuses`),
which `status_for` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from aiohttp import web

from . import i18n


def N_(message: str) -> str:
    """Marks a message for the catalogue; it is translated where it is shown."""
    return message


class AppError(Exception):
    status = 400  # the answer when neither the error nor the app's table of statuses says otherwise
    code = "bad_request"
    message = N_("The request could not be handled.")
    translated = False  # True: `message` is already in the reader's language (an answer told again)

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

    @classmethod
    def with_params(cls, message: str, code: str, params: Mapping[str, object]) -> Self:
        """A lower layer's refusal told again: its message, its code and the values of the message's
        `%(name)s` placeholders (every one a placeholder, whatever its name: none is taken for `status`)."""
        error = cls(message, code=code)
        error.params = dict(params)
        return error


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


class TooManyAttempts(AppError):
    """Refused for a while: the answer says how long (`Retry-After`, and "try again in N seconds")."""

    status = 429
    code = "too_many_attempts"
    message = N_("Too many attempts. Try again in %(seconds)s seconds.")

    def __init__(self, seconds: int, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message, code=code, seconds=max(1, seconds))
        self.retry_after = max(1, seconds)


class TooManyConnections(AppError):
    """An address already holds `security.connections_per_address` sockets on the live room."""

    status = 429
    code = "too_many_connections"
    message = N_("Too many connections from your network. Close another tab, then try again.")
    retry_after = 30


class Unavailable(AppError):
    """A part the answer needs (the database, Redis) did not answer: nothing was done, try again."""

    status = 503
    code = "unavailable"
    message = N_("The service is busy for a moment. Please try again.")
    retry_after = 1


class InvalidCredentials(AppError):
    status = 401
    code = "invalid_credentials"
    message = N_("Wrong username or password.")


def error_body(exc: AppError) -> dict[str, Any]:
    """What a client reads about a refusal, in the current language: `{"code", "message"[, "details"]}`.
    The same under `"error"` in an HTTP answer, a socket acknowledgement and an answer kept with an
    Idempotency-Key."""
    message = exc.message if exc.translated else i18n.gettext(exc.message, **exc.params)
    body: dict[str, Any] = {"code": exc.code, "message": message}
    if exc.details is not None:
        body["details"] = exc.details
    return body


ERROR_STATUSES = web.AppKey("error_statuses", dict[str, int])


def error_statuses(app: web.Application) -> dict[str, int]:
    """The app's HTTP status for each error code, made on first use: a domain's edge adds the codes of
    its errors in its `setup`."""
    statuses = app.get(ERROR_STATUSES)
    if statuses is None:
        statuses = app[ERROR_STATUSES] = {}
    return statuses


def status_for(app: web.Application, exc: AppError) -> int:
    """The HTTP status `exc` is answered with: the one it was raised with, else the one registered for
    its code, else its class's."""
    if "status" in exc.__dict__:
        return exc.status
    statuses = app.get(ERROR_STATUSES)
    return statuses.get(exc.code, exc.status) if statuses else exc.status
