// The README's TypeScript example runs as written (its address aside) against a real
// sidecar, importing the package by its name: sent the first time, replayed the second.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { startSidecar } from "./sidecar.js";

const here = dirname(fileURLToPath(import.meta.url));
const readme = readFileSync(resolve(here, "../../../README.md"), "utf8");

let sidecar;
before(async () => {
  sidecar = await startSidecar();
});
after(() => sidecar.stop());

test("the README's TypeScript example sends once and replays the second time", () => {
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]);
  assert.equal(blocks.length, 1, "the README has one TypeScript example");
  assert.ok(blocks[0].includes("http://127.0.0.1:50051"));
  // Inside the package, so that `@onceward/client` resolves to this package itself.
  const script = join(here, `.readme-${process.pid}.mjs`);
  writeFileSync(script, blocks[0].replace("http://127.0.0.1:50051", sidecar.baseUrl));
  try {
    const run = () => execFileSync(process.execPath, [script], { encoding: "utf8" }).trim();
    assert.equal(run(), "sent sms-3");
    assert.equal(run(), "already sent sms-3");
  } finally {
    rmSync(script, { force: true });
  }
});
