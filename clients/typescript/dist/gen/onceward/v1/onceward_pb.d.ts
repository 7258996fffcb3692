import type { GenEnum, GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file onceward/v1/onceward.proto.
 */
export declare const file_onceward_v1_onceward: GenFile;
/**
 * @generated from message onceward.v1.ClaimRequest
 */
export type ClaimRequest = Message<"onceward.v1.ClaimRequest"> & {
    /**
     * 1-64 bytes of [A-Za-z0-9._-]; isolates one caller's keys from another's.
     *
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * 1-255 bytes, no control characters; the idempotency key of one logical operation.
     *
     * @generated from field: string key = 2;
     */
    key: string;
    /**
     * Up to 64 bytes identifying the request payload (e.g. its SHA-256). An empty
     * fingerprint, stored or sent, never mismatches.
     *
     * @generated from field: bytes fingerprint = 3;
     */
    fingerprint: Uint8Array;
    /**
     * How long the claim holds the key if not completed. Zero or absent: server default.
     *
     * @generated from field: google.protobuf.Duration lease = 4;
     */
    lease?: Duration | undefined;
    /**
     * 0-64 opaque bytes naming this logical attempt (clients send 16 random bytes and
     * reuse them on every retry of this Claim). A Claim that meets a live claim acquired
     * with the same non-empty claimant (and a compatible fingerprint) is ACQUIRED again
     * with the same fencing token, so a Claim whose reply was lost is safe to retry.
     * Stored with the claim and never returned; a capability, like the fencing token.
     *
     * @generated from field: bytes claimant = 7;
     */
    claimant: Uint8Array;
    /**
     * The caller's retry attempt for this logical operation: 1 = first try, 0 = not
     * given. Informational only (counted in onceward_claim_attempts_total).
     *
     * @generated from field: uint32 attempt = 8;
     */
    attempt: number;
};
/**
 * Describes the message onceward.v1.ClaimRequest.
 * Use `create(ClaimRequestSchema)` to create a new message.
 */
export declare const ClaimRequestSchema: GenMessage<ClaimRequest>;
/**
 * @generated from message onceward.v1.ClaimResponse
 */
export type ClaimResponse = Message<"onceward.v1.ClaimResponse"> & {
    /**
     * What the caller should do next.
     *
     * @generated from field: onceward.v1.Outcome outcome = 1;
     */
    outcome: Outcome;
    /**
     * With OUTCOME_ACQUIRED: the fencing token to pass to Complete, Release and ExtendLease.
     * Strictly larger than every token issued before for the key.
     *
     * @generated from field: uint64 fencing_token = 2;
     */
    fencingToken: bigint;
    /**
     * With OUTCOME_COMPLETED: the stored result, byte for byte.
     *
     * @generated from field: bytes response = 3;
     */
    response: Uint8Array;
    /**
     * With OUTCOME_IN_PROGRESS: how long to wait before claiming again.
     *
     * @generated from field: google.protobuf.Duration retry_after = 4;
     */
    retryAfter?: Duration | undefined;
    /**
     * Which tier decided this answer.
     *
     * @generated from field: onceward.v1.Tier served_by = 5;
     */
    servedBy: Tier;
    /**
     * With OUTCOME_COMPLETED: when the key was completed.
     *
     * @generated from field: google.protobuf.Timestamp completed_at = 6;
     */
    completedAt?: Timestamp | undefined;
};
/**
 * Describes the message onceward.v1.ClaimResponse.
 * Use `create(ClaimResponseSchema)` to create a new message.
 */
export declare const ClaimResponseSchema: GenMessage<ClaimResponse>;
/**
 * @generated from message onceward.v1.CompleteRequest
 */
export type CompleteRequest = Message<"onceward.v1.CompleteRequest"> & {
    /**
     * The namespace of the claimed key.
     *
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * The claimed key.
     *
     * @generated from field: string key = 2;
     */
    key: string;
    /**
     * The fencing token returned by the Claim that acquired the key.
     *
     * @generated from field: uint64 fencing_token = 3;
     */
    fencingToken: bigint;
    /**
     * The side effect's result, replayed to every duplicate. At most the server's
     * configured maximum (default 256 KiB).
     *
     * @generated from field: bytes response = 4;
     */
    response: Uint8Array;
    /**
     * How long the completed record is kept. Zero or absent: server default (24 h).
     *
     * @generated from field: google.protobuf.Duration retention = 5;
     */
    retention?: Duration | undefined;
};
/**
 * Describes the message onceward.v1.CompleteRequest.
 * Use `create(CompleteRequestSchema)` to create a new message.
 */
export declare const CompleteRequestSchema: GenMessage<CompleteRequest>;
/**
 * @generated from message onceward.v1.CompleteResponse
 */
export type CompleteResponse = Message<"onceward.v1.CompleteResponse"> & {
    /**
     * When the completed record expires and the key becomes new again.
     *
     * @generated from field: google.protobuf.Timestamp expires_at = 1;
     */
    expiresAt?: Timestamp | undefined;
};
/**
 * Describes the message onceward.v1.CompleteResponse.
 * Use `create(CompleteResponseSchema)` to create a new message.
 */
export declare const CompleteResponseSchema: GenMessage<CompleteResponse>;
/**
 * @generated from message onceward.v1.ReleaseRequest
 */
export type ReleaseRequest = Message<"onceward.v1.ReleaseRequest"> & {
    /**
     * The namespace of the claimed key.
     *
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * The claimed key.
     *
     * @generated from field: string key = 2;
     */
    key: string;
    /**
     * The fencing token returned by the Claim that acquired the key.
     *
     * @generated from field: uint64 fencing_token = 3;
     */
    fencingToken: bigint;
};
/**
 * Describes the message onceward.v1.ReleaseRequest.
 * Use `create(ReleaseRequestSchema)` to create a new message.
 */
export declare const ReleaseRequestSchema: GenMessage<ReleaseRequest>;
/**
 * @generated from message onceward.v1.ReleaseResponse
 */
export type ReleaseResponse = Message<"onceward.v1.ReleaseResponse"> & {};
/**
 * Describes the message onceward.v1.ReleaseResponse.
 * Use `create(ReleaseResponseSchema)` to create a new message.
 */
export declare const ReleaseResponseSchema: GenMessage<ReleaseResponse>;
/**
 * @generated from message onceward.v1.ExtendLeaseRequest
 */
export type ExtendLeaseRequest = Message<"onceward.v1.ExtendLeaseRequest"> & {
    /**
     * The namespace of the claimed key.
     *
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * The claimed key.
     *
     * @generated from field: string key = 2;
     */
    key: string;
    /**
     * The fencing token returned by the Claim that acquired the key.
     *
     * @generated from field: uint64 fencing_token = 3;
     */
    fencingToken: bigint;
    /**
     * The new lease, counted from now on the ledger's clock. Zero or absent: server default.
     *
     * @generated from field: google.protobuf.Duration lease = 4;
     */
    lease?: Duration | undefined;
};
/**
 * Describes the message onceward.v1.ExtendLeaseRequest.
 * Use `create(ExtendLeaseRequestSchema)` to create a new message.
 */
export declare const ExtendLeaseRequestSchema: GenMessage<ExtendLeaseRequest>;
/**
 * @generated from message onceward.v1.ExtendLeaseResponse
 */
export type ExtendLeaseResponse = Message<"onceward.v1.ExtendLeaseResponse"> & {
    /**
     * When the extended lease expires.
     *
     * @generated from field: google.protobuf.Timestamp lease_expires_at = 1;
     */
    leaseExpiresAt?: Timestamp | undefined;
};
/**
 * Describes the message onceward.v1.ExtendLeaseResponse.
 * Use `create(ExtendLeaseResponseSchema)` to create a new message.
 */
export declare const ExtendLeaseResponseSchema: GenMessage<ExtendLeaseResponse>;
/**
 * @generated from message onceward.v1.LookupRequest
 */
export type LookupRequest = Message<"onceward.v1.LookupRequest"> & {
    /**
     * The namespace of the key.
     *
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * The key to look up.
     *
     * @generated from field: string key = 2;
     */
    key: string;
};
/**
 * Describes the message onceward.v1.LookupRequest.
 * Use `create(LookupRequestSchema)` to create a new message.
 */
export declare const LookupRequestSchema: GenMessage<LookupRequest>;
/**
 * @generated from message onceward.v1.LookupResponse
 */
export type LookupResponse = Message<"onceward.v1.LookupResponse"> & {
    /**
     * Whether the ledger holds a record for the key.
     *
     * @generated from field: bool found = 1;
     */
    found: boolean;
    /**
     * The record, when found.
     *
     * @generated from field: onceward.v1.Record record = 2;
     */
    record?: Record | undefined;
};
/**
 * Describes the message onceward.v1.LookupResponse.
 * Use `create(LookupResponseSchema)` to create a new message.
 */
export declare const LookupResponseSchema: GenMessage<LookupResponse>;
/**
 * A ledger record. It carries no fencing token: a token is a capability and is only ever
 * returned to its claimer.
 *
 * @generated from message onceward.v1.Record
 */
export type Record = Message<"onceward.v1.Record"> & {
    /**
     * The record's namespace.
     *
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * The record's key.
     *
     * @generated from field: string key = 2;
     */
    key: string;
    /**
     * In progress or completed.
     *
     * @generated from field: onceward.v1.RecordState state = 3;
     */
    state: RecordState;
    /**
     * The fingerprint stored with the claim (may be empty).
     *
     * @generated from field: bytes fingerprint = 4;
     */
    fingerprint: Uint8Array;
    /**
     * The stored result, when completed.
     *
     * @generated from field: bytes response = 5;
     */
    response: Uint8Array;
    /**
     * When the key was first claimed.
     *
     * @generated from field: google.protobuf.Timestamp created_at = 6;
     */
    createdAt?: Timestamp | undefined;
    /**
     * When the key was completed (completed records only).
     *
     * @generated from field: google.protobuf.Timestamp completed_at = 7;
     */
    completedAt?: Timestamp | undefined;
    /**
     * When the current claim's lease expires (in-progress records only).
     *
     * @generated from field: google.protobuf.Timestamp lease_expires_at = 8;
     */
    leaseExpiresAt?: Timestamp | undefined;
    /**
     * When the record expires and is deleted by the retention job.
     *
     * @generated from field: google.protobuf.Timestamp expires_at = 9;
     */
    expiresAt?: Timestamp | undefined;
};
/**
 * Describes the message onceward.v1.Record.
 * Use `create(RecordSchema)` to create a new message.
 */
export declare const RecordSchema: GenMessage<Record>;
/**
 * What a Claim decided.
 *
 * @generated from enum onceward.v1.Outcome
 */
export declare enum Outcome {
    /**
     * Never sent by the server.
     *
     * @generated from enum value: OUTCOME_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * The caller holds the key: run the side effect, then Complete (or Release).
     *
     * @generated from enum value: OUTCOME_ACQUIRED = 1;
     */
    ACQUIRED = 1,
    /**
     * A live claim holds the key: retry after `retry_after`.
     *
     * @generated from enum value: OUTCOME_IN_PROGRESS = 2;
     */
    IN_PROGRESS = 2,
    /**
     * The key was completed: `response` is the stored result; do not run the effect.
     *
     * @generated from enum value: OUTCOME_COMPLETED = 3;
     */
    COMPLETED = 3,
    /**
     * The key exists with a different fingerprint: a client bug; nothing changed.
     *
     * @generated from enum value: OUTCOME_FINGERPRINT_MISMATCH = 4;
     */
    FINGERPRINT_MISMATCH = 4
}
/**
 * Describes the enum onceward.v1.Outcome.
 */
export declare const OutcomeSchema: GenEnum<Outcome>;
/**
 * Which tier decided a Claim's answer.
 *
 * @generated from enum onceward.v1.Tier
 */
export declare enum Tier {
    /**
     * Never sent by the server.
     *
     * @generated from enum value: TIER_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * The hot tier (Redis or in-process cache) answered.
     *
     * @generated from enum value: TIER_CACHE = 1;
     */
    CACHE = 1,
    /**
     * The ledger (Postgres or SQLite), the authority, answered.
     *
     * @generated from enum value: TIER_LEDGER = 2;
     */
    LEDGER = 2
}
/**
 * Describes the enum onceward.v1.Tier.
 */
export declare const TierSchema: GenEnum<Tier>;
/**
 * The state of a ledger record.
 *
 * @generated from enum onceward.v1.RecordState
 */
export declare enum RecordState {
    /**
     * Never sent by the server.
     *
     * @generated from enum value: RECORD_STATE_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * A claim holds the key; its side effect may be running.
     *
     * @generated from enum value: RECORD_STATE_IN_PROGRESS = 1;
     */
    IN_PROGRESS = 1,
    /**
     * The key was completed and its response stored.
     *
     * @generated from enum value: RECORD_STATE_COMPLETED = 2;
     */
    COMPLETED = 2
}
/**
 * Describes the enum onceward.v1.RecordState.
 */
export declare const RecordStateSchema: GenEnum<RecordState>;
/**
 * The idempotency service. Every RPC is keyed by (namespace, key).
 *
 * @generated from service onceward.v1.Onceward
 */
export declare const Onceward: GenService<{
    /**
     * Claims a key before the side effect. Exactly one concurrent caller per lease gets
     * OUTCOME_ACQUIRED with a fencing token; the others learn what to do from the outcome.
     *
     * @generated from rpc onceward.v1.Onceward.Claim
     */
    claim: {
        methodKind: "unary";
        input: typeof ClaimRequestSchema;
        output: typeof ClaimResponseSchema;
    };
    /**
     * Stores the side effect's result. Only the current holder's fencing token succeeds.
     *
     * @generated from rpc onceward.v1.Onceward.Complete
     */
    complete: {
        methodKind: "unary";
        input: typeof CompleteRequestSchema;
        output: typeof CompleteResponseSchema;
    };
    /**
     * Gives up a claim whose side effect did not happen, so the key can be claimed at once.
     *
     * @generated from rpc onceward.v1.Onceward.Release
     */
    release: {
        methodKind: "unary";
        input: typeof ReleaseRequestSchema;
        output: typeof ReleaseResponseSchema;
    };
    /**
     * Pushes the holder's lease further out (measured from the ledger's clock).
     *
     * @generated from rpc onceward.v1.Onceward.ExtendLease
     */
    extendLease: {
        methodKind: "unary";
        input: typeof ExtendLeaseRequestSchema;
        output: typeof ExtendLeaseResponseSchema;
    };
    /**
     * Reads the ledger's record for a key, without the fencing token.
     *
     * @generated from rpc onceward.v1.Onceward.Lookup
     */
    lookup: {
        methodKind: "unary";
        input: typeof LookupRequestSchema;
        output: typeof LookupResponseSchema;
    };
}>;
