// How a client retries: a retry budget shared by all its calls, exponential backoff
// with full jitter, and the wait on a key another caller holds. No I/O here.
/** The defaults, the same as the Rust and Python clients'. */
export const DEFAULT_CONFIG = Object.freeze({
    rpcTimeoutMs: 10_000,
    leaseMs: 30_000,
    retentionMs: undefined,
    initialBackoffMs: 50,
    maxBackoffMs: 2_000,
    maxAttempts: 8,
    retryRatio: 0.1,
    minRetriesPerSecond: 1,
    maxRetryTokens: 10,
    inProgressTimeoutMs: 60_000,
    completeTimeoutMs: 60_000,
});
/**
 * The floor of a wait on another holder, so a `retry_after` of zero (a lease about to
 * run out) does not become a busy loop.
 */
export const MIN_IN_PROGRESS_WAIT_MS = 10;
/**
 * A token bucket of retries shared by every call of one client. Each request deposits
 * `retryRatio` tokens and each retry withdraws one, so retries stay a fraction of real
 * traffic and an outage does not become a retry storm.
 */
export class RetryBudget {
    ratio;
    perSecond;
    maximum;
    now;
    tokens;
    refilledAt;
    constructor(ratio, perSecond, maximum, now = () => performance.now()) {
        this.ratio = ratio;
        this.perSecond = perSecond;
        this.maximum = maximum;
        this.now = now;
        this.tokens = maximum;
        this.refilledAt = now();
    }
    /** A request was sent. */
    deposit() {
        this.refill();
        this.tokens = Math.min(this.maximum, this.tokens + this.ratio);
    }
    /** Whether a retry may be made now (and if so, pays for it). */
    withdraw() {
        this.refill();
        // Ten deposits of 0.1 add up to a hair under 1 in floating point.
        if (this.tokens >= 1 - 1e-9) {
            this.tokens = Math.max(0, this.tokens - 1);
            return true;
        }
        return false;
    }
    refill() {
        const now = this.now();
        this.tokens = Math.min(this.maximum, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
        this.refilledAt = now;
    }
}
/** The backoff ceiling of retry number `retry` (0 for the first retry). */
export function backoffCeiling(config, retry) {
    return Math.min(config.maxBackoffMs, config.initialBackoffMs * 2 ** Math.min(retry, 31));
}
/** Full jitter: uniform in [0, ceiling]. */
export function backoff(config, retry) {
    return Math.random() * backoffCeiling(config, retry);
}
/**
 * How long to wait before claiming a held key again: at least the sidecar's
 * `retry_after` (the holder cannot finish sooner), plus full jitter so that waiters do
 * not come back in step.
 */
export function inProgressWait(config, retryAfterMs, retry) {
    return Math.max(MIN_IN_PROGRESS_WAIT_MS, retryAfterMs + backoff(config, retry));
}
/** Resolves after `ms`, or rejects when `signal` aborts. */
export function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
        if (signal?.aborted) {
            reject(signal.reason);
            return;
        }
        const timer = setTimeout(() => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
        }, ms);
        const onAbort = () => {
            clearTimeout(timer);
            reject(signal?.reason);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
    });
}
