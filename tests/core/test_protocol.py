"""The socket protocol document is generated from the declarations that validate the events; it must be
current, and it must cover every event the namespace answers."""

from __future__ import annotations

from sessions import protocol
from sessions.events import LiveNamespace


def test_protocol_document_is_current() -> None:
    assert protocol.DOC.read_text(encoding="utf-8") == protocol.render(), \
        "docs/protocol.md is out of date: run `python -m sessions.protocol`"


def test_every_event_is_documented_with_who_may_send_it() -> None:
    text = protocol.render()
    names = [getattr(LiveNamespace, a).__event__.name for a in dir(LiveNamespace)
             if hasattr(getattr(LiveNamespace, a), "__event__")]
    assert len(names) >= 14
    for name in names:
        section = text.split(f"### `{name}`", 1)[1].split("###", 1)[0]
        assert "Who may send it:" in section, name
    for name, _, _ in protocol.SERVER_EVENTS:
        assert f"### `{name}`" in text
