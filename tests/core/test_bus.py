"""The order in which a process delivers a room's events coming over the bus (pure decisions), and the room's
stream appending an event once per key."""

from __future__ import annotations

from livecommerce.fanout import seeded, sequence
from sessions.stream import MemoryStream


def test_a_process_delivers_a_rooms_events_in_offset_order() -> None:
    assert sequence(None, "e1", 7) == "deliver"  # nothing delivered in this room yet
    assert sequence(("e1", 6), "e1", 7) == "deliver"  # the next one
    assert sequence(("e1", 7), "e1", 7) == "skip"  # already delivered (from the stream)
    assert sequence(("e1", 9), "e1", 7) == "skip"
    assert sequence(("e1", 6), "e1", 9) == "fill"  # 7 and 8 never came: read them first
    assert sequence(("e1", 6), "e2", 1) == "deliver"  # a new epoch: viewers ask for the full state


def test_a_viewer_joining_gives_the_room_a_position_only_if_it_has_none_in_this_epoch() -> None:
    assert seeded(None, "e1", 5) == ("e1", 5)
    assert seeded(("e1", 3), "e1", 5) == ("e1", 3)  # 4 and 5 may still be on their way to the others
    assert seeded(("e1", 8), "e1", 5) == ("e1", 8)
    assert seeded(("e0", 8), "e1", 5) == ("e1", 5)


async def test_an_event_published_again_under_its_key_is_the_same_event() -> None:
    stream = MemoryStream(100, 100, 60)
    first = await stream.publish(1, "chat", {"text": "만두"}, key="chat:1:a")
    again = await stream.publish(1, "chat", {"text": "만두"}, key="chat:1:a")
    other = await stream.publish(1, "chat", {"text": "만두"}, key="chat:1:b")
    plain = await stream.publish(1, "chat", {"text": "만두"})
    assert again == first and (other.offset, plain.offset) == (2, 3)
    rec = await stream.since(1, stream.epoch, 0)
    assert [e.offset for e in rec.events] == [1, 2, 3]
