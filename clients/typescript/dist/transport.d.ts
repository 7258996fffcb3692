import type { Interceptor, Transport } from "@connectrpc/connect";
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
export declare function createFetchTransport(options: FetchTransportOptions): Transport;
/** The interceptor adding `authorization: Bearer <token>`, or none without a token. */
export declare function bearer(token: string | undefined): Interceptor[];
