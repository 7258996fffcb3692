// The transport for fetch-only runtimes (browsers, workers, Deno, Bun, Node): the
// Connect protocol over `fetch`, JSON or binary, with the tenant's bearer token.
import { createConnectTransport } from "@connectrpc/connect-web";
/** A Connect transport over `fetch`. */
export function createFetchTransport(options) {
    return createConnectTransport({
        baseUrl: options.baseUrl,
        useBinaryFormat: options.useBinaryFormat ?? false,
        fetch: options.fetch,
        interceptors: bearer(options.token),
    });
}
/** The interceptor adding `authorization: Bearer <token>`, or none without a token. */
export function bearer(token) {
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
