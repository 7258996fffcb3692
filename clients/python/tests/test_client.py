"""The blocking guard against a real sidecar: every branch of ``once``."""

from __future__ import annotations

import threading
import time

import pytest

import onceward
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
