import type { Client as ApiClient, Transport } from "@connectrpc/connect";
import { Onceward, type ClaimResponse } from "./gen/onceward/v1/onceward_pb.js";
import { type ClientConfig } from "./retry.js";
/** Random bytes in the claimant of each logical Claim. */
export declare const CLAIMANT_BYTES = 16;
/** What `once` returns: the effect's response, and whether an earlier call ran it. */
export interface Once {
    response: Uint8Array;
    /** True if an earlier call ran the effect and this is its stored result. */
    replayed: boolean;
}
/** Per-call options of `once` and `claim`. */
export interface OnceOptions {
    /** Abandons the call (waits, retries and in-flight RPCs) when aborted. */
    signal?: AbortSignal;
    /** Whose spend this is (a user, a recipient, a shop), for the namespace's budget. */
    subject?: string;
    /** Units of the namespace's budget the effect spends (cents, messages). */
    cost?: bigint | number;
}
/**
 * The side effect: given the fencing token, does the work and returns the result to
 * store (bytes, or a string stored as UTF-8). Throwing means it did not happen.
 */
export type Effect = (fencingToken: bigint) => Promise<Uint8Array | string> | Uint8Array | string;
/** onceward's client over any Connect transport (gRPC, Connect or gRPC-Web). */
export declare class Client {
    /** The generated API on the same transport, without retries. */
    readonly api: ApiClient<typeof Onceward>;
    readonly config: Readonly<ClientConfig>;
    private readonly budget;
    constructor(transport: Transport, config?: Partial<ClientConfig>);
    /**
     * One Claim (failed calls retried; IN_PROGRESS is returned, not waited on). Every
     * retry carries the same random claimant and the next attempt number, so a retry
     * after a lost reply is ACQUIRED again with the same fencing token.
     */
    claim(namespace: string, key: string, fingerprint?: Uint8Array | string, options?: OnceOptions): Promise<ClaimResponse>;
    /**
     * Runs `effect(fencingToken)` at most once for (namespace, key), across every caller
     * of every sidecar sharing the ledger. Returns the effect's result (`replayed`
     * false) or, if an earlier call ran it, the stored result (`replayed` true). If the
     * effect throws, it did not happen: the claim is released and the error propagates.
     */
    once(namespace: string, key: string, fingerprint: Uint8Array | string, effect: Effect, options?: OnceOptions): Promise<Once>;
    /** Releases a claim whose effect did not happen; failures leave it to its lease. */
    private release;
    /**
     * One RPC with retries: backoff with full jitter and, unless a `deadline` is given
     * (Complete after the effect ran), the attempt cap and the retry budget.
     * `attempt(n, callOptions)` sends attempt n (1 for the first).
     */
    call<T>(attempt: (n: number, callOptions: {
        timeoutMs: number;
        signal?: AbortSignal;
    }) => Promise<T>, signal?: AbortSignal, deadline?: number): Promise<T>;
}
