"""Micro-batching of model calls: answers stay with their own names, and batching is bounded."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path

import dns.message
import dns.query
import numpy as np
from dnsfixtures import Upstream, run_resolver, run_upstream

from resolverguard.config import Config, Endpoint
from resolverguard.steps.score import batch_scorer


class LengthScorer:
    """score = len(text) / 100, so a mixed-up answer is visible; records each batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def score(self, texts):
        self.batches.append(list(texts))
        return np.array([len(t) / 100 for t in texts], dtype=np.float32)


def test_concurrent_names_share_one_call_and_keep_their_own_scores() -> None:
    scorer = LengthScorer()

    async def run() -> list[float]:
        batcher = batch_scorer(scorer, max_batch=64)
        return list(await asyncio.gather(*(batcher.submit("x" * n) for n in range(1, 41))))

    scores = asyncio.run(run())
    assert np.allclose(scores, [n / 100 for n in range(1, 41)])
    assert [len(b) for b in scorer.batches] == [40]


def test_batch_size_and_delay_bounds() -> None:
    scorer = LengthScorer()

    async def run() -> float:
        batcher = batch_scorer(scorer, max_batch=16, max_delay=0.002)
        await asyncio.gather(*(batcher.submit("a" * n) for n in range(40)))
        lone_started = time.perf_counter()
        await batcher.submit("lone")
        return time.perf_counter() - lone_started

    lone = asyncio.run(run())
    assert [len(b) for b in scorer.batches] == [16, 16, 8, 1]
    assert lone < 0.5  # a lone name waits at most max_delay (2 ms) plus scheduling, never forever


def test_scorer_failure_reaches_every_waiter() -> None:
    class Broken:
        def score(self, texts):
            raise RuntimeError("boom")

    async def run() -> list[object]:
        batcher = batch_scorer(Broken())
        return await asyncio.gather(*(batcher.submit(t) for t in "abc"), return_exceptions=True)

    assert all(isinstance(x, RuntimeError) for x in asyncio.run(run()))


def test_burst_of_unseen_names_over_sockets_is_scored_in_batches(tmp_path: Path) -> None:
    scorer = LengthScorer()
    with run_upstream(Upstream()) as up:
        cfg = Config(upstreams=(Endpoint("127.0.0.1", up.port),))
        with (
            run_resolver(cfg, tmp_path / "q.log", scorer=scorer) as r,
            concurrent.futures.ThreadPoolExecutor(32) as pool,
        ):
            names = [f"www.{'q' * (5 + i % 40)}{i}.com" for i in range(200)]
            list(
                pool.map(lambda n: dns.query.udp(dns.message.make_query(n, "A"), r.host, port=r.port, timeout=5), names)
            )
    lines = r.log_lines()
    assert len(lines) == 200
    for line in lines:  # every query got the score of its own name
        assert abs(line["score"] - len(line["scored"]) / 100) < 1e-6
    assert sum(len(b) for b in scorer.batches) == 200


def test_a_few_names_together_are_scored_one_by_one_and_more_as_one_batch() -> None:
    """Below `SINGLES_BELOW` the lone-name path is cheaper than a batch (steps/score.py)."""
    from resolverguard.steps.score import SINGLES_BELOW

    scorer = LengthScorer()

    async def run(count: int) -> list[float]:
        batcher = batch_scorer(scorer, max_batch=64)
        return list(await asyncio.gather(*(batcher.submit("y" * n) for n in range(1, count + 1))))

    few = asyncio.run(run(SINGLES_BELOW - 1))
    assert [len(b) for b in scorer.batches] == [1] * (SINGLES_BELOW - 1)
    assert np.allclose(few, [n / 100 for n in range(1, SINGLES_BELOW)])
    scorer.batches.clear()
    more = asyncio.run(run(SINGLES_BELOW))
    assert [len(b) for b in scorer.batches] == [SINGLES_BELOW]
    assert np.allclose(more, [n / 100 for n in range(1, SINGLES_BELOW + 1)])
