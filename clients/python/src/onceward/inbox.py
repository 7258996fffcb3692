"""The inbox pattern for consumers, on the blocking client.

``Inbox(client, namespace, max_deliveries).process(messages, handler)`` deduplicates a
batch of broker messages by id with one ClaimBatch, calls ``handler`` only for the
messages nobody handled yet, stores their results with one CompleteBatch, releases the
ones whose handler raised, and returns a verdict per message: ``Done`` or
``Duplicate`` (ack it), ``Retry`` (deliver it again later) or ``DeadLetter``. A
message's fingerprint is the SHA-256 of its payload, as in the Rust client.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Callable, List, Optional, Sequence, Union

from onceward import _common as c
from onceward.client import Client
from onceward.v1 import onceward_pb2 as pb

#: The most messages sent in one ClaimBatch (the sidecar's default limit is 1000).
CHUNK = 500
#: How soon a message the killswitch blocked is worth redelivering (seconds): an
#: operator's release is what it waits for, not a window.
BLOCKED_RETRY_AFTER = 30.0


@dataclasses.dataclass(frozen=True)
class Message:
    """One message as the broker delivered it."""

    #: Its id: the idempotency key (a JetStream Nats-Msg-Id, an SQS message id, ...).
    id: str
    #: Its payload; its SHA-256 is the fingerprint.
    payload: bytes
    #: How many times the broker has delivered it, this time included (1 = first).
    deliveries: int = 1


@dataclasses.dataclass(frozen=True)
class Done:
    """The handler ran and its result is stored: ack the message."""

    result: bytes
    ack = True


@dataclasses.dataclass(frozen=True)
class Duplicate:
    """Handled before (a redelivery, or published twice): ack it without handling it."""

    result: bytes
    ack = True


@dataclasses.dataclass(frozen=True)
class Retry:
    """Not handled: deliver it again after ``after`` seconds."""

    after: float
    reason: str
    ack = False


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """Do not deliver it again: its handler failed on its last allowed delivery, or its
    id was used before for a different payload."""

    reason: str
    ack = False


Verdict = Union[Done, Duplicate, Retry, DeadLetter]


class Inbox:
    """Deduplicates a consumer's messages in one namespace."""

    def __init__(self, client: Client, namespace: str, max_deliveries: int = 5):
        self._client = client
        self._namespace = namespace
        self._max_deliveries = max(1, max_deliveries)

    def process(self, messages: Sequence[Message], handler: Callable[[Message], bytes]) -> List[Verdict]:
        """Handles ``messages`` in order and returns one verdict per message.

        ``handler(message)`` runs for each message nobody handled before; what it
        returns is stored, and if it raises the message is released for a later
        delivery (or dead-lettered on its ``max_deliveries``-th). Raises
        ``onceward.OncewardError`` if the sidecar could not be asked: deliver the whole
        batch again.
        """
        verdicts: List[Verdict] = []
        start = 0
        while start < len(messages):
            # A chunk never holds one id twice: the sidecar refuses such a batch, and a
            # message delivered twice in one batch is handled once.
            end, ids = start, set()
            while end < len(messages) and end - start < CHUNK and messages[end].id not in ids:
                ids.add(messages[end].id)
                end += 1
            verdicts.extend(self._process_chunk(messages[start:end], handler))
            start = end
        return verdicts

    def _process_chunk(self, messages: Sequence[Message], handler: Callable[[Message], bytes]) -> List[Verdict]:
        claimed_at = time.monotonic()
        answers = self._client.claim_batch(
            self._namespace, [(message.id, hashlib.sha256(message.payload).digest()) for message in messages]
        )
        if len(answers) != len(messages):
            raise c.OncewardError(f"{len(answers)} answers for {len(messages)} messages")
        verdicts: List[Optional[Verdict]] = [None] * len(messages)
        done = []  # (index, token, result)
        for index, (message, answer) in enumerate(zip(messages, answers)):
            if answer.outcome == pb.OUTCOME_ACQUIRED:
                try:
                    done.append((index, answer.fencing_token, handler(message)))
                except Exception as error:  # the handler's failure is the message's, not ours
                    self._client.release(self._namespace, message.id, answer.fencing_token)
                    verdicts[index] = self._after_failure(message, error)
            elif answer.outcome == pb.OUTCOME_IN_PROGRESS:
                verdicts[index] = Retry(c.retry_after_seconds(answer), "another consumer is handling it")
            elif answer.outcome == pb.OUTCOME_BLOCKED:
                verdicts[index] = Retry(BLOCKED_RETRY_AFTER, f"blocked by the killswitch: {answer.reason}")
            elif answer.outcome == pb.OUTCOME_OVER_BUDGET:
                verdicts[index] = Retry(c.retry_after_seconds(answer), f"over budget ({answer.reason})")
            elif answer.outcome == pb.OUTCOME_COMPLETED:
                verdicts[index] = Duplicate(answer.response)
            elif answer.outcome == pb.OUTCOME_FINGERPRINT_MISMATCH:
                verdicts[index] = DeadLetter(f"id {message.id!r} was used before for a different payload")
            else:
                raise c.OncewardError(f"unexpected claim outcome {answer.outcome}")
        if done:
            # The handlers ran: keep trying to store their results while the claims are
            # surely still ours, or a redelivery would run them again.
            items = [(messages[index].id, token, result) for index, token, result in done]
            try:
                results = self._client.complete_batch(
                    self._namespace, items, deadline=claimed_at + self._client.config.lease
                )
            except c.OncewardError as error:
                results = None
                failure = f"its result was not stored: {error}"
            for position, (index, _token, result) in enumerate(done):
                if results is not None and position < len(results) and results[position].code == 0:
                    verdicts[index] = Done(result)
                else:
                    reason = (
                        failure
                        if results is None
                        else f"its result was not stored ({results[position].message}); another consumer may hold it now"
                    )
                    verdicts[index] = Retry(0.0, reason)
        return [verdict for verdict in verdicts if verdict is not None]

    def _after_failure(self, message: Message, error: Exception) -> Verdict:
        if message.deliveries >= self._max_deliveries:
            return DeadLetter(
                f"the handler failed on delivery {message.deliveries} of {self._max_deliveries}: {error}"
            )
        return Retry(0.0, f"the handler failed: {error}")
