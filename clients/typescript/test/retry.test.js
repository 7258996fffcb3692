// The retry rules, without a sidecar: budget, backoff, the wait on a held key.

import assert from "node:assert/strict";
import { test } from "node:test";

import { DEFAULT_CONFIG, RetryBudget, backoff, backoffCeiling, inProgressWait } from "@onceward/client";

test("the backoff ceiling doubles up to the maximum and the jitter stays under it", () => {
  const config = { ...DEFAULT_CONFIG, initialBackoffMs: 50, maxBackoffMs: 1000 };
  assert.equal(backoffCeiling(config, 0), 50);
  assert.equal(backoffCeiling(config, 2), 200);
  assert.equal(backoffCeiling(config, 5), 1000);
  assert.equal(backoffCeiling(config, 1000), 1000);
  for (let i = 0; i < 200; i++) {
    const pause = backoff(config, 3);
    assert.ok(pause >= 0 && pause <= 400, `${pause}`);
  }
});

test("a held key is claimed again no sooner than retry_after, with jitter on top", () => {
  const config = { ...DEFAULT_CONFIG, initialBackoffMs: 50, maxBackoffMs: 1000 };
  const waits = Array.from({ length: 200 }, () => inProgressWait(config, 300, 1));
  assert.ok(waits.every((wait) => wait >= 300 && wait <= 400), "retry_after is a floor");
  assert.ok(new Set(waits).size > 100, "and the waits are spread");
  assert.ok(inProgressWait(config, 0, 0) >= 10, "zero does not become a busy loop");
});

test("the retry budget allows 10 % of requests plus what it saved, then refuses", () => {
  let now = 0;
  const budget = new RetryBudget(0.1, 1, 10, () => now);
  for (let i = 0; i < 10; i++) {
    assert.ok(budget.withdraw(), `saved retry ${i}`);
  }
  assert.ok(!budget.withdraw(), "the bucket is empty");
  for (let i = 0; i < 10; i++) {
    budget.deposit();
  }
  assert.ok(budget.withdraw(), "ten requests pay for one retry");
  assert.ok(!budget.withdraw());
  now += 1000;
  assert.ok(budget.withdraw(), "one more per second however few requests");
  assert.ok(!budget.withdraw());
});
