"""What the sync and asyncio clients share: configuration, errors, the result type,
the retry budget, jittered backoff, the classification of gRPC failures, and the
credentials a sidecar with tenants and TLS asks for (the bearer token's metadata, the
TLS channel credentials).

Nothing here does I/O, so both clients use it unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import secrets
import threading
import time
from typing import Callable, Optional, Sequence, Tuple, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message

from onceward.v1 import onceward_pb2 as pb

# Random bytes in the claimant of each logical Claim (16, as docs/PROTOCOL.md says).
CLAIMANT_BYTES = 16

M = TypeVar("M", bound=Message)

# The floor of a wait on another holder, so a retry_after of zero (a lease about to
# run out) does not become a busy loop.
MIN_IN_PROGRESS_WAIT = 0.01

# Worth another attempt: the sidecar or the path to it failed, not the request.
# UNAVAILABLE is the sidecar failing closed (always safe to retry); UNKNOWN and
# CANCELLED are how a broken connection surfaces; DEADLINE_EXCEEDED is our own timeout.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


#: The clients' logger: each wait on another holder is logged at DEBUG, with the
#: ``retry_after`` the sidecar gave and the wait chosen.
LOG = logging.getLogger("onceward")

@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """How a client retries, leases and waits. Durations are in seconds."""

    #: Longest wait for one RPC before it counts as a failed attempt.
    rpc_timeout: float = 10.0
    #: The lease each claim asks for; the guard extends it every third of it.
    lease: float = 30.0
    #: How long completed results are kept; None takes the server's default.
    retention: Optional[float] = None
    #: The first retry's backoff ceiling; it doubles per attempt.
    initial_backoff: float = 0.05
    #: The largest backoff ceiling.
    max_backoff: float = 2.0
    #: Most attempts of one RPC, the first included.
    max_attempts: int = 8
    #: Retries the client may make per request it sends (0.1 = 10 %).
    retry_ratio: float = 0.1
    #: Retries allowed per second however few requests there were.
    min_retries_per_second: float = 1.0
    #: The most retries the budget can save up; it starts full.
    max_retry_tokens: float = 10.0
    #: Longest the guard waits for another holder of the key to finish.
    in_progress_timeout: float = 60.0
    #: Longest the guard keeps retrying Complete after the effect ran.
    complete_timeout: float = 60.0


@dataclasses.dataclass(frozen=True)
class Once:
    """What ``once`` returns: the effect's response, and whether an earlier call ran it."""

    response: bytes
    #: True if an earlier call ran the effect and this is its stored result.
    replayed: bool


class OncewardError(Exception):
    """Base of every error this package raises (the effect's own exceptions pass through)."""


class FingerprintMismatch(OncewardError):
    """The key was used before with a different fingerprint: a bug in the caller."""


class Blocked(OncewardError):
    """The namespace's killswitch is engaged: the effect did not run and nothing was
    stored or spent. Retrying will not help until an operator releases it."""

    def __init__(self, reason: str):
        super().__init__(f"blocked by the namespace's killswitch: {reason}")
        self.reason = reason


class OverBudget(OncewardError):
    """The subject's budget for the current window would be exceeded: the effect did
    not run and nothing was stored or spent. ``retry_after`` (seconds) is the time
    until the window resets."""

    def __init__(self, reason: str, retry_after: float):
        super().__init__(f"over budget ({reason}); the window resets in {retry_after:.3f}s")
        self.reason = reason
        self.retry_after = retry_after


def raise_refusal(answer: pb.ClaimResponse) -> None:
    """Raises the spend guard's refusal of ``answer``, if it is one."""
    if answer.outcome == pb.OUTCOME_BLOCKED:
        raise Blocked(answer.reason)
    if answer.outcome == pb.OUTCOME_OVER_BUDGET:
        raise OverBudget(answer.reason, retry_after_seconds(answer))


