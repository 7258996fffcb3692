/** How a client retries, leases and waits. Durations are in milliseconds. */
export interface ClientConfig {
    /** Longest wait for one RPC before it counts as a failed attempt. */
    rpcTimeoutMs: number;
    /** The lease each claim asks for; the guard extends it every third of it. */
    leaseMs: number;
    /** How long completed results are kept; `undefined` takes the server's default. */
    retentionMs?: number;
    /** The first retry's backoff ceiling; it doubles per attempt. */
    initialBackoffMs: number;
    /** The largest backoff ceiling. */
    maxBackoffMs: number;
    /** Most attempts of one RPC, the first included. */
    maxAttempts: number;
    /** Retries the client may make per request it sends (0.1 = 10 %). */
    retryRatio: number;
    /** Retries allowed per second however few requests there were. */
    minRetriesPerSecond: number;
    /** The most retries the budget can save up; it starts full. */
    maxRetryTokens: number;
    /** Longest the guard waits for another holder of the key to finish. */
    inProgressTimeoutMs: number;
    /** Longest the guard keeps retrying Complete after the effect ran. */
    completeTimeoutMs: number;
}
/** The defaults, the same as the Rust and Python clients'. */
export declare const DEFAULT_CONFIG: Readonly<ClientConfig>;
/**
 * The floor of a wait on another holder, so a `retry_after` of zero (a lease about to
 * run out) does not become a busy loop.
 */
export declare const MIN_IN_PROGRESS_WAIT_MS = 10;
/**
 * A token bucket of retries shared by every call of one client. Each request deposits
 * `retryRatio` tokens and each retry withdraws one, so retries stay a fraction of real
 * traffic and an outage does not become a retry storm.
 */
export declare class RetryBudget {
    private readonly ratio;
    private readonly perSecond;
    private readonly maximum;
    private readonly now;
    private tokens;
    private refilledAt;
    constructor(ratio: number, perSecond: number, maximum: number, now?: () => number);
    /** A request was sent. */
    deposit(): void;
    /** Whether a retry may be made now (and if so, pays for it). */
    withdraw(): boolean;
    private refill;
}
/** The backoff ceiling of retry number `retry` (0 for the first retry). */
export declare function backoffCeiling(config: ClientConfig, retry: number): number;
/** Full jitter: uniform in [0, ceiling]. */
export declare function backoff(config: ClientConfig, retry: number): number;
/**
 * How long to wait before claiming a held key again: at least the sidecar's
 * `retry_after` (the holder cannot finish sooner), plus full jitter so that waiters do
 * not come back in step.
 */
export declare function inProgressWait(config: ClientConfig, retryAfterMs: number, retry: number): number;
/** Resolves after `ms`, or rejects when `signal` aborts. */
export declare function sleep(ms: number, signal?: AbortSignal): Promise<void>;
