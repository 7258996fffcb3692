// The official Connect clients against the sidecar: Connect (JSON and binary, HTTP/1.1
// and HTTP/2), gRPC-Web and gRPC from Node, and the guard over a plain `fetch`
// transport as a fetch-only runtime has it.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";
import { Client, LeaseLost, Outcome, createFetchTransport } from "@onceward/client";
import { createNodeTransport } from "@onceward/client/node";

import { startSidecar } from "./sidecar.js";

let sidecar;
before(async () => {
  sidecar = await startSidecar();
});
after(() => sidecar.stop());

const transports = () => [
  ["gRPC", createNodeTransport({ baseUrl: sidecar.baseUrl })],
  ["Connect binary over HTTP/2", createNodeTransport({ baseUrl: sidecar.baseUrl, protocol: "connect" })],
  [
    "Connect JSON over HTTP/1.1",
    createNodeTransport({ baseUrl: sidecar.baseUrl, protocol: "connect", httpVersion: "1.1", useBinaryFormat: false }),
  ],
  ["gRPC-Web over HTTP/1.1", createNodeTransport({ baseUrl: sidecar.baseUrl, protocol: "grpc-web", httpVersion: "1.1" })],
  ["gRPC-Web over HTTP/2", createNodeTransport({ baseUrl: sidecar.baseUrl, protocol: "grpc-web" })],
  ["Connect JSON over fetch", createFetchTransport({ baseUrl: sidecar.baseUrl })],
  ["Connect binary over fetch", createFetchTransport({ baseUrl: sidecar.baseUrl, useBinaryFormat: true })],
];

test("every protocol carries every call, outcome and error", async (t) => {
  for (const [name, transport] of transports()) {
    await t.test(name, async () => {
      const { api } = new Client(transport);
      const key = `calls-${name}`;
      const acquired = await api.claim({ namespace: "protocols", key, fingerprint: new Uint8Array([1]), lease: { seconds: 30n } });
      assert.equal(acquired.outcome, Outcome.ACQUIRED);
      const held = await api.claim({ namespace: "protocols", key });
      assert.equal(held.outcome, Outcome.IN_PROGRESS);
      const mismatch = await api.claim({ namespace: "protocols", key, fingerprint: new Uint8Array([2]) });
      assert.equal(mismatch.outcome, Outcome.FINGERPRINT_MISMATCH);
      const extended = await api.extendLease({ namespace: "protocols", key, fencingToken: acquired.fencingToken, lease: { seconds: 60n } });
      assert.ok(extended.leaseExpiresAt.seconds > BigInt(Math.floor(Date.now() / 1000)));
      const stale = api.complete({ namespace: "protocols", key, fencingToken: acquired.fencingToken + 1000n });
      await assert.rejects(stale, (error) => error instanceof ConnectError && error.code === Code.FailedPrecondition);
      const completed = await api.complete({ namespace: "protocols", key, fencingToken: acquired.fencingToken, response: new TextEncoder().encode("done") });
      assert.ok(completed.expiresAt);
      const replay = await api.claim({ namespace: "protocols", key });
      assert.equal(replay.outcome, Outcome.COMPLETED);
      assert.equal(new TextDecoder().decode(replay.response), "done");
      const found = await api.lookup({ namespace: "protocols", key });
      assert.equal(found.found, true);
      assert.equal(found.record.key, key);
      const bad = api.claim({ namespace: "not a namespace", key });
      await assert.rejects(bad, (error) => error instanceof ConnectError && error.code === Code.InvalidArgument && /namespace/.test(error.rawMessage));
      const released = await api.claim({ namespace: "protocols", key: `${key}-release` });
      await api.release({ namespace: "protocols", key: `${key}-release`, fencingToken: released.fencingToken });
    });
  }
});

test("the guard runs over a plain fetch transport, as on a fetch-only runtime", async () => {
  let calls = 0;
  // Counting fetches proves the calls went through this fetch and nothing else.
  const counting = (input, init) => {
    calls += 1;
    return fetch(input, init);
  };
  const client = new Client(createFetchTransport({ baseUrl: sidecar.baseUrl, fetch: counting }), { leaseMs: 900 });
  let ran = 0;
  const effect = async (token) => {
    ran += 1;
    assert.equal(typeof token, "bigint");
    await new Promise((done) => setTimeout(done, 700));
    return `sent with token ${token}`;
  };
  const [first, second] = await Promise.all([
    client.once("fetch", "sms-1", "", effect),
    client.once("fetch", "sms-1", "", effect),
  ]);
  assert.equal(ran, 1);
  assert.deepEqual(first.response, second.response);
  assert.notEqual(first.replayed, second.replayed);
  assert.ok(calls >= 5, `claims, an extension, a complete and a replay: ${calls} fetches`);
  await assert.rejects(
    client.api.complete({ namespace: "fetch", key: "sms-1", fencingToken: 1n << 60n }),
    (error) => error.code === Code.FailedPrecondition,
  );
  assert.ok(LeaseLost, "exported");
});
