// The transport for fetch-only runtimes (browsers, workers, Deno, Bun, Node): the
// Connect protocol over `fetch`, JSON or binary, with the tenant's bearer token.

import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

/** Where the sidecar is and how to call it over `fetch`. */
export interface FetchTransportOptions {
  /** The sidecar's address, e.g. `http://127.0.0.1:50051` or `https://onceward.internal`. */
  baseUrl: string;
  /** The tenant's bearer token, sent as `authorization: Bearer …` on every call. */
  token?: string;
  /** Protobuf instead of JSON on the wire (smaller and faster; JSON is easier to read). */
  useBinaryFormat?: boolean;
  /** The `fetch` to use; the global one by default. */
  fetch?: typeof globalThis.fetch;
}

/** A Connect transport over `fetch`. */
export function createFetchTransport(options: FetchTransportOptions): Transport {
  return createConnectTransport({
    baseUrl: options.baseUrl,
    useBinaryFormat: options.useBinaryFormat ?? false,
    fetch: options.fetch,
    interceptors: bearer(options.token),
  });
}

/** The interceptor adding `authorization: Bearer <token>`, or none without a token. */
export function bearer(token: string | undefined): Interceptor[] {
  if (token === undefined) {
    return [];
  }
  // The message names the rule, never the token.
  if (!/^[!-~]+$/.test(token)) {
    throw new TypeError("token must be non-empty printable ASCII without spaces");
  }
  return [
    (next) => async (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    },
  ];
}
