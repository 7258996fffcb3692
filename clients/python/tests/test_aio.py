"""The asyncio guard against a real sidecar."""

from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio
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


# Claim retries (docs/PROTOCOL.md): the claimant and the attempt number.


class LoseClaimReplies(grpc.aio.UnaryUnaryClientInterceptor):
    """Forwards every call to the sidecar and records each Claim it sends; the replies
    of the first ``lose`` Claims are dropped after the sidecar answered them, as if the
    connection broke on the way back."""

    def __init__(self, lose: int = 1):
        self.claims: list[pb.ClaimRequest] = []
        self.lost: list[pb.ClaimResponse] = []
        self._lose = lose

    async def intercept_unary_unary(self, continuation, details, request):
        call = await continuation(details, request)
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if method.endswith("/Claim"):
            sent = pb.ClaimRequest()
            sent.CopyFrom(request)
            self.claims.append(sent)
            if len(self.lost) < self._lose:
                self.lost.append(await call)
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "the reply was lost"
                )
        return call


def lossy_client(sidecar: str, interceptor: LoseClaimReplies, **config) -> onceward.aio.Client:
    channel = grpc.aio.insecure_channel(sidecar, interceptors=[interceptor])
    return onceward.aio.Client(sidecar, onceward.ClientConfig(**config), channel=channel)


async def test_claim_retried_after_a_lost_reply_is_acquired_with_the_token_the_sidecar_gave(sidecar, key):
    lossy = LoseClaimReplies(lose=2)
    async with lossy_client(sidecar, lossy, initial_backoff=0.001) as client:
        answer = await client.claim(NS, key, b"fp")
        later = await client.claim(NS, key, b"fp")
    assert [lost.outcome for lost in lossy.lost] == [pb.OUTCOME_ACQUIRED] * 2
    assert answer.outcome == pb.OUTCOME_ACQUIRED, "not IN_PROGRESS behind its own claim"
    assert {lost.fencing_token for lost in lossy.lost} == {answer.fencing_token}
    assert [claim.attempt for claim in lossy.claims] == [1, 2, 3, 1]
    first = lossy.claims[0].claimant
    assert len(first) == 16 and [claim.claimant == first for claim in lossy.claims] == [True, True, True, False]
    assert later.outcome == pb.OUTCOME_IN_PROGRESS


async def test_once_runs_the_effect_after_its_claims_reply_was_lost(sidecar, key):
    lossy = LoseClaimReplies()
    ran = []

    async def send(token):
        ran.append(token)
        return b"sent"

    started = time.monotonic()
    async with lossy_client(sidecar, lossy, initial_backoff=0.001, in_progress_timeout=1.0) as client:
        result = await client.once(NS, key, b"fp", send)
    assert result == onceward.Once(b"sent", replayed=False)
    assert ran == [lossy.lost[0].fencing_token]
    assert time.monotonic() - started < 1.0, "no wait behind its own claim"
