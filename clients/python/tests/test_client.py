"""The blocking guard against a real sidecar: every branch of ``once``."""

from __future__ import annotations

import os
import threading
import time

import grpc
import pytest

import onceward
from onceward import _common as c
from onceward.v1 import onceward_pb2 as pb

NS = "pytest"


def test_the_first_call_runs_the_effect_and_a_duplicate_gets_the_stored_result(sidecar, key):
    runs = []
    with onceward.Client(sidecar) as client:
        first = client.once(NS, key, b"fp", lambda token: runs.append(token) or b"receipt")
        again = client.once(NS, key, b"fp", lambda token: runs.append(token) or b"other")
    assert first == onceward.Once(response=b"receipt", replayed=False)
    assert again == onceward.Once(response=b"receipt", replayed=True)
    assert len(runs) == 1 and runs[0] > 0


def test_a_different_fingerprint_for_a_used_key_is_refused(sidecar, key):
    with onceward.Client(sidecar) as client:
        client.once(NS, key, b"fp-1", lambda token: b"done")
        with pytest.raises(onceward.FingerprintMismatch):
            client.once(NS, key, b"fp-2", lambda token: b"never")


def test_an_effect_that_raises_releases_the_key_for_the_next_caller(sidecar, key):
    class Declined(Exception):
        pass

    def decline(token):
        raise Declined()

    with onceward.Client(sidecar) as client:
        with pytest.raises(Declined):
            client.once(NS, key, b"", decline)
        started = time.monotonic()
        result = client.once(NS, key, b"", lambda token: b"second try")
    assert result == onceward.Once(response=b"second try", replayed=False)
    assert time.monotonic() - started < 5, "released at once, not after the lease"


def test_a_caller_waits_for_the_holder_and_then_gets_its_result(sidecar, key):
    holding = threading.Event()
    results = {}

    def slow(token):
        holding.set()
        time.sleep(0.5)
        return b"from the holder"

    with onceward.Client(sidecar) as client:
        holder = threading.Thread(target=lambda: results.update(holder=client.once(NS, key, b"", slow)))
        holder.start()
        assert holding.wait(10)
        waiter = client.once(NS, key, b"", lambda token: b"must not run")
        holder.join()
    assert results["holder"] == onceward.Once(b"from the holder", replayed=False)
    assert waiter == onceward.Once(b"from the holder", replayed=True)


def test_a_long_effect_keeps_its_lease_and_no_second_caller_acquires(sidecar, key, stub):
    config = onceward.ClientConfig(lease=0.6)
    seen = []

    def long_effect(token):
        deadline = time.monotonic() + 2.0  # more than three leases
        while time.monotonic() < deadline:
            answer = stub.Claim(pb.ClaimRequest(namespace=NS, key=key))
            seen.append(answer.outcome)
            time.sleep(0.1)
        return b"finished"

    with onceward.Client(sidecar, config) as client:
        result = client.once(NS, key, b"", long_effect)
    assert result.response == b"finished" and not result.replayed
    assert seen and set(seen) == {pb.OUTCOME_IN_PROGRESS}


def test_an_unreachable_sidecar_exhausts_the_retry_budget_after_a_few_attempts(key, unreachable):
    config = onceward.ClientConfig(
        max_retry_tokens=3, min_retries_per_second=0, max_attempts=100, initial_backoff=0.01, max_backoff=0.05
    )
    ran = []
    with onceward.Client(unreachable, config) as client:
        with pytest.raises(onceward.RetryBudgetExhausted) as raised:
            client.once(NS, key, b"", lambda token: ran.append(token) or b"")
    assert raised.value.attempts == 4, "the first attempt plus the three saved retries"
    assert ran == []


# Claim retries (docs/PROTOCOL.md): the claimant and the attempt number.


