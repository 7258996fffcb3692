// Transports for Node: gRPC over HTTP/2 (the default), or Connect or gRPC-Web over
// HTTP/1.1 or HTTP/2, with the tenant's bearer token and TLS settings.
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, } from "@connectrpc/connect-node";
import { bearer } from "./transport.js";
/** A transport for Node. */
export function createNodeTransport(options) {
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
    };
    return protocol === "connect"
        ? createConnectTransport(common)
        : createGrpcWebTransport(common);
}
