// Every error the client throws (an effect's own errors pass through unchanged), and
// which sidecar failures are worth another attempt.
import { Code } from "@connectrpc/connect";
/** Base of every error this package throws. */
export class OncewardError extends Error {
    constructor(message) {
        super(message);
        this.name = new.target.name;
    }
}
/** The key was used before with a different fingerprint: a bug in the caller. */
export class FingerprintMismatch extends OncewardError {
}
/**
 * The namespace's killswitch is engaged: the effect did not run and nothing was stored
 * or spent. Retrying will not help until an operator releases it.
 */
export class Blocked extends OncewardError {
    reason;
    constructor(reason) {
        super(`blocked by the namespace's killswitch: ${reason}`);
        this.reason = reason;
    }
}
/**
 * The subject's budget for the current window would be exceeded: the effect did not
 * run and nothing was stored or spent. `retryAfterMs` is the time until the window
 * resets.
 */
export class OverBudget extends OncewardError {
    reason;
    retryAfterMs;
    constructor(reason, retryAfterMs) {
        super(`over budget (${reason}); the window resets in ${retryAfterMs} ms`);
        this.reason = reason;
        this.retryAfterMs = retryAfterMs;
    }
}
/** Another caller held the key for longer than `inProgressTimeoutMs`. */
export class StillInProgress extends OncewardError {
    waitedMs;
    constructor(waitedMs) {
        super(`another caller still holds the key after ${waitedMs} ms`);
        this.waitedMs = waitedMs;
    }
}
/** FAILED_PRECONDITION: the fencing token is not the current holder's any more. */
export class LeaseLost extends OncewardError {
}
/** The retry budget refused a retry: too many calls are failing at once. */
export class RetryBudgetExhausted extends OncewardError {
    attempts;
    lastError;
    constructor(attempts, lastError) {
        super(`retry budget exhausted after ${attempts} attempt(s); last error: ${lastError}`);
        this.attempts = attempts;
        this.lastError = lastError;
    }
}
/** The sidecar kept failing for every allowed attempt. */
export class Unavailable extends OncewardError {
    attempts;
    lastError;
    constructor(attempts, lastError) {
        super(`the sidecar failed ${attempts} attempt(s); last error: ${lastError}`);
        this.attempts = attempts;
        this.lastError = lastError;
    }
}
/** The sidecar refused the request for a reason a retry cannot fix. */
export class Rejected extends OncewardError {
    code;
    detail;
    constructor(code, detail) {
        super(`the sidecar refused the request (${Code[code]}): ${detail}`);
        this.code = code;
        this.detail = detail;
    }
}
/**
 * UNAUTHENTICATED (no token, or one no tenant has) or PERMISSION_DENIED (the namespace
 * is not granted to the token's tenant). Retrying will not help.
 */
export class Unauthorized extends Rejected {
}
/** The effect ran but its result was not stored (lease lost, or Complete kept failing). */
export class NotStored extends OncewardError {
    response;
    cause;
    constructor(response, cause) {
        super(`the effect ran but its result was not stored: ${cause.message}`);
        this.response = response;
        this.cause = cause;
    }
}
/**
 * Worth another attempt: the sidecar or the path to it failed, not the request.
 * UNAVAILABLE is the sidecar failing closed (always safe to retry); UNKNOWN and
 * CANCELED are how a broken connection surfaces; DEADLINE_EXCEEDED is our own timeout.
 */
const RETRYABLE = new Set([
    Code.Unavailable,
    Code.Unknown,
    Code.Canceled,
    Code.DeadlineExceeded,
    Code.Aborted,
    Code.ResourceExhausted,
]);
/** `undefined` if the failure is worth a retry, else the error to throw. */
export function finalError(error) {
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
export function describe(error) {
    return `${Code[error.code]}: ${error.rawMessage}`;
}
