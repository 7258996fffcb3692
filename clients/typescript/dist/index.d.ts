export { Client, CLAIMANT_BYTES } from "./client.js";
export type { Effect, Once, OnceOptions } from "./client.js";
export { Blocked, FingerprintMismatch, LeaseLost, NotStored, OncewardError, OverBudget, Rejected, RetryBudgetExhausted, StillInProgress, Unauthorized, Unavailable, } from "./errors.js";
export { DEFAULT_CONFIG, MIN_IN_PROGRESS_WAIT_MS, RetryBudget, backoff, backoffCeiling, inProgressWait, } from "./retry.js";
export type { ClientConfig } from "./retry.js";
export { createFetchTransport } from "./transport.js";
export type { FetchTransportOptions } from "./transport.js";
export * from "./gen/onceward/v1/onceward_pb.js";
