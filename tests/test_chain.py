"""How steps and checks are linked: order, answers that stop the walk, and waiting checks."""

from __future__ import annotations

import asyncio

from dnslib import DNSRecord

from resolverguard.chain import Request, link
from resolverguard.wire import parse_query


def request() -> Request:
    packet = bytes(DNSRecord.question("www.example.com").pack())
    head = parse_query(packet)
    assert head is not None
    return Request(head, packet, ("127.0.0.1", 5335), "udp", 0.0)


def test_checks_and_steps_run_in_order_and_an_answer_stops_the_walk() -> None:
    seen: list[str] = []

    class Note:
        def __init__(self, name: str, answer: bytes | None = None, wait: bool = False) -> None:
            self.name, self.answer, self.wait = name, answer, wait

        def check(self, _: Request):
            seen.append(self.name)
            if self.wait:

                async def later() -> None:
                    await asyncio.sleep(0)
                    seen.append(self.name + " done")

                return later()
            return self.answer

    class Wrap:
        async def __call__(self, req: Request, next_step):
            seen.append("wrap in")
            reply = await next_step(req)
            seen.append("wrap out")
            return reply

    async def last(_: Request) -> bytes:
        seen.append("last")
        return b"upstream"

    chain = link([Note("a"), Wrap(), Note("b", wait=True), Note("c")], last)
    assert asyncio.run(chain(request())) == b"upstream"
    assert seen == ["a", "wrap in", "b", "b done", "c", "last", "wrap out"]
    seen.clear()
    chain = link([Note("a"), Note("block", answer=b"sinkhole"), Note("never")], last)
    assert asyncio.run(chain(request())) == b"sinkhole" and seen == ["a", "block"]


def test_a_watcher_reads_the_reply_its_run_ends_with_whoever_made_it() -> None:
    replies: list[tuple[str, bytes | None]] = []

    class Watch:
        def __init__(self, name: str) -> None:
            self.name = name

        def check(self, _: Request) -> None:
            return None

        def seen(self, _: Request, reply: bytes | None) -> None:
            replies.append((self.name, reply))

    class Answer:
        def check(self, _: Request) -> bytes:
            return b"sinkhole"

    async def last(_: Request) -> bytes:
        return b"upstream"

    assert asyncio.run(link([Watch("w")], last)(request())) == b"upstream"
    assert asyncio.run(link([Watch("w"), Answer()], last)(request())) == b"sinkhole"  # a later check answered
    assert replies == [("w", b"upstream"), ("w", b"sinkhole")]


def test_a_watcher_that_changes_nothing_on_the_way_in_is_only_told_of_replies() -> None:
    asked: list[str] = []

    class Watch:
        def __init__(self, changes: bool) -> None:
            self.changes_way_in = changes

        def check(self, _: Request) -> None:
            asked.append(f"check {self.changes_way_in}")

        def seen(self, _: Request, reply: bytes | None) -> None:
            asked.append(f"seen {self.changes_way_in} {reply!r}")

    async def last(_: Request) -> bytes:
        return b"upstream"

    assert asyncio.run(link([Watch(False), Watch(True)], last)(request())) == b"upstream"
    assert asyncio.run(link([Watch(False)], last)(request())) == b"upstream"
    assert asked == ["check True", "seen False b'upstream'", "seen True b'upstream'", "seen False b'upstream'"]
