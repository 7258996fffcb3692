"""The blocking client and its ``once`` guard (threads; see ``onceward.aio`` for asyncio)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

import grpc

from onceward import _common as c
from onceward.v1 import onceward_pb2 as pb
from onceward.v1 import onceward_pb2_grpc as pb_grpc


class Client:
    """A connection to an onceward sidecar. Thread-safe; its calls share one retry budget."""

    def __init__(
        self,
        target: str,
        config: Optional[c.ClientConfig] = None,
        channel: Optional[grpc.Channel] = None,
        *,
        auth_token: Optional[str] = None,
        tls: bool = False,
        root_certificates: Optional[bytes] = None,
        certificate_chain: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
    ):
        """A client of the sidecar at ``target``.

        ``target`` is ``host:port``. For a sidecar with tenants, ``auth_token`` is the
        bearer token of this caller's tenant, sent as ``authorization: Bearer <token>``
        with every call. For a sidecar serving TLS, ``root_certificates`` is the PEM of
        the CA that signed its certificate (``tls=True`` alone trusts the system's
        roots), and ``certificate_chain`` with ``private_key`` (PEM) is the client
        certificate a sidecar with mutual TLS asks for; any of the three turns TLS on.
        ``channel``, if given, is used instead (and closed by ``close``), e.g. one with
        interceptors; the token is still sent, and the TLS arguments must be left out.
        The channel connects lazily, on the first call.
        """
        self.config = config or c.ClientConfig()
        self._metadata = c.auth_metadata(auth_token)
        credentials = c.channel_credentials(tls, root_certificates, certificate_chain, private_key)
        if channel is not None and credentials is not None:
            raise ValueError("give either channel= or the TLS arguments, not both")
        if channel is None:
            channel = (
                grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
            )
        self._channel = channel
        self._stub = pb_grpc.OncewardStub(self._channel)
        self._budget = c.RetryBudget(
            self.config.retry_ratio, self.config.min_retries_per_second, self.config.max_retry_tokens
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request_for: Callable[[int], Any], deadline: Optional[float] = None):
        """One RPC with retries: backoff with full jitter and, unless a deadline is given
        (Complete after the effect ran), the attempt cap and the retry budget.
        ``request_for(attempt)`` makes the message of each attempt, 1 for the first."""
        self._budget.deposit()
        attempts = 0
        while True:
            attempts += 1
            try:
                return method(request_for(attempts), timeout=self.config.rpc_timeout, metadata=self._metadata)
            except grpc.RpcError as error:
                final = c.final_error(error)
                if final is not None:
                    raise final from error
                last = c.describe(error)
            pause = c.backoff(self.config, attempts - 1)
            if deadline is None:
                if attempts >= self.config.max_attempts:
                    raise c.Unavailable(attempts, last)
                if not self._budget.withdraw():
                    raise c.RetryBudgetExhausted(attempts, last)
            elif time.monotonic() + pause >= deadline:
                raise c.Unavailable(attempts, last)
            time.sleep(pause)

    def claim(
        self, namespace: str, key: str, fingerprint: bytes = b"", *, subject: str = "", cost: int = 0
    ) -> pb.ClaimResponse:
        """One Claim (failed calls retried; IN_PROGRESS is returned, not waited on).

        Every retry of this Claim carries the same random claimant and the next attempt
        number, so a retry after a lost reply is ACQUIRED again with the same token.
        """
        return self._call(self._stub.Claim, c.claim_requests(namespace, key, fingerprint, self.config, subject, cost))

    def claim_batch(self, namespace: str, items: Sequence[Tuple[str, bytes]]) -> List[pb.ClaimResponse]:
        """One ClaimBatch of ``(key, fingerprint)`` items (failed calls retried, each item
        with its own claimant): one answer per item, in order, each what a Claim of it
        would have answered."""
        return list(self._call(self._stub.ClaimBatch, c.claim_batch_requests(namespace, items, self.config)).results)

    def complete_batch(
        self, namespace: str, items: Sequence[Tuple[str, int, bytes]], deadline: Optional[float] = None
    ) -> List[pb.CompleteResult]:
        """One CompleteBatch of ``(key, fencing_token, response)`` items: one result per
        item, in order (``code`` 0, or 9 for a token that is not the holder's).
        ``deadline`` (``time.monotonic()``) retries past the budget until then."""
        request = c.complete_batch_request(namespace, items, self.config)
        return list(self._call(self._stub.CompleteBatch, c.every_attempt(request), deadline=deadline).results)

    def release(self, namespace: str, key: str, token: int) -> None:
        """Gives up the claim held by ``token`` (best effort: a claim not released runs
        out its lease)."""
        self._release(namespace, key, token)

    def once(
        self,
        namespace: str,
        key: str,
        fingerprint: bytes,
        effect: Callable[[int], bytes],
        *,
        subject: str = "",
        cost: int = 0,
    ) -> c.Once:
        """Runs ``effect(fencing_token)`` at most once for (namespace, key).

        ``subject`` and ``cost`` spend the namespace's budget (its spend guard). Its
        refusals are raised, never retried: ``Blocked`` while the killswitch is
        engaged, ``OverBudget`` (with ``retry_after``) when the subject's window is spent.

        Returns the effect's bytes (``replayed=False``) or, if an earlier call ran it,
        the stored bytes (``replayed=True``). If ``effect`` raises, the effect did not
        happen: the claim is released and the exception propagates.
        """
        started = time.monotonic()
        waits = 0
        while True:
            answer = self.claim(namespace, key, fingerprint, subject=subject, cost=cost)
            if answer.outcome == pb.OUTCOME_ACQUIRED:
                break
            if answer.outcome == pb.OUTCOME_COMPLETED:
                return c.Once(response=answer.response, replayed=True)
            if answer.outcome == pb.OUTCOME_FINGERPRINT_MISMATCH:
                raise c.FingerprintMismatch(f"{namespace}/{key} was used with a different fingerprint")
            c.raise_refusal(answer)
            if answer.outcome != pb.OUTCOME_IN_PROGRESS:
                raise c.OncewardError(f"unexpected claim outcome {answer.outcome}")
            retry_after = c.retry_after_seconds(answer)
            wait = c.in_progress_wait(retry_after, self.config, waits)
            waits += 1
            c.LOG.debug(
                "%s/%s is in progress: retry_after %.3fs, claiming again in %.3fs (wait %d)",
                namespace, key, retry_after, wait, waits,
            )
            if time.monotonic() + wait - started > self.config.in_progress_timeout:
                raise c.StillInProgress(time.monotonic() - started)
            time.sleep(wait)

        token = answer.fencing_token
        with _LeaseKeeper(self, namespace, key, token):
            try:
                response = effect(token)
            except BaseException:
                self._release(namespace, key, token)
                raise
            try:
                self._call(
                    self._stub.Complete,
                    c.every_attempt(c.complete_request(namespace, key, token, response, self.config)),
                    deadline=time.monotonic() + self.config.complete_timeout,
                )
            except c.OncewardError as cause:
                raise c.NotStored(response, cause) from cause
        return c.Once(response=response, replayed=False)

    def _release(self, namespace: str, key: str, token: int) -> None:
        try:
            self._call(
                self._stub.Release,
                c.every_attempt(pb.ReleaseRequest(namespace=namespace, key=key, fencing_token=token)),
            )
        except c.LeaseLost:
            pass  # someone else holds it, or it is already gone: not stuck on us
        except c.OncewardError:
            pass  # the key frees when the lease runs out


class _LeaseKeeper:
    """Extends the lease every third of it from a daemon thread while the effect runs."""

    def __init__(self, client: Client, namespace: str, key: str, token: int):
        self._client = client
        self._request = pb.ExtendLeaseRequest(
            namespace=namespace, key=key, fencing_token=token, lease=c.duration(client.config.lease)
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="onceward-lease", daemon=True)

    def __enter__(self) -> "_LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        period = self._client.config.lease / 3
        while not self._stop.wait(period):
            try:
                self._client._stub.ExtendLease(
                    self._request, timeout=self._client.config.rpc_timeout, metadata=self._client._metadata
                )
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    return  # lost: Complete will say so
                # transient: the next tick tries again (two more before the lease ends)
