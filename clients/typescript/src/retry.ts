// How a client retries: a retry budget shared by all its calls, exponential backoff
// with full jitter, and the wait on a key another caller holds. No I/O here.

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
export const DEFAULT_CONFIG: Readonly<ClientConfig> = Object.freeze({
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
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly ratio: number,
    private readonly perSecond: number,
    private readonly maximum: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = maximum;
    this.refilledAt = now();
  }

  /** A request was sent. */
  deposit(): void {
    this.refill();
    this.tokens = Math.min(this.maximum, this.tokens + this.ratio);
  }

  /** Whether a retry may be made now (and if so, pays for it). */
  withdraw(): boolean {
    this.refill();
    // Ten deposits of 0.1 add up to a hair under 1 in floating point.
    if (this.tokens >= 1 - 1e-9) {
      this.tokens = Math.max(0, this.tokens - 1);
      return true;
    }
    return false;
  }

  private refill(): void {
    const now = this.now();
    this.tokens = Math.min(this.maximum, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
  }
}

/** The backoff ceiling of retry number `retry` (0 for the first retry). */
export function backoffCeiling(config: ClientConfig, retry: number): number {
  return Math.min(config.maxBackoffMs, config.initialBackoffMs * 2 ** Math.min(retry, 31));
}

/** Full jitter: uniform in [0, ceiling]. */
export function backoff(config: ClientConfig, retry: number): number {
  return Math.random() * backoffCeiling(config, retry);
}

/**
 * How long to wait before claiming a held key again: at least the sidecar's
 * `retry_after` (the holder cannot finish sooner), plus full jitter so that waiters do
 * not come back in step.
 */
export function inProgressWait(config: ClientConfig, retryAfterMs: number, retry: number): number {
  return Math.max(MIN_IN_PROGRESS_WAIT_MS, retryAfterMs + backoff(config, retry));
}

/** Resolves after `ms`, or rejects when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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
