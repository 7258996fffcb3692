// Real sidecars for the suite: the built binary ($ONCEWARD_BIN, default
// ../../target/debug/onceward), embedded storage in a temp dir, free ports; one plain,
// one with tenants (bearer tokens). Each is ready once it answers a health check
// over Connect, and stopped by `stop()`.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const binary = process.env.ONCEWARD_BIN ?? resolve(here, "../../../target/debug/onceward");

/** The token of tenant `payments`, granted namespace `payments` only. */
export const TOKEN = "ts-payments-token-5e1d7c2a9b";

/** A free TCP port on loopback. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** Starts `onceward serve`; resolves to `{ baseUrl, addr, stop }` once it is serving. */
export async function startSidecar({ tenants = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "onceward-ts-"));
  const port = await freePort();
  const args = [
    "serve",
    "--listen", `127.0.0.1:${port}`,
    "--metrics-listen", `127.0.0.1:${await freePort()}`,
    "--data-dir", join(dir, "data"),
  ];
  if (tenants) {
    const sha = createHash("sha256").update(TOKEN).digest("hex");
    writeFileSync(
      join(dir, "tenants.toml"),
      `[[tenants]]\nname = "payments"\ntoken_sha256 = "${sha}"\nnamespaces = ["payments"]\n`,
    );
    args.push("--config", join(dir, "tenants.toml"));
  }
  // Only flags decide: an inherited ONCEWARD_DATABASE_URL must not redirect it.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("ONCEWARD_")));
  const log = join(dir, "sidecar.log");
  const { openSync } = await import("node:fs");
  const out = openSync(log, "w");
  const child = spawn(binary, args, { env, stdio: ["ignore", out, out] });
  const baseUrl = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  for (let tries = 0; ; tries++) {
    if (child.exitCode !== null) {
      throw new Error(`the sidecar exited (${child.exitCode}):\n${readFileSync(log, "utf8")}`);
    }
    try {
      const reply = await fetch(`${baseUrl}/grpc.health.v1.Health/Check`, {
        method: "POST",
        headers: { "content-type": "application/json", "connect-protocol-version": "1" },
        body: "{}",
      });
      if ((await reply.json()).status === "SERVING") {
        return { baseUrl, addr: `127.0.0.1:${port}`, stop };
      }
    } catch {
      // not listening yet
    }
    if (tries > 300) {
      await stop();
      throw new Error(`the sidecar never answered on ${baseUrl}`);
    }
    await new Promise((done) => setTimeout(done, 100));
  }
}
