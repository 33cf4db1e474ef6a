"""JSON as the server writes it, everywhere: the API's answers, socket.io's packets (the module is the
`json` python-socketio is given), the room's stream and the answers kept with Idempotency-Keys.

Compact and UTF-8 as is: a Hangul syllable is 3 bytes, not a 6-byte `\\uXXXX` escape (Korean chat and
product names are most of what is sent), and there are no spaces. One encoder, so that the same data
is the same bytes whichever way it leaves."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads"]


def dumps(obj: Any, **kwargs: Any) -> str:
    """`obj` as compact UTF-8 JSON. Keyword arguments are `json.dumps`'s (python-socketio passes its own
    `separators`, the same as ours)."""
    kwargs["ensure_ascii"] = False
    kwargs.setdefault("separators", (",", ":"))
    return json.dumps(obj, **kwargs)


def loads(text: str | bytes, **kwargs: Any) -> Any:
    return json.loads(text, **kwargs)
