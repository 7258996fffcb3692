"""The inbox against a real sidecar: duplicate deliveries applied once, a failing
handler retried, a poison message dead-lettered on its last delivery, an id reused for
another payload, and a message another consumer holds."""

from __future__ import annotations

import onceward
from onceward.inbox import DeadLetter, Done, Duplicate, Inbox, Message, Retry
from onceward.v1 import onceward_pb2 as pb

NS = "pytest-inbox"


def test_redelivered_and_duplicated_messages_are_applied_once_and_acked(sidecar, key):
    applied = []

    def apply(message: Message) -> bytes:
        applied.append(message.id)
        return f"applied {message.id}".encode()

    with onceward.Client(sidecar) as client:
        inbox = Inbox(client, NS, max_deliveries=5)
        one, two = f"{key}-1", f"{key}-2"
        batch = [Message(one, b"a"), Message(two, b"b"), Message(two, b"b", deliveries=2)]
        first = inbox.process(batch, apply)
        again = inbox.process([Message(two, b"b", deliveries=3), Message(one, b"a", deliveries=2)], apply)
    assert applied == [one, two]
    assert first == [Done(f"applied {one}".encode()), Done(f"applied {two}".encode()), Duplicate(f"applied {two}".encode())]
    assert again == [Duplicate(f"applied {two}".encode()), Duplicate(f"applied {one}".encode())]
    assert all(verdict.ack for verdict in first + again)


def test_a_failing_handler_is_retried_and_a_poison_message_dead_lettered_on_its_last_delivery(sidecar, key):
    poison, flaky = f"{key}-poison", f"{key}-flaky"
    failures = {flaky: 1}
    runs = []

    def handle(message: Message) -> bytes:
        runs.append(message.id)
        if message.id == poison:
            raise ValueError("cannot parse")
        if failures.get(message.id, 0) > 0:
            failures[message.id] -= 1
            raise TimeoutError("vendor timeout")
        return b"ok"

    with onceward.Client(sidecar) as client:
        inbox = Inbox(client, NS, max_deliveries=3)
        verdicts = [
            inbox.process([Message(poison, b"??", delivery), Message(flaky, b"f", delivery)], handle)
            for delivery in (1, 2, 3)
        ]
        after = client.claim(NS, poison)
    assert [type(v[0]) for v in verdicts] == [Retry, Retry, DeadLetter]
    assert "delivery 3 of 3" in verdicts[2][0].reason and "cannot parse" in verdicts[2][0].reason
    assert [v[1] for v in verdicts] == [Retry(0.0, "the handler failed: vendor timeout"), Done(b"ok"), Duplicate(b"ok")]
    assert runs.count(poison) == 3 and runs.count(flaky) == 2
    assert after.outcome == pb.OUTCOME_ACQUIRED, "a dead letter holds nothing"


def test_a_reused_id_is_dead_lettered_and_a_message_held_elsewhere_is_retried_later(sidecar, key):
    reused, held = f"{key}-reused", f"{key}-held"
    with onceward.Client(sidecar) as client:
        inbox = Inbox(client, NS)
        assert inbox.process([Message(reused, b"payload")], lambda message: b"r") == [Done(b"r")]
        assert client.claim(NS, held).outcome == pb.OUTCOME_ACQUIRED
        runs = []
        verdicts = inbox.process(
            [Message(reused, b"another payload"), Message(held, b"x")], lambda message: runs.append(message) or b""
        )
    assert runs == []
    assert isinstance(verdicts[0], DeadLetter) and "different payload" in verdicts[0].reason
    assert isinstance(verdicts[1], Retry) and verdicts[1].after > 0
