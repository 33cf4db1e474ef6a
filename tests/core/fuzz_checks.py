"""schemathesis' extra check for tests/core/test_api_fuzz.py (loaded through schemathesis.toml's `hooks`)."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def validator_agrees_with_document(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request the document allows is never refused by the request validator itself: a 422 for it must be
    a refusal with a reason of its own (`merchant_not_found`, `invalid_rrule`…), not `validation_failed`, but for
    an integer written with a fraction (2.0), which JSON Schema allows and the API does not."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return None
    # JSON Schema counts 2.0 as an integer; the API reads numbers strictly and wants 2 (the document's
    # description says so): that refusal, and only that one, is not a disagreement.
    problems = {d.get("problem") for d in error.get("details") or []}
    if error.get("code") == "validation_failed" and problems != {"Input should be a valid integer"}:
        raise AssertionError(f"the validator refused a request the document allows: {response.text[:500]}")
    return None
