// The guard against a real sidecar over gRPC (connect-node, HTTP/2): effects run at
// most once, replays, mismatches, releases, lease extension, failures.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  Client,
  DEFAULT_CONFIG,
  FingerprintMismatch,
  Outcome,
  RetryBudgetExhausted,
  Unavailable,
  inProgressWait,
} from "@onceward/client";
import { createNodeTransport } from "@onceward/client/node";

import { freePort, startSidecar } from "./sidecar.js";

let sidecar;
let client;
const decode = (bytes) => new TextDecoder().decode(bytes);

before(async () => {
  sidecar = await startSidecar();
  client = new Client(createNodeTransport({ baseUrl: sidecar.baseUrl }));
});
after(() => sidecar.stop());

test("concurrent callers of one key run the effect once and all get its result", async () => {
  let ran = 0;
  const effect = async () => {
    ran += 1;
    await new Promise((done) => setTimeout(done, 200));
    return "charged-1";
  };
  const results = await Promise.all(
    Array.from({ length: 6 }, () => client.once("guard", "concurrent", "fp", effect)),
  );
  assert.equal(ran, 1);
  assert.deepEqual(results.map((result) => decode(result.response)), Array(6).fill("charged-1"));
  assert.equal(results.filter((result) => !result.replayed).length, 1);
});

test("a completed key replays its stored result without running the effect", async () => {
  const first = await client.once("guard", "replay", "", () => new Uint8Array([1, 2, 3]));
  assert.equal(first.replayed, false);
  const second = await client.once("guard", "replay", "", () => {
    throw new Error("must not run");
  });
  assert.equal(second.replayed, true);
  assert.deepEqual([...second.response], [1, 2, 3]);
});

test("the same key with another fingerprint is a FingerprintMismatch", async () => {
  await client.once("guard", "fingerprint", "body-a", () => "ok");
  await assert.rejects(client.once("guard", "fingerprint", "body-b", () => "ok"), FingerprintMismatch);
});

test("an effect that throws releases the key and its error propagates", async () => {
  const failure = new Error("the SMS vendor said no");
  await assert.rejects(client.once("guard", "released", "", () => Promise.reject(failure)), (error) => error === failure);
  const claim = await client.claim("guard", "released");
  assert.equal(claim.outcome, Outcome.ACQUIRED, "released at once, not left to its lease");
});

test("the lease is extended while the effect runs, so nobody takes it over", async () => {
  const shortLease = new Client(createNodeTransport({ baseUrl: sidecar.baseUrl }), { leaseMs: 600 });
  const running = shortLease.once("guard", "extended", "", async () => {
    await new Promise((done) => setTimeout(done, 1500));
    return "slow";
  });
  await new Promise((done) => setTimeout(done, 1000));
  const meanwhile = await client.claim("guard", "extended");
  assert.equal(meanwhile.outcome, Outcome.IN_PROGRESS, "still held well after the first lease ran out");
  assert.equal(decode((await running).response), "slow");
});

test("a Claim retried with its claimant gets the same token, another claimant waits", async () => {
  const claimant = crypto.getRandomValues(new Uint8Array(16));
  const request = { namespace: "guard", key: "claimant", claimant, attempt: 1 };
  const first = await client.api.claim(request);
  const retried = await client.api.claim({ ...request, attempt: 2 });
  assert.equal(retried.outcome, Outcome.ACQUIRED);
  assert.equal(retried.fencingToken, first.fencingToken);
  const other = await client.claim("guard", "claimant");
  assert.equal(other.outcome, Outcome.IN_PROGRESS);
  assert.ok(other.retryAfter, "with a retry_after");
});

test("a sidecar that is not there is Unavailable after the capped attempts", async () => {
  const nowhere = new Client(createNodeTransport({ baseUrl: `http://127.0.0.1:${await freePort()}` }), {
    initialBackoffMs: 1,
    maxBackoffMs: 5,
    maxAttempts: 3,
  });
  await assert.rejects(nowhere.once("guard", "nowhere", "", () => "x"), (error) => {
    assert.ok(error instanceof Unavailable, `${error}`);
    assert.equal(error.attempts, 3);
    return true;
  });
});

test("the retry budget stops retries when most calls fail", async () => {
  const nowhere = new Client(createNodeTransport({ baseUrl: `http://127.0.0.1:${await freePort()}` }), {
    initialBackoffMs: 1,
    maxBackoffMs: 2,
    maxRetryTokens: 2,
    minRetriesPerSecond: 0,
  });
  await assert.rejects(nowhere.claim("guard", "budget"), (error) => {
    assert.ok(error instanceof RetryBudgetExhausted, `${error}`);
    assert.equal(error.attempts, 3, "two saved retries, then refused");
    return true;
  });
});

test("fifty callers told IN_PROGRESS wait at least retry_after and come back spread out", async () => {
  const config = { ...DEFAULT_CONFIG, initialBackoffMs: 50 };
  const held = await client.claim("herd", "k");
  assert.equal(held.outcome, Outcome.ACQUIRED);
  const extra = [];
  const transcript = ["caller  retry_after_ms  wait_ms"];
  for (let caller = 0; caller < 50; caller++) {
    const answer = await client.claim("herd", "k");
    assert.equal(answer.outcome, Outcome.IN_PROGRESS);
    const retryAfter = Number(answer.retryAfter.seconds) * 1000 + answer.retryAfter.nanos / 1e6;
    const wait = inProgressWait(config, retryAfter, 0);
    transcript.push(`${String(caller).padStart(6)}  ${retryAfter.toFixed(1).padStart(14)}  ${wait.toFixed(1)}`);
    assert.ok(wait >= retryAfter, `caller ${caller} would come back early`);
    extra.push(wait - retryAfter);
  }
  console.log(transcript.join("\n"));
  assert.ok(Math.max(...extra) - Math.min(...extra) >= 25, "the jitter spreads callers over the backoff");
  assert.ok(new Set(extra).size >= 45);
});
