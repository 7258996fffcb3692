import { Code, ConnectError } from "@connectrpc/connect";
/** Base of every error this package throws. */
export declare class OncewardError extends Error {
    constructor(message: string);
}
/** The key was used before with a different fingerprint: a bug in the caller. */
export declare class FingerprintMismatch extends OncewardError {
}
/**
 * The namespace's killswitch is engaged: the effect did not run and nothing was stored
 * or spent. Retrying will not help until an operator releases it.
 */
export declare class Blocked extends OncewardError {
    readonly reason: string;
    constructor(reason: string);
}
/**
 * The subject's budget for the current window would be exceeded: the effect did not
 * run and nothing was stored or spent. `retryAfterMs` is the time until the window
 * resets.
 */
export declare class OverBudget extends OncewardError {
    readonly reason: string;
    readonly retryAfterMs: number;
    constructor(reason: string, retryAfterMs: number);
}
/** Another caller held the key for longer than `inProgressTimeoutMs`. */
export declare class StillInProgress extends OncewardError {
    readonly waitedMs: number;
    constructor(waitedMs: number);
}
/** FAILED_PRECONDITION: the fencing token is not the current holder's any more. */
export declare class LeaseLost extends OncewardError {
}
/** The retry budget refused a retry: too many calls are failing at once. */
export declare class RetryBudgetExhausted extends OncewardError {
    readonly attempts: number;
    readonly lastError: string;
    constructor(attempts: number, lastError: string);
}
/** The sidecar kept failing for every allowed attempt. */
export declare class Unavailable extends OncewardError {
    readonly attempts: number;
    readonly lastError: string;
    constructor(attempts: number, lastError: string);
}
/** The sidecar refused the request for a reason a retry cannot fix. */
export declare class Rejected extends OncewardError {
    readonly code: Code;
    readonly detail: string;
    constructor(code: Code, detail: string);
}
/**
 * UNAUTHENTICATED (no token, or one no tenant has) or PERMISSION_DENIED (the namespace
 * is not granted to the token's tenant). Retrying will not help.
 */
export declare class Unauthorized extends Rejected {
}
/** The effect ran but its result was not stored (lease lost, or Complete kept failing). */
export declare class NotStored extends OncewardError {
    readonly response: Uint8Array;
    readonly cause: OncewardError;
    constructor(response: Uint8Array, cause: OncewardError);
}
/** `undefined` if the failure is worth a retry, else the error to throw. */
export declare function finalError(error: ConnectError): OncewardError | undefined;
/** A one-line description of a failed call. */
export declare function describe(error: ConnectError): string;
