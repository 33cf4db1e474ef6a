"""The socket protocol document is generated from the declarations that validate the events; it must be
current, and it must cover every event the namespace answers, whichever domain declares it."""

from __future__ import annotations

from livecommerce import protocol
from livecommerce.app import live_parts_of_domains


def test_protocol_document_is_current() -> None:
    assert protocol.DOC.read_text(encoding="utf-8") == protocol.render(live_parts_of_domains()), \
        "docs/protocol.md is out of date: run `python -m livecommerce.protocol`"


def test_every_event_is_documented_with_who_may_send_it() -> None:
    parts = live_parts_of_domains()
    text = protocol.render(parts)
    names = [spec.name for spec in protocol.events(parts)]
    assert len(names) >= 14
    assert "buy" in names and "join" in names and "host:go_live" in names  # events of both domains
    for name in names:
        section = text.split(f"### `{name}`", 1)[1].split("###", 1)[0]
        assert "Who may send it:" in section, name
    for server_event in parts.server_events:
        assert f"### `{server_event.name}`" in text
