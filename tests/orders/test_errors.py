"""Orders' refusals at the edge: the domain's errors carry a code and no HTTP status; the edge has a
status for every code they can carry, and a client reads the same body whichever way it asked."""

from __future__ import annotations

import contextvars
import inspect
import re
from pathlib import Path

from aiohttp import web

from livecommerce import i18n
from livecommerce.errors import AppError, error_body, error_statuses, status_for
from orders import errors, rules
from orders.views import ERROR_STATUSES


def test_every_refusal_orders_can_carry_has_its_status_at_the_edge() -> None:
    rule_codes = set(re.findall(r'RuleError\(\s*"([a-z_]+)"', Path(rules.__file__).read_text(encoding="utf-8")))
    assert {"sold_out", "invalid_phone", "cannot_cancel"} <= rule_codes
    domain = {cls for _, cls in inspect.getmembers(errors, inspect.isclass)
              if issubclass(cls, AppError) and cls.__module__ == errors.__name__ and cls is not errors.KeptRefusal}
    assert {cls.code for cls in domain} | rule_codes <= set(ERROR_STATUSES)
    assert all("status" not in vars(cls) for cls in domain)  # the domain says what, the edge says how


def test_the_status_is_the_edges() -> None:
    app = web.Application()
    assert status_for(app, errors.SoldOut()) == 400  # nothing registered: the core's default
    error_statuses(app).update(ERROR_STATUSES)
    assert status_for(app, errors.SoldOut()) == 409
    assert status_for(app, errors.IdempotencyKeyMissing()) == 400
    assert status_for(app, errors.refused(rules.RuleError("invalid_phone", "x"))) == 422
    assert status_for(app, AppError("x", code="sold_out", status=410)) == 410  # raised with one: that one


def test_a_kept_refusal_is_told_as_it_was_first_told() -> None:
    contextvars.copy_context().run(_told_in_korean)  # the language stays this test's


def _told_in_korean() -> None:
    i18n.activate("ko", i18n.load_catalogues(("ko",))["ko"])
    fresh = error_body(errors.BroadcastNotLive())
    assert fresh["code"] == "broadcast_not_live" and fresh["message"] != errors.BroadcastNotLive.message
    kept = error_body(errors.KeptRefusal("broadcast_not_live", errors.BroadcastNotLive.message))
    assert kept == {"code": "broadcast_not_live", "message": errors.BroadcastNotLive.message}  # not translated again
    assert error_body(errors.KeptRefusal("sold_out", "다 팔렸어요", {"product_id": 3}))["details"] == {"product_id": 3}
