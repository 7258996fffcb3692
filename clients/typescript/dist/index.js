// onceward's TypeScript client. Runs anywhere `fetch` does: `createFetchTransport`
// speaks the Connect protocol; on Node, `@onceward/client/node` adds gRPC.
//
//   import { Client, createFetchTransport } from "@onceward/client";
//   const client = new Client(createFetchTransport({ baseUrl: "http://127.0.0.1:50051" }));
//   const { response, replayed } = await client.once("sms", "welcome-42", "", async (token) => "sent");
export { Client, CLAIMANT_BYTES } from "./client.js";
export { Blocked, FingerprintMismatch, LeaseLost, NotStored, OncewardError, OverBudget, Rejected, RetryBudgetExhausted, StillInProgress, Unauthorized, Unavailable, } from "./errors.js";
export { DEFAULT_CONFIG, MIN_IN_PROGRESS_WAIT_MS, RetryBudget, backoff, backoffCeiling, inProgressWait, } from "./retry.js";
export { createFetchTransport } from "./transport.js";
export * from "./gen/onceward/v1/onceward_pb.js";