class StillInProgress(OncewardError):
    """Another caller held the key for longer than ``in_progress_timeout``."""

    def __init__(self, waited: float):
        super().__init__(f"another caller still holds the key after {waited:.2f}s")
        self.waited = waited


class LeaseLost(OncewardError):
    """FAILED_PRECONDITION: the fencing token is not the current holder's any more."""


class RetryBudgetExhausted(OncewardError):
    """The client's retry budget refused a retry: too many calls are failing at once."""

    def __init__(self, attempts: int, last_error: str):
        super().__init__(f"retry budget exhausted after {attempts} attempt(s); last error: {last_error}")
        self.attempts = attempts
        self.last_error = last_error


class Unavailable(OncewardError):
    """The sidecar kept failing for every allowed attempt."""

    def __init__(self, attempts: int, last_error: str):
        super().__init__(f"the sidecar failed {attempts} attempt(s); last error: {last_error}")
        self.attempts = attempts
        self.last_error = last_error


class Rejected(OncewardError):
    """The sidecar refused the request for a reason a retry cannot fix."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"the sidecar refused the request ({code.name}): {message}")
        self.code = code
        self.message = message


class Unauthorized(Rejected):
    """The sidecar refused this caller: UNAUTHENTICATED (no bearer token, or one no
    tenant has; pass ``auth_token=``) or PERMISSION_DENIED (the namespace is not granted
    to the token's tenant). Retrying will not help."""


class NotStored(OncewardError):
    """The effect ran but its result was not stored (lease lost, or Complete kept failing)."""

    def __init__(self, response: bytes, cause: OncewardError):
        super().__init__(f"the effect ran but its result was not stored: {cause}")
        self.response = response
        self.cause = cause


class RetryBudget:
    """A token bucket of retries shared by every call of one client.

    Each request deposits ``ratio`` tokens and each retry withdraws one, so retries
    stay a fraction of real traffic and an outage does not become a retry storm.
    A thread lock: the critical section is a few float operations.
    """

    def __init__(self, ratio: float, per_second: float, maximum: float):
        self._ratio = ratio
        self._per_second = per_second
        self._max = maximum
        self._tokens = maximum
        self._refilled_at = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._max, self._tokens + (now - self._refilled_at) * self._per_second)
        self._refilled_at = now

    def deposit(self) -> None:
        with self._lock:
            self._refill()
            self._tokens = min(self._max, self._tokens + self._ratio)

    def withdraw(self) -> bool:
        with self._lock:
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


def backoff(config: ClientConfig, retry: int) -> float:
    """Full jitter: uniform in [0, min(max, initial * 2**retry)]."""
    ceiling = min(config.max_backoff, config.initial_backoff * (2 ** min(retry, 31)))
    return random.uniform(0.0, ceiling)


def in_progress_wait(retry_after: float, config: ClientConfig, waits: int = 0) -> float:
    """How long to wait before claiming a held key again, on the ``waits``-th wait (0
    for the first): never less than ``retry_after`` (the sidecar's word on when the
    holder can be done), plus full jitter over the caller's backoff for that wait, so
    callers told together do not come back together."""
    return max(MIN_IN_PROGRESS_WAIT, retry_after) + backoff(config, waits)


def describe(error: grpc.RpcError) -> str:
    return f"{error.code().name}: {error.details()}"


def final_error(error: grpc.RpcError) -> Optional[OncewardError]:
    """None if the failure is worth a retry, else the error to raise."""
    code = error.code()
    if code in RETRYABLE:
        return None
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return LeaseLost(error.details() or "not the current holder")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return Unauthorized(code, error.details() or "")
    return Rejected(code, error.details() or "")


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def every_attempt(request: M) -> Callable[[int], M]:
    """The request of an RPC that sends the same message on every attempt."""
    return lambda attempt: request


