// Every error the client throws (an effect's own errors pass through unchanged), and
// which sidecar failures are worth another attempt.

import { Code, ConnectError } from "@connectrpc/connect";

/** Base of every error this package throws. */
export class OncewardError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The key was used before with a different fingerprint: a bug in the caller. */
export class FingerprintMismatch extends OncewardError {}

/**
 * The namespace's killswitch is engaged: the effect did not run and nothing was stored
 * or spent. Retrying will not help until an operator releases it.
 */
export class Blocked extends OncewardError {
  constructor(readonly reason: string) {
    super(`blocked by the namespace's killswitch: ${reason}`);
  }
}

/**
 * The subject's budget for the current window would be exceeded: the effect did not
 * run and nothing was stored or spent. `retryAfterMs` is the time until the window
 * resets.
 */
export class OverBudget extends OncewardError {
  constructor(
    readonly reason: string,
    readonly retryAfterMs: number,
  ) {
    super(`over budget (${reason}); the window resets in ${retryAfterMs} ms`);
  }
}

/** Another caller held the key for longer than `inProgressTimeoutMs`. */
export class StillInProgress extends OncewardError {
  constructor(readonly waitedMs: number) {
    super(`another caller still holds the key after ${waitedMs} ms`);
  }
}

/** FAILED_PRECONDITION: the fencing token is not the current holder's any more. */
export class LeaseLost extends OncewardError {}

/** The retry budget refused a retry: too many calls are failing at once. */
export class RetryBudgetExhausted extends OncewardError {
  constructor(
    readonly attempts: number,
    readonly lastError: string,
  ) {
    super(`retry budget exhausted after ${attempts} attempt(s); last error: ${lastError}`);
  }
}

/** The sidecar kept failing for every allowed attempt. */
export class Unavailable extends OncewardError {
  constructor(
    readonly attempts: number,
    readonly lastError: string,
  ) {
    super(`the sidecar failed ${attempts} attempt(s); last error: ${lastError}`);
  }
}

/** The sidecar refused the request for a reason a retry cannot fix. */
export class Rejected extends OncewardError {
  constructor(
    readonly code: Code,
    readonly detail: string,
  ) {
    super(`the sidecar refused the request (${Code[code]}): ${detail}`);
  }
}

/**
 * UNAUTHENTICATED (no token, or one no tenant has) or PERMISSION_DENIED (the namespace
 * is not granted to the token's tenant). Retrying will not help.
 */
export class Unauthorized extends Rejected {}

/** The effect ran but its result was not stored (lease lost, or Complete kept failing). */
export class NotStored extends OncewardError {
  constructor(
    readonly response: Uint8Array,
    readonly cause: OncewardError,
  ) {
    super(`the effect ran but its result was not stored: ${cause.message}`);
  }
}

/**
 * Worth another attempt: the sidecar or the path to it failed, not the request.
 * UNAVAILABLE is the sidecar failing closed (always safe to retry); UNKNOWN and
 * CANCELED are how a broken connection surfaces; DEADLINE_EXCEEDED is our own timeout.
 */
const RETRYABLE = new Set<Code>([
  Code.Unavailable,
  Code.Unknown,
  Code.Canceled,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.ResourceExhausted,
]);

/** `undefined` if the failure is worth a retry, else the error to throw. */
export function finalError(error: ConnectError): OncewardError | undefined {
  if (RETRYABLE.has(error.code)) {
    return undefined;
  }
  if (error.code === Code.FailedPrecondition) {
    return new LeaseLost(error.rawMessage || "not the current holder");
  }
  if (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied) {
    return new Unauthorized(error.code, error.rawMessage);
  }
  return new Rejected(error.code, error.rawMessage);
}

/** A one-line description of a failed call. */
export function describe(error: ConnectError): string {
  return `${Code[error.code]}: ${error.rawMessage}`;
}
