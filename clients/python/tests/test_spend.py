"""The spend guard through the clients: ``once`` spends a subject's budget, and the
guard's refusals are errors of their own, raised at once and never retried."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2

import onceward
import onceward.aio
from onceward.v1 import onceward_pb2 as pb
from onceward.v1 import onceward_pb2_grpc as pb_grpc


def set_policy(sidecar: str, namespace: str, policy: pb.Policy) -> None:
    with grpc.insecure_channel(sidecar) as channel:
        pb_grpc.AdminStub(channel).SetPolicy(pb.SetPolicyRequest(namespace=namespace, policy=policy))


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses (policies are per namespace)."""
    return f"spend-{uuid.uuid4().hex[:12]}"


def test_a_budget_lets_through_what_fits_and_raises_over_budget_for_the_rest(sidecar, namespace):
    budget = pb.Budget(max_cost=100, max_claims=10, window=duration_pb2.Duration(seconds=3600))
    set_policy(sidecar, namespace, pb.Policy(budget=budget))
    sent = []
    with onceward.Client(sidecar) as client:
        client.once(namespace, "sms-1", b"", lambda token: sent.append(1) or b"ok", subject="alice", cost=60)
        with pytest.raises(onceward.OverBudget) as refused:
            client.once(namespace, "sms-2", b"", lambda token: sent.append(2) or b"ok", subject="alice", cost=50)
        # A duplicate is answered whatever the budget says, and spends nothing.
        replay = client.once(namespace, "sms-1", b"", lambda token: sent.append(3) or b"ok", subject="alice", cost=60)
    assert refused.value.reason == "max_cost"
    assert 0 < refused.value.retry_after <= 3600
    assert replay.replayed and sent == [1]


def test_the_killswitch_raises_blocked_with_its_reason_in_both_clients(sidecar, namespace):
    set_policy(sidecar, namespace, pb.Policy(killswitch=True, killswitch_reason="vendor outage"))
    with onceward.Client(sidecar) as client:
        with pytest.raises(onceward.Blocked) as blocked:
            client.once(namespace, "sms-1", b"", lambda token: b"never")
    assert blocked.value.reason == "vendor outage"

    async def asynchronous() -> str:
        async with onceward.aio.Client(sidecar) as client:
            try:
                await client.once(namespace, "sms-2", b"", _never, subject="bob", cost=1)
            except onceward.Blocked as error:
                return error.reason
        return "not blocked"

    assert asyncio.run(asynchronous()) == "vendor outage"


async def _never(token: int) -> bytes:
    raise AssertionError("the effect ran while the killswitch was engaged")
