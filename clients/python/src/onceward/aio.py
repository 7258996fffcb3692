"""The asyncio client and its ``once`` guard; same behaviour as ``onceward.Client``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Awaitable, Callable, Optional

import grpc
import grpc.aio

from onceward import _common as c
from onceward.v1 import onceward_pb2 as pb
from onceward.v1 import onceward_pb2_grpc as pb_grpc


class Client:
    """An asyncio connection to an onceward sidecar; its calls share one retry budget.

    Create it inside a running event loop (grpc.aio channels belong to one loop).
    """

    def __init__(
        self,
        target: str,
        config: Optional[c.ClientConfig] = None,
        channel: Optional[grpc.aio.Channel] = None,
        *,
        auth_token: Optional[str] = None,
        tls: bool = False,
        root_certificates: Optional[bytes] = None,
        certificate_chain: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
    ):
        """An asyncio client of the sidecar at ``target``; the arguments are
        ``onceward.Client``'s.

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
                grpc.aio.secure_channel(target, credentials) if credentials else grpc.aio.insecure_channel(target)
            )
        self._channel = channel
        self._stub = pb_grpc.OncewardStub(self._channel)
        self._budget = c.RetryBudget(
            self.config.retry_ratio, self.config.min_retries_per_second, self.config.max_retry_tokens
        )

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _call(self, method, request_for: Callable[[int], Any], deadline: Optional[float] = None):
        """One RPC with retries; see ``onceward.Client._call``."""
        self._budget.deposit()
        attempts = 0
        while True:
            attempts += 1
            try:
                return await method(request_for(attempts), timeout=self.config.rpc_timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as error:
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
            await asyncio.sleep(pause)

    async def claim(
        self, namespace: str, key: str, fingerprint: bytes = b"", *, subject: str = "", cost: int = 0
    ) -> pb.ClaimResponse:
        """One Claim (failed calls retried; IN_PROGRESS is returned, not waited on).

        Every retry of this Claim carries the same random claimant and the next attempt
        number, so a retry after a lost reply is ACQUIRED again with the same token.
        """
        return await self._call(
            self._stub.Claim, c.claim_requests(namespace, key, fingerprint, self.config, subject, cost)
        )

    async def once(
        self,
        namespace: str,
        key: str,
        fingerprint: bytes,
        effect: Callable[[int], Awaitable[bytes]],
        *,
        subject: str = "",
        cost: int = 0,
    ) -> c.Once:
        """Runs ``await effect(fencing_token)`` at most once for (namespace, key); see
        ``onceward.Client.once``."""
        started = time.monotonic()
        waits = 0
        while True:
            answer = await self.claim(namespace, key, fingerprint, subject=subject, cost=cost)
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
            await asyncio.sleep(wait)

        token = answer.fencing_token
        keeper = asyncio.create_task(self._keep_alive(namespace, key, token))
        try:
            try:
                response = await effect(token)
            except BaseException:
                await self._release(namespace, key, token)
                raise
            try:
                await self._call(
                    self._stub.Complete,
                    c.every_attempt(c.complete_request(namespace, key, token, response, self.config)),
                    deadline=time.monotonic() + self.config.complete_timeout,
                )
            except c.OncewardError as cause:
                raise c.NotStored(response, cause) from cause
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        return c.Once(response=response, replayed=False)

    async def _keep_alive(self, namespace: str, key: str, token: int) -> None:
        """Extends the lease every third of it until cancelled."""
        request = pb.ExtendLeaseRequest(
            namespace=namespace, key=key, fencing_token=token, lease=c.duration(self.config.lease)
        )
        while True:
            await asyncio.sleep(self.config.lease / 3)
            try:
                await self._stub.ExtendLease(request, timeout=self.config.rpc_timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    return  # lost: Complete will say so
                # transient: the next tick tries again

    async def _release(self, namespace: str, key: str, token: int) -> None:
        try:
            await self._call(
                self._stub.Release,
                c.every_attempt(pb.ReleaseRequest(namespace=namespace, key=key, fencing_token=token)),
            )
        except c.OncewardError:
            pass  # lost means not stuck on us; unreachable means the lease will run out
