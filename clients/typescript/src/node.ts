// Transports for Node: gRPC over HTTP/2 (the default), or Connect or gRPC-Web over
// HTTP/1.1 or HTTP/2, with the tenant's bearer token and TLS settings.

import type { Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  type Http2SessionManager,
} from "@connectrpc/connect-node";
import type { SecureContextOptions } from "node:tls";

import { bearer } from "./transport.js";

/** Where the sidecar is and how to call it from Node. */
export interface NodeTransportOptions {
  /** The sidecar's address, e.g. `http://127.0.0.1:50051`; `https://` for TLS. */
  baseUrl: string;
  /** The tenant's bearer token, sent as `authorization: Bearer …` on every call. */
  token?: string;
  /** `grpc` (HTTP/2, the default), `connect` or `grpc-web`. */
  protocol?: "grpc" | "connect" | "grpc-web";
  /** HTTP version for `connect` and `grpc-web` (gRPC is always HTTP/2). Default `2`. */
  httpVersion?: "1.1" | "2";
  /** Connect only: protobuf instead of JSON on the wire. Default true. */
  useBinaryFormat?: boolean;
  /** TLS: `ca` (the CA that signed the sidecar's certificate), `cert` and `key` for mutual TLS. */
  tls?: Pick<SecureContextOptions, "ca" | "cert" | "key">;
  /** An HTTP/2 session manager of your own (to share or to close connections). */
  sessionManager?: Http2SessionManager;
}

/** A transport for Node. */
export function createNodeTransport(options: NodeTransportOptions): Transport {
  const interceptors = bearer(options.token);
  const nodeOptions = options.tls ? { ...options.tls } : undefined;
  const protocol = options.protocol ?? "grpc";
  if (protocol === "grpc") {
    return createGrpcTransport({
      baseUrl: options.baseUrl,
      interceptors,
      nodeOptions,
      sessionManager: options.sessionManager,
    });
  }
  const common = {
    baseUrl: options.baseUrl,
    interceptors,
    httpVersion: options.httpVersion ?? "2",
    useBinaryFormat: options.useBinaryFormat ?? true,
    nodeOptions,
  } as const;
  return protocol === "connect"
    ? createConnectTransport(common)
    : createGrpcWebTransport(common);
}
