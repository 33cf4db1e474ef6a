"""How buyers pay: the provider interface, and the built-in offline provider (bank transfer, 무통장입금,
and pay on delivery, 만나서 결제), which needs no outside service.

A provider says which methods it offers a market, and what a new purchase needs to be paid (a
transfer deadline and the account, or a gateway's checkout address). A card or easy-pay gateway
tells the server later that a purchase was paid, through its webhook: the gateway's provider turns
the signed webhook into a `PaymentEvent`, and `fulfilment.apply_payment_event` applies it (idempotent:
a webhook delivered twice pays once). See docs/payments.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from aiohttp import web

from livecommerce.errors import N_

from .models import MarketOrderSettings, Purchase
from .rules import BANK_TRANSFER, COD

METHOD_LABELS: dict[str, str] = {
    BANK_TRANSFER: N_("Bank transfer"),
    COD: N_("Pay on delivery"),
}


@dataclass(frozen=True)
class PaymentStart:
    """What the buyer is told right after ordering, and what is stored on the purchase."""

    provider: str
    method: str
    pay_by: datetime | None = None  # unpaid by then: cancelled (`fulfilment.expire_overdue`), units given back
    instructions: dict[str, str | int] = field(default_factory=dict)  # shown to the buyer
    redirect_url: str | None = None  # a gateway's checkout page, if the buyer must go there


@dataclass(frozen=True)
class PaymentEvent:
    """A gateway's verified news about one purchase."""

    provider: str
    purchase_id: int
    ref: str  # the gateway's transaction id (unique per provider)
    amount: int  # whole won
    status: str  # "paid" (other statuses are logged and ignored by the built-in flow)


class InvalidWebhook(Exception):
    """A webhook whose signature or content does not check out: answer 400 and record nothing."""


class PaymentProvider(Protocol):
    name: str

    def methods(self, settings: MarketOrderSettings | None) -> list[str]:
        """The methods this provider offers for a market (none when it is not set up for it)."""
        ...

    def start(self, purchase: Purchase, settings: MarketOrderSettings | None, now: datetime) -> PaymentStart:
        """Called inside the purchase's transaction, after its rows are written (so `purchase.id` and
        `purchase.total` are known). Must not do network calls: the stock rows are locked."""
        ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        """Check a webhook's signature and read it; raise `InvalidWebhook` otherwise."""
        ...


class OfflineProvider:
    """Bank transfer to the market's account (confirmed by staff when the money arrives) and pay on
    delivery (collected at the door: the line is paid when it is delivered)."""

    name = "offline"

    def methods(self, settings: MarketOrderSettings | None) -> list[str]:
        out: list[str] = []
        if settings is not None and settings.bank_account:
            out.append(BANK_TRANSFER)
        if settings is None or settings.cod_enabled:
            out.append(COD)
        return out

    def start(self, purchase: Purchase, settings: MarketOrderSettings | None, now: datetime) -> PaymentStart:
        if purchase.payment_method == BANK_TRANSFER and settings is not None:
            return PaymentStart(self.name, BANK_TRANSFER, now + timedelta(hours=settings.transfer_hours),
                                instructions(purchase, settings))
        return PaymentStart(self.name, COD, None, instructions(purchase, settings))

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        raise InvalidWebhook("the offline provider has no webhook: staff confirm transfers")


def instructions(purchase: Purchase, settings: MarketOrderSettings | None) -> dict[str, str | int]:
    """What to show a buyer about paying an order (bank account and amount, or "pay at the door")."""
    if purchase.payment_method == BANK_TRANSFER and settings is not None:
        return {"bank": settings.bank_name, "account": settings.bank_account, "holder": settings.bank_holder,
                "amount": purchase.total}
    return {"amount": purchase.total}


PAYMENT_PROVIDERS = web.AppKey("payment_providers", dict[str, PaymentProvider])


def default_providers() -> dict[str, PaymentProvider]:
    return {OfflineProvider.name: OfflineProvider()}


def offered(providers: Mapping[str, PaymentProvider], settings: MarketOrderSettings | None) -> dict[str, str]:
    """method -> provider name, for every method some provider offers this market (first one wins)."""
    out: dict[str, str] = {}
    for provider in providers.values():
        for method in provider.methods(settings):
            out.setdefault(method, provider.name)
    return out
