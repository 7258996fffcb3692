// A sidecar with tenants: the token travels on every protocol, and a refusal is
// `Unauthorized`, never retried.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Client, Outcome, Unauthorized, createFetchTransport } from "@onceward/client";
import { createNodeTransport } from "@onceward/client/node";

import { TOKEN, startSidecar } from "./sidecar.js";

let sidecar;
before(async () => {
  sidecar = await startSidecar({ tenants: true });
});
after(() => sidecar.stop());

test("with the tenant's token every protocol is served, without it none is", async () => {
  const kinds = [
    (token) => createNodeTransport({ baseUrl: sidecar.baseUrl, token }),
    (token) => createNodeTransport({ baseUrl: sidecar.baseUrl, token, protocol: "grpc-web", httpVersion: "1.1" }),
    (token) => createFetchTransport({ baseUrl: sidecar.baseUrl, token }),
  ];
  for (const [index, transport] of kinds.entries()) {
    const key = `secured-${index}`;
    const anonymous = new Client(transport(undefined), { initialBackoffMs: 1 });
    await assert.rejects(anonymous.once("payments", key, "", () => "x"), Unauthorized);
    const wrong = new Client(transport("not-the-token"));
    await assert.rejects(wrong.claim("payments", key), Unauthorized);

    const client = new Client(transport(TOKEN));
    const result = await client.once("payments", key, "", () => "paid");
    assert.equal(result.replayed, false);
    await assert.rejects(client.claim("mail", key), Unauthorized, "a namespace not granted");
    assert.equal((await client.claim("payments", key)).outcome, Outcome.COMPLETED);
  }
  assert.throws(() => createFetchTransport({ baseUrl: sidecar.baseUrl, token: "has space" }), TypeError);
});
