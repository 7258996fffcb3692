"""Client for the onceward idempotency sidecar.

``Client(target).once(namespace, key, fingerprint, effect)`` runs ``effect`` at most
once per key across every caller: it claims the key, runs the effect while extending
the lease, stores the result, and hands every duplicate the stored result instead.
``onceward.aio.Client`` is the same for asyncio. Both take ``auth_token=`` for a
sidecar with tenants and ``root_certificates=`` (plus ``certificate_chain=`` and
``private_key=`` for mutual TLS) for one serving TLS. The generated stubs are
``onceward.v1``. ``onceward.inbox.Inbox`` deduplicates a consumer's batches of
broker messages with ClaimBatch and CompleteBatch.
"""

from onceward._common import (
    Blocked,
    ClientConfig,
    FingerprintMismatch,
    LeaseLost,
    NotStored,
    Once,
    OncewardError,
    OverBudget,
    Rejected,
    RetryBudgetExhausted,
    StillInProgress,
    Unauthorized,
    Unavailable,
)
from onceward.client import Client

__all__ = [
    "Blocked",
    "Client",
    "ClientConfig",
    "FingerprintMismatch",
    "LeaseLost",
    "NotStored",
    "Once",
    "OncewardError",
    "OverBudget",
    "Rejected",
    "RetryBudgetExhausted",
    "StillInProgress",
    "Unauthorized",
    "Unavailable",
]
