"""The asyncio guard against a real sidecar."""

from __future__ import annotations

import asyncio

import pytest

import onceward
import onceward.aio
from onceward.v1 import onceward_pb2 as pb

NS = "pytest-aio"


async def test_the_first_call_runs_the_effect_and_a_duplicate_replays(sidecar, key):
    async def charge(token):
        return b"receipt"

    async with onceward.aio.Client(sidecar) as client:
        first = await client.once(NS, key, b"fp", charge)
        again = await client.once(NS, key, b"fp", charge)
    assert first == onceward.Once(b"receipt", replayed=False)
    assert again == onceward.Once(b"receipt", replayed=True)


async def test_twenty_concurrent_calls_run_the_effect_once(sidecar, key):
    runs = []

    async def charge(token):
        runs.append(token)
        await asyncio.sleep(0.2)
        return b"charged"

    async with onceward.aio.Client(sidecar) as client:
        results = await asyncio.gather(*(client.once(NS, key, b"fp", charge) for _ in range(20)))
    assert len(runs) == 1
    assert all(result.response == b"charged" for result in results)
    assert sum(not result.replayed for result in results) == 1


async def test_a_mismatch_and_a_released_failure_behave_as_in_the_sync_client(sidecar, key):
    async def fail(token):
        raise RuntimeError("card declined")

    async def succeed(token):
        return b"ok"

    async with onceward.aio.Client(sidecar) as client:
        with pytest.raises(RuntimeError):
            await client.once(NS, key, b"fp", fail)
        assert await client.once(NS, key, b"fp", succeed) == onceward.Once(b"ok", replayed=False)
        with pytest.raises(onceward.FingerprintMismatch):
            await client.once(NS, key, b"other", succeed)


async def test_a_long_effect_is_kept_alive_past_its_lease(sidecar, key):
    config = onceward.ClientConfig(lease=0.6)
    async with onceward.aio.Client(sidecar, config) as client, onceward.aio.Client(sidecar) as other:

        async def long_effect(token):
            for _ in range(15):  # 1.5 s: more than two leases
                await asyncio.sleep(0.1)
                answer = await other.claim(NS, key)
                assert answer.outcome == pb.OUTCOME_IN_PROGRESS
            return b"done"

        result = await client.once(NS, key, b"", long_effect)
    assert result == onceward.Once(b"done", replayed=False)
