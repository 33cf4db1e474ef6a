"""Orders' domain errors: what a purchase, a status move or an Idempotency-Key can refuse, each with a
stable code and a message a person reads (an English msgid, translated where it is shown).

They carry no HTTP status: the edge decides those (`views.ERROR_STATUSES`, registered with the core's
`error_statuses`), and the socket answers with the code alone."""

from __future__ import annotations

from typing import Any

from livecommerce.errors import N_, AppError

from .rules import RuleError

__all__ = [
    "BroadcastNotLive",
    "IdempotencyInFlight",
    "IdempotencyKeyMissing",
    "IdempotencyKeyReused",
    "KeptRefusal",
    "KeyLost",
    "SoldOut",
    "refused",
]


class BroadcastNotLive(AppError):
    code = "broadcast_not_live"
    message = N_("You can buy only while the broadcast is live.")


class SoldOut(AppError):
    code = "sold_out"
    message = N_("Sorry, %(product)s just sold out.")


class IdempotencyKeyMissing(AppError):
    code = "idempotency_key_missing"
    message = N_("Send an Idempotency-Key header (1 to 255 characters) with every purchase.")


class IdempotencyKeyReused(AppError):
    code = "idempotency_key_reused"
    message = N_("This Idempotency-Key was already used for a different order.")


class IdempotencyInFlight(AppError):
    code = "idempotency_in_flight"
    message = N_("This order is still being placed. Wait a moment, then try again.")


class KeptRefusal(AppError):
    """A refusal kept with an Idempotency-Key, told again to a retry exactly as it was first told: its
    message is already in the buyer's language."""

    translated = True

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message, code=code, details=details)


class KeyLost(Exception):
    """The key was taken over by a retry after this attempt was presumed dead: do not commit."""


def refused(exc: RuleError) -> AppError:
    """A rule's refusal as a domain error, with the product it is about (if any) in its details."""
    details = {"product_id": exc.params["product_id"]} if "product_id" in exc.params else None
    return AppError(exc.message, code=exc.code, details=details, **exc.params)
