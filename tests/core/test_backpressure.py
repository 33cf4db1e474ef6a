"""A viewer too slow to keep up, and an address holding too many sockets.

A viewer whose connection stops reading (a raw websocket with a small receive buffer that joins the room and
then reads nothing) is cut off by the server once 1 MiB waits unsent for it, rather than growing the
server's memory with every event of the room; a viewer that reads gets every event,
in order; the slow one, coming back with its position, gets what it missed. One address can hold
`security.connections_per_address` sockets: the next is refused (a connect error on the socket, `429` with
`Retry-After` on a new Engine.IO session), and a socket that closes makes room again."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import socket
import struct
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web
from aiohttp.test_utils import TestServer

from livecommerce.app import create_app
from livecommerce.config import Config, SecurityConfig
from livecommerce.fanout import MAX_BUFFER
from livecommerce.keys import AppKeys
from livecommerce.throttle import OPEN_SOCKETS, OpenSockets
from sessions.room import publish
from tests.processes import until
from tests.support import NS, Viewer, World, socket_for

EVENTS = 1000
TEXT = "가" * 2000  # about 6 KB a notice: 6 MB for the room in all, several times what the kernel buffers hold


# -- the count, as a plain object ----------------------------------------------------------------------------

def test_open_sockets_are_counted_per_address_and_make_room_when_closed() -> None:
    open_ = OpenSockets(2)
    assert open_.opened("a", "10.0.0.1") and open_.opened("b", "10.0.0.1")
    assert open_.full("10.0.0.1") and not open_.opened("c", "10.0.0.1")
    assert open_.opened("c", "10.0.0.2"), "another address has its own count"
    assert open_.opened("a", "10.0.0.1") is False  # full: a sid already counted is not counted twice either
    open_.closed("a")
    open_.closed("a")  # closing twice frees one place only
    assert open_.by_address == {"10.0.0.1": 1, "10.0.0.2": 1}
    assert open_.opened("d", "10.0.0.1")
    open_.closed("zzz")  # a socket never counted (refused) changes nothing
    assert open_.by_address == {"10.0.0.1": 2, "10.0.0.2": 1}
    unlimited = OpenSockets(0)
    assert all(unlimited.opened(str(i), "10.0.0.1") for i in range(1000)) and not unlimited.full("10.0.0.1")


# -- a raw websocket client that can stop reading -------------------------------------------------------------

def ws_frame(text: str) -> bytes:
    """A masked text frame, as a client must send."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@dataclasses.dataclass
class RawViewer:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    got: bytearray

    async def until_seen(self, marker: bytes, limit: float = 10.0) -> None:
        async def read() -> None:
            while marker not in self.got:
                chunk = await self.reader.read(65536)
                assert chunk, "closed before " + repr(marker)
                self.got += chunk
        await asyncio.wait_for(read(), limit)

    async def rest(self, limit: float = 30.0) -> bytes:
        """Everything left until the server closes the connection."""
        async def read() -> None:
            with contextlib.suppress(ConnectionResetError):  # cut, not closed
                while chunk := await self.reader.read(1 << 20):
                    self.got += chunk
        await asyncio.wait_for(read(), limit)
        return bytes(self.got)