def claim_requests(
    namespace: str, key: str, fingerprint: bytes, config: ClientConfig, subject: str = "", cost: int = 0
) -> Callable[[int], pb.ClaimRequest]:
    """The request of each attempt (1 for the first) of one logical Claim.

    One fresh random claimant for the whole Claim, sent again on every retry: if a reply
    was lost after the sidecar acquired the key, the retry is ACQUIRED again with the
    same fencing token instead of waiting out the lease as IN_PROGRESS. ``attempt``
    tells the sidecar which try this is.
    """
    base = pb.ClaimRequest(
        namespace=namespace,
        key=key,
        fingerprint=fingerprint,
        lease=duration(config.lease),
        claimant=secrets.token_bytes(CLAIMANT_BYTES),
        subject=subject,
        cost=cost,
    )

    def for_attempt(attempt: int) -> pb.ClaimRequest:
        request = pb.ClaimRequest()
        request.CopyFrom(base)
        request.attempt = attempt
        return request

    return for_attempt


def claim_batch_requests(
    namespace: str, items: Sequence[Tuple[str, bytes]], config: ClientConfig
) -> Callable[[int], pb.ClaimBatchRequest]:
    """The request of each attempt of one logical ClaimBatch of ``(key, fingerprint)``
    items: a fresh claimant per item, sent again on every retry, as for a Claim."""
    base = pb.ClaimBatchRequest(
        namespace=namespace,
        items=[
            pb.ClaimItem(key=key, fingerprint=fingerprint, claimant=secrets.token_bytes(CLAIMANT_BYTES))
            for key, fingerprint in items
        ],
        lease=duration(config.lease),
    )

    def for_attempt(attempt: int) -> pb.ClaimBatchRequest:
        request = pb.ClaimBatchRequest()
        request.CopyFrom(base)
        for item in request.items:
            item.attempt = attempt
        return request

    return for_attempt


def complete_batch_request(
    namespace: str, items: Sequence[Tuple[str, int, bytes]], config: ClientConfig
) -> pb.CompleteBatchRequest:
    """A CompleteBatch of ``(key, fencing_token, response)`` items."""
    request = pb.CompleteBatchRequest(
        namespace=namespace,
        items=[pb.CompleteItem(key=key, fencing_token=token, response=response) for key, token, response in items],
    )
    if config.retention is not None:
        request.retention.CopyFrom(duration(config.retention))
    return request


def complete_request(namespace: str, key: str, token: int, response: bytes, config: ClientConfig) -> pb.CompleteRequest:
    request = pb.CompleteRequest(namespace=namespace, key=key, fencing_token=token, response=response)
    if config.retention is not None:
        request.retention.CopyFrom(duration(config.retention))
    return request


def retry_after_seconds(response: pb.ClaimResponse) -> float:
    return response.retry_after.ToNanoseconds() / 1e9 if response.HasField("retry_after") else 0.0


Metadata = Tuple[Tuple[str, str], ...]


def auth_metadata(auth_token: Optional[str]) -> Optional[Metadata]:
    """The metadata every call carries: ``authorization: Bearer <token>``, or none.

    Sent as call metadata rather than as gRPC call credentials, which grpc only sends
    over TLS: a plaintext sidecar on loopback may have tenants too (SECURITY.md).
    """
    if auth_token is None:
        return None
    # The message names the rule, never the token.
    if not auth_token or not all("!" <= char <= "~" for char in auth_token):
        raise ValueError("auth_token must be non-empty printable ASCII without spaces")
    return (("authorization", f"Bearer {auth_token}"),)


def channel_credentials(
    tls: bool,
    root_certificates: Optional[bytes],
    certificate_chain: Optional[bytes],
    private_key: Optional[bytes],
) -> Optional[grpc.ChannelCredentials]:
    """TLS credentials when TLS is asked for (``tls=True`` or any certificate), else
    None: a plaintext channel. Without ``root_certificates`` the system's roots are
    trusted; a client certificate needs both its chain and its key."""
    if (certificate_chain is None) != (private_key is None):
        raise ValueError("certificate_chain and private_key go together (mutual TLS)")
    if not (tls or root_certificates or certificate_chain):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=root_certificates, private_key=private_key, certificate_chain=certificate_chain
    )