class ReplyLost(grpc.RpcError):
    """How a connection that broke after the sidecar answered surfaces to the caller."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the reply was lost"


class LoseClaimReplies(grpc.UnaryUnaryClientInterceptor):
    """Forwards every call to the sidecar and records each Claim it sends; the replies
    of the first ``lose`` Claims are dropped after the sidecar answered them."""

    def __init__(self, lose: int = 1):
        self.claims: list[pb.ClaimRequest] = []
        self.lost: list[pb.ClaimResponse] = []
        self._lose = lose

    def intercept_unary_unary(self, continuation, details, request):
        outcome = continuation(details, request)
        if details.method.endswith("/Claim"):
            sent = pb.ClaimRequest()
            sent.CopyFrom(request)
            self.claims.append(sent)
            if len(self.lost) < self._lose:
                self.lost.append(outcome.result())
                raise ReplyLost()
        return outcome


def lossy_client(sidecar: str, interceptor: LoseClaimReplies, **config) -> onceward.Client:
    channel = grpc.intercept_channel(grpc.insecure_channel(sidecar), interceptor)
    return onceward.Client(sidecar, onceward.ClientConfig(**config), channel=channel)


def test_a_claim_repeated_with_its_claimant_is_acquired_again_with_the_same_token(stub, key):
    claimant = os.urandom(16)

    def claim(**fields):
        return stub.Claim(pb.ClaimRequest(namespace=NS, key=key, fingerprint=b"fp", **fields))

    first = claim(claimant=claimant, attempt=1)
    again = claim(claimant=claimant, attempt=2)
    assert first.outcome == again.outcome == pb.OUTCOME_ACQUIRED
    assert again.fencing_token == first.fencing_token > 0
    assert again.served_by == pb.TIER_LEDGER
    assert claim(claimant=os.urandom(16), attempt=1).outcome == pb.OUTCOME_IN_PROGRESS
    assert claim().outcome == pb.OUTCOME_IN_PROGRESS, "an empty claimant never matches"
    # The claim was neither replaced nor shortened: its holder still completes it.
    stub.Complete(pb.CompleteRequest(namespace=NS, key=key, fencing_token=first.fencing_token, response=b"r"))
    assert claim(claimant=claimant, attempt=3).outcome == pb.OUTCOME_COMPLETED


def test_a_claimant_longer_than_64_bytes_is_refused(stub, key):
    with pytest.raises(grpc.RpcError) as raised:
        stub.Claim(pb.ClaimRequest(namespace=NS, key=key, claimant=b"x" * 65))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "claimant" in raised.value.details()


def test_claim_retried_after_a_lost_reply_is_acquired_with_the_token_the_sidecar_gave(sidecar, key):
    lossy = LoseClaimReplies()
    with lossy_client(sidecar, lossy, initial_backoff=0.001) as client:
        answer = client.claim(NS, key, b"fp")
        later = client.claim(NS, key, b"fp")
    assert [lost.outcome for lost in lossy.lost] == [pb.OUTCOME_ACQUIRED]
    assert answer.outcome == pb.OUTCOME_ACQUIRED, "not IN_PROGRESS behind its own claim"
    assert answer.fencing_token == lossy.lost[0].fencing_token
    first, retry, other = lossy.claims
    assert [first.attempt, retry.attempt, other.attempt] == [1, 2, 1]
    assert len(first.claimant) == 16 and retry.claimant == first.claimant
    assert other.claimant != first.claimant, "each claim() is a new logical Claim"
    assert later.outcome == pb.OUTCOME_IN_PROGRESS


def test_every_retry_of_a_claim_counts_its_attempt_and_keeps_its_claimant(sidecar, key):
    lossy = LoseClaimReplies(lose=3)
    with lossy_client(sidecar, lossy, initial_backoff=0.001) as client:
        answer = client.claim(NS, key)
    assert answer.outcome == pb.OUTCOME_ACQUIRED
    assert {lost.fencing_token for lost in lossy.lost} == {answer.fencing_token}
    assert [claim.attempt for claim in lossy.claims] == [1, 2, 3, 4]
    assert len({claim.claimant for claim in lossy.claims}) == 1


def test_once_runs_the_effect_after_its_claims_reply_was_lost(sidecar, key):
    lossy = LoseClaimReplies()
    ran = []
    started = time.monotonic()
    with lossy_client(sidecar, lossy, initial_backoff=0.001, in_progress_timeout=1.0) as client:
        result = client.once(NS, key, b"fp", lambda token: ran.append(token) or b"sent")
    assert result == onceward.Once(b"sent", replayed=False)
    assert ran == [lossy.lost[0].fencing_token]
    assert time.monotonic() - started < 1.0, "no wait behind its own claim"


def test_fifty_callers_told_in_progress_wait_at_least_retry_after_and_spread_out(sidecar, key, capsys):
    """retry_after is a floor: each caller waits at least what the sidecar said, plus
    full jitter over its backoff, so they come back spread out and none early."""
    config = onceward.ClientConfig(initial_backoff=0.05)
    with onceward.Client(sidecar, config) as client:
        assert client.claim(NS, key).outcome == pb.OUTCOME_ACQUIRED
        extra = []
        print("caller  retry_after  wait")
        for caller in range(50):
            answer = client.claim(NS, key)
            assert answer.outcome == pb.OUTCOME_IN_PROGRESS
            retry_after = c.retry_after_seconds(answer)
            wait = c.in_progress_wait(retry_after, config, 0)
            print(f"{caller:>6}  {retry_after:>11.3f}  {wait:.3f}")
            assert wait >= retry_after, f"caller {caller} would come back early"
            extra.append(wait - retry_after)
    assert max(extra) - min(extra) >= 0.025, "the jitter spreads callers over the backoff"
    assert len(set(extra)) >= 45
    assert "caller  retry_after  wait" in capsys.readouterr().out
