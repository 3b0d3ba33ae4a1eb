"""A fast local upstream for benchmarks: answers every A query with 192.0.2.1 straight from the
wire (no parsing library), optionally after a delay or never. 127.0.0.1 only.

    python bench/upstream.py --port 5399 [--delay 1.0] [--silent]
"""

from __future__ import annotations

import argparse
import asyncio
import struct

ANSWER = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x01"  # name ptr, A, IN, TTL 300


def reply_to(query: bytes) -> bytes | None:
    """Echo the question with one A record; None for anything that is not a plain query."""
    if len(query) < 17 or query[2] & 0x80:
        return None
    end = 12
    while end < len(query) and query[end] != 0:
        end += query[end] + 1
    end += 5  # root label + qtype + qclass
    if end > len(query):
        return None
    qtype = struct.unpack("!H", query[end - 4 : end - 2])[0]
    flags = struct.pack("!H", 0x8180 | (query[2] & 0x01) << 8)
    answers = 1 if qtype == 1 else 0
    header = query[:2] + flags + struct.pack("!HHHH", 1, answers, 0, 0)
    return header + query[12:end] + (ANSWER if answers else b"")


class Upstream(asyncio.DatagramProtocol):
    def __init__(self, delay: float, silent: bool) -> None:
        self.delay, self.silent = delay, silent
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = None if self.silent else reply_to(data)
        if reply is None or self.transport is None:
            return
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self.transport.sendto, reply, addr)
        else:
            self.transport.sendto(reply, addr)


async def main(port: int, delay: float, silent: bool) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Upstream(delay, silent), local_addr=("127.0.0.1", port))
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--silent", action="store_true")
    a = p.parse_args()
    asyncio.run(main(a.port, a.delay, a.silent))