async def raw_viewer(port: int, bid: int) -> RawViewer:
    """Connected to the live room and joined to broadcast `bid`, with a receive buffer as small as the kernel
    allows, so that what it does not read stays on the server's side."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 15)  # reads stop past 64 KB unread
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    raw = RawViewer(reader, writer, bytearray())
    await raw.until_seen(b'"pingInterval"')  # Engine.IO's open packet
    writer.write(ws_frame("40/live,"))
    await raw.until_seen(b"40/live,{")
    writer.write(ws_frame(f'42/live,1["join",{{"broadcast_id":{bid}}}]'))
    await raw.until_seen(b"43/live,1[")
    return raw


async def test_a_viewer_that_stops_reading_is_dropped_and_catches_up_when_it_comes_back(
        server: TestServer, world: World) -> None:
    app = server.app
    assert app is not None
    bid = world.live.id
    reader = Viewer(await socket_for(f"http://127.0.0.1:{server.port}"))
    slow = await raw_viewer(server.port, bid)
    try:
        joined = await reader.call("join", {"broadcast_id": bid})
        assert joined["ok"]
        connected = app[AppKeys.metrics].sockets_connected._value.get()
        assert connected == 2
        sent = []
        for i in range(EVENTS):  # at the pace the reader reads (it shares this test's event loop)
            sent.append(await publish(app, bid, "notice", {"text": f"{i} {TEXT}"}))
            if i % 20 == 19:
                await reader.wait_for(lambda i=i: len([e for e in reader.events if e["t"] == "notice"]) > i,
                                      limit=30)

        # the one that reads gets every event once, in order
        await reader.wait_for(lambda: len([e for e in reader.events if e["t"] == "notice"]) == EVENTS, limit=30)
        assert [e["o"] for e in reader.events if e["t"] == "notice"] == [e.offset for e in sent]
        # the one that stopped reading was cut off long before the room's 6 MB: what it left unread is freed
        await until(lambda: asyncio.sleep(0, app[AppKeys.metrics].sockets_connected._value.get()),
                    lambda n: n == 1, 10)
        got = await slow.rest()
        assert len(got) < EVENTS * len(TEXT.encode()) - 2 * MAX_BUFFER, len(got)

        # back with the position of the last event it had whole, it gets what it missed
        had = [int(part.split(b" ", 1)[0]) for part in got.split(b'{"text":"')[1:] if b" " in part[:8]]
        last = sent[max(had)] if had else None
        back = Viewer(await socket_for(f"http://127.0.0.1:{server.port}"))
        try:
            since = {"epoch": sent[0].epoch, "offset": last.offset} if last else None
            ack = await back.call("join", {"broadcast_id": bid, **({"since": since} if since else {})})
            assert ack["ok"], ack
            data = ack["data"]
            if data.get("recovered"):
                await back.wait_for(lambda: len([e for e in back.events if e["t"] == "notice"])
                                    == EVENTS - 1 - max(had), limit=30)
                missed = [e["o"] for e in back.events if e["t"] == "notice"]
                assert missed == [e.offset for e in sent[max(had) + 1:]]
            else:  # too far behind for the stream: the full state instead, said so
                assert data["reason"], data
        finally:
            await back.sio.disconnect()
    finally:
        slow.writer.close()
        await reader.sio.disconnect()


# -- sockets per address --------------------------------------------------------------------------------------

@pytest.fixture
def app(config: Config) -> web.Application:
    return create_app(dataclasses.replace(config, security=dataclasses.replace(SecurityConfig(),
                                                                                connections_per_address=3)))


async def test_an_address_holds_so_many_sockets_and_the_next_is_refused(server: TestServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    held = [await socket_for(base) for _ in range(3)]
    try:
        assert await try_connect(base) is None, "a fourth socket from the same address is refused"
        async with aiohttp.ClientSession() as http:  # a new Engine.IO session is refused before it is made
            async with http.get(f"{base}/socket.io/?EIO=4&transport=polling") as resp:
                body: dict[str, Any] = await resp.json()
                assert resp.status == 429 and resp.headers["Retry-After"] == "30", body
                assert body["error"]["code"] == "too_many_connections"
        await held.pop().disconnect()
        app = server.app
        assert app is not None
        await until(lambda: asyncio.sleep(0, sum(app[OPEN_SOCKETS].by_address.values())), lambda n: n == 2, 10)
        again = await try_connect(base)
        assert again is not None, "a socket that closed made room"
        held.append(again)
    finally:
        for s in held:
            await s.disconnect()


async def try_connect(base: str) -> socketio.AsyncClient | None:
    sio = socketio.AsyncClient(reconnection=False)
    try:
        await sio.connect(base, namespaces=[NS], transports=["websocket"], wait_timeout=5)
    except socketio.exceptions.ConnectionError:
        if sio.eio.http is not None:
            await sio.eio.http.close()
        return None
    return sio
