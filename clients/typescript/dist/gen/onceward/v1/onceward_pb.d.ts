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
     * Whose spend this is (a user, a recipient, a shop): 0-128 bytes, no control
     * characters. The namespace's budget is per subject; without one, not limited.
     *
     * @generated from field: string subject = 5;
     */
    subject: string;
    /**
     * Units of the namespace's budget this effect spends (cents, messages); 0 = free.
     *
     * @generated from field: uint64 cost = 6;
     */
    cost: bigint;
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
     * With OUTCOME_IN_PROGRESS: how long to wait before claiming again. With
     * OUTCOME_OVER_BUDGET: the time until the subject's budget window resets.
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
    /**
     * With OUTCOME_BLOCKED: the killswitch's reason; with OUTCOME_OVER_BUDGET: the limit
     * (`max_cost` or `max_claims`).
     *
     * @generated from field: string reason = 7;
     */
    reason: string;
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
 * @generated from message onceward.v1.ClaimBatchRequest
 */
export type ClaimBatchRequest = Message<"onceward.v1.ClaimBatchRequest"> & {
    /**
     * The namespace of every item.
     *
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * 1 to --max-batch-items items (default 1000), each key at most once.
     *
     * @generated from field: repeated onceward.v1.ClaimItem items = 2;
     */
    items: ClaimItem[];
    /**
     * The lease of every claim acquired. Zero or absent: server default.
     *
     * @generated from field: google.protobuf.Duration lease = 3;
     */
    lease?: Duration | undefined;
};
/**
 * Describes the message onceward.v1.ClaimBatchRequest.
 * Use `create(ClaimBatchRequestSchema)` to create a new message.
 */
export declare const ClaimBatchRequestSchema: GenMessage<ClaimBatchRequest>;
/**
 * One key of a ClaimBatch; the fields mean what they mean in ClaimRequest.
 *
 * @generated from message onceward.v1.ClaimItem
 */
export type ClaimItem = Message<"onceward.v1.ClaimItem"> & {
    /**
     * @generated from field: string key = 1;
     */
    key: string;
    /**
     * @generated from field: bytes fingerprint = 2;
     */
    fingerprint: Uint8Array;
    /**
     * Reserved for spend policies; must be empty in this version.
     *
     * @generated from field: string subject = 3;
     */
    subject: string;
    /**
     * Reserved for spend policies; must be 0 in this version.
     *
     * @generated from field: uint64 cost = 4;
     */
    cost: bigint;
    /**
     * @generated from field: bytes claimant = 5;
     */
    claimant: Uint8Array;
    /**
     * @generated from field: uint32 attempt = 6;
     */
    attempt: number;
};
/**
 * Describes the message onceward.v1.ClaimItem.
 * Use `create(ClaimItemSchema)` to create a new message.
 */
export declare const ClaimItemSchema: GenMessage<ClaimItem>;
/**
 * @generated from message onceward.v1.ClaimBatchResponse
 */
export type ClaimBatchResponse = Message<"onceward.v1.ClaimBatchResponse"> & {
    /**
     * One per item, in request order.
     *
     * @generated from field: repeated onceward.v1.ClaimResponse results = 1;
     */
    results: ClaimResponse[];
};
/**
 * Describes the message onceward.v1.ClaimBatchResponse.
 * Use `create(ClaimBatchResponseSchema)` to create a new message.
 */
export declare const ClaimBatchResponseSchema: GenMessage<ClaimBatchResponse>;
/**
 * @generated from message onceward.v1.CompleteBatchRequest
 */
export type CompleteBatchRequest = Message<"onceward.v1.CompleteBatchRequest"> & {
    /**
     * The namespace of every item.
     *
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * 1 to --max-batch-items items (default 1000), each key at most once.
     *
     * @generated from field: repeated onceward.v1.CompleteItem items = 2;
     */
    items: CompleteItem[];
    /**
     * How long every completed record is kept. Zero or absent: server default (24 h).
     *
     * @generated from field: google.protobuf.Duration retention = 3;
     */
    retention?: Duration | undefined;
};
/**
 * Describes the message onceward.v1.CompleteBatchRequest.
 * Use `create(CompleteBatchRequestSchema)` to create a new message.
 */
export declare const CompleteBatchRequestSchema: GenMessage<CompleteBatchRequest>;
/**
 * One claim of a CompleteBatch; the fields mean what they mean in CompleteRequest.
 *
 * @generated from message onceward.v1.CompleteItem
 */
export type CompleteItem = Message<"onceward.v1.CompleteItem"> & {
    /**
     * @generated from field: string key = 1;
     */
    key: string;
    /**
     * @generated from field: uint64 fencing_token = 2;
     */
    fencingToken: bigint;
    /**
     * @generated from field: bytes response = 3;
     */
    response: Uint8Array;
};
/**
 * Describes the message onceward.v1.CompleteItem.
 * Use `create(CompleteItemSchema)` to create a new message.
 */
export declare const CompleteItemSchema: GenMessage<CompleteItem>;
/**
 * @generated from message onceward.v1.CompleteBatchResponse
 */
export type CompleteBatchResponse = Message<"onceward.v1.CompleteBatchResponse"> & {
    /**
     * One per item, in request order.
     *
     * @generated from field: repeated onceward.v1.CompleteResult results = 1;
     */
    results: CompleteResult[];
};
/**
 * Describes the message onceward.v1.CompleteBatchResponse.
 * Use `create(CompleteBatchResponseSchema)` to create a new message.
 */
export declare const CompleteBatchResponseSchema: GenMessage<CompleteBatchResponse>;
/**
 * @generated from message onceward.v1.CompleteResult
 */
export type CompleteResult = Message<"onceward.v1.CompleteResult"> & {
    /**
     * A gRPC status code: 0 (OK), or 9 (FAILED_PRECONDITION: the token is not the
     * holder's).
     *
     * @generated from field: uint32 code = 1;
     */
    code: number;
    /**
     * Why, when the code is not 0.
     *
     * @generated from field: string message = 2;
     */
    message: string;
    /**
     * With code 0: when the completed record expires.
     *
     * @generated from field: google.protobuf.Timestamp expires_at = 3;
     */
    expiresAt?: Timestamp | undefined;
};
/**
 * Describes the message onceward.v1.CompleteResult.
 * Use `create(CompleteResultSchema)` to create a new message.
 */
export declare const CompleteResultSchema: GenMessage<CompleteResult>;
/**
 * @generated from message onceward.v1.ForgetRequest
 */
export type ForgetRequest = Message<"onceward.v1.ForgetRequest"> & {
    /**
     * The key's namespace.
     *
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * The key to forget.
     *
     * @generated from field: string key = 2;
     */
    key: string;
    /**
     * Forget a live claim too (its holder's Complete, Release and ExtendLease are then
     * refused with FAILED_PRECONDITION).
     *
     * @generated from field: bool force = 3;
     */
    force: boolean;
};
/**
 * Describes the message onceward.v1.ForgetRequest.
 * Use `create(ForgetRequestSchema)` to create a new message.
 */
export declare const ForgetRequestSchema: GenMessage<ForgetRequest>;
/**
 * @generated from message onceward.v1.ForgetResponse
 */
export type ForgetResponse = Message<"onceward.v1.ForgetResponse"> & {
    /**
     * Whether the ledger held a record for the key (and now does not).
     *
     * @generated from field: bool found = 1;
     */
    found: boolean;
};
/**
 * Describes the message onceward.v1.ForgetResponse.
 * Use `create(ForgetResponseSchema)` to create a new message.
 */
export declare const ForgetResponseSchema: GenMessage<ForgetResponse>;
/**
 * A namespace's spend guard, stored in the ledger and shared by every sidecar on it.
 *
 * @generated from message onceward.v1.Policy
 */
export type Policy = Message<"onceward.v1.Policy"> & {
    /**
     * Engaged: no new ACQUIRED in this namespace (duplicates are still answered).
     *
     * @generated from field: bool killswitch = 1;
     */
    killswitch: boolean;
    /**
     * Shown to callers in ClaimResponse.reason while the killswitch is engaged.
     *
     * @generated from field: string killswitch_reason = 2;
     */
    killswitchReason: string;
    /**
     * Absent: no budget.
     *
     * @generated from field: onceward.v1.Budget budget = 3;
     */
    budget?: Budget | undefined;
};
/**
 * Describes the message onceward.v1.Policy.
 * Use `create(PolicySchema)` to create a new message.
 */
export declare const PolicySchema: GenMessage<Policy>;
/**
 * Per subject, per window.
 *
 * @generated from message onceward.v1.Budget
 */
export type Budget = Message<"onceward.v1.Budget"> & {
    /**
     * 0: no cost limit.
     *
     * @generated from field: uint64 max_cost = 1;
     */
    maxCost: bigint;
    /**
     * 0: no count limit (the fan-out cap).
     *
     * @generated from field: uint64 max_claims = 2;
     */
    maxClaims: bigint;
    /**
     * Fixed windows aligned to the Unix epoch on the ledger's clock (1 s to 31 d).
     *
     * @generated from field: google.protobuf.Duration window = 3;
     */
    window?: Duration | undefined;
    /**
     * A Claim without a subject is INVALID_ARGUMENT.
     *
     * @generated from field: bool require_subject = 4;
     */
    requireSubject: boolean;
};
/**
 * Describes the message onceward.v1.Budget.
 * Use `create(BudgetSchema)` to create a new message.
 */
export declare const BudgetSchema: GenMessage<Budget>;
/**
 * @generated from message onceward.v1.GetPolicyRequest
 */
export type GetPolicyRequest = Message<"onceward.v1.GetPolicyRequest"> & {
    /**
     * @generated from field: string namespace = 1;
     */
    namespace: string;
};
/**
 * Describes the message onceward.v1.GetPolicyRequest.
 * Use `create(GetPolicyRequestSchema)` to create a new message.
 */
export declare const GetPolicyRequestSchema: GenMessage<GetPolicyRequest>;
/**
 * @generated from message onceward.v1.SetPolicyRequest
 */
export type SetPolicyRequest = Message<"onceward.v1.SetPolicyRequest"> & {
    /**
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * Replaces the namespace's policy whole; absent or empty: no policy.
     *
     * @generated from field: onceward.v1.Policy policy = 2;
     */
    policy?: Policy | undefined;
};
/**
 * Describes the message onceward.v1.SetPolicyRequest.
 * Use `create(SetPolicyRequestSchema)` to create a new message.
 */
export declare const SetPolicyRequestSchema: GenMessage<SetPolicyRequest>;
/**
 * @generated from message onceward.v1.GetSpendRequest
 */
export type GetSpendRequest = Message<"onceward.v1.GetSpendRequest"> & {
    /**
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * @generated from field: string subject = 2;
     */
    subject: string;
};
/**
 * Describes the message onceward.v1.GetSpendRequest.
 * Use `create(GetSpendRequestSchema)` to create a new message.
 */
export declare const GetSpendRequestSchema: GenMessage<GetSpendRequest>;
/**
 * What a subject has spent in the current window.
 *
 * @generated from message onceward.v1.Spend
 */
export type Spend = Message<"onceward.v1.Spend"> & {
    /**
     * @generated from field: google.protobuf.Timestamp window_start = 1;
     */
    windowStart?: Timestamp | undefined;
    /**
     * @generated from field: google.protobuf.Timestamp window_end = 2;
     */
    windowEnd?: Timestamp | undefined;
    /**
     * @generated from field: uint64 cost = 3;
     */
    cost: bigint;
    /**
     * @generated from field: uint64 claims = 4;
     */
    claims: bigint;
};
/**
 * Describes the message onceward.v1.Spend.
 * Use `create(SpendSchema)` to create a new message.
 */
export declare const SpendSchema: GenMessage<Spend>;
/**
 * @generated from message onceward.v1.ListEventsRequest
 */
export type ListEventsRequest = Message<"onceward.v1.ListEventsRequest"> & {
    /**
     * @generated from field: string namespace = 1;
     */
    namespace: string;
    /**
     * Only events at or after this instant; absent: all that are kept.
     *
     * @generated from field: google.protobuf.Timestamp since = 2;
     */
    since?: Timestamp | undefined;
    /**
     * At most this many, newest first: default 100, at most 1000.
     *
     * @generated from field: uint32 limit = 3;
     */
    limit: number;
};
/**
 * Describes the message onceward.v1.ListEventsRequest.
 * Use `create(ListEventsRequestSchema)` to create a new message.
 */
export declare const ListEventsRequestSchema: GenMessage<ListEventsRequest>;
/**
 * @generated from message onceward.v1.ListEventsResponse
 */
export type ListEventsResponse = Message<"onceward.v1.ListEventsResponse"> & {
    /**
     * @generated from field: repeated onceward.v1.Event events = 1;
     */
    events: Event[];
};
/**
 * Describes the message onceward.v1.ListEventsResponse.
 * Use `create(ListEventsResponseSchema)` to create a new message.
 */
export declare const ListEventsResponseSchema: GenMessage<ListEventsResponse>;
/**
 * One entry of the audit trail.
 *
 * @generated from message onceward.v1.Event
 */
export type Event = Message<"onceward.v1.Event"> & {
    /**
     * @generated from field: google.protobuf.Timestamp at = 1;
     */
    at?: Timestamp | undefined;
    /**
     * @generated from field: string key = 2;
     */
    key: string;
    /**
     * @generated from field: string subject = 3;
     */
    subject: string;
    /**
     * @generated from field: onceward.v1.EventKind kind = 4;
     */
    kind: EventKind;
    /**
     * How many answers this event stands for (duplicates are counted per key per minute).
     *
     * @generated from field: uint64 count = 5;
     */
    count: bigint;
    /**
     * @generated from field: string detail = 6;
     */
    detail: string;
};
/**
 * Describes the message onceward.v1.Event.
 * Use `create(EventSchema)` to create a new message.
 */
export declare const EventSchema: GenMessage<Event>;
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
    FINGERPRINT_MISMATCH = 4,
    /**
     * @generated from enum value: OUTCOME_BLOCKED = 5;
     */
    BLOCKED = 5,
    /**
     * @generated from enum value: OUTCOME_OVER_BUDGET = 6;
     */
    OVER_BUDGET = 6
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
 * @generated from enum onceward.v1.EventKind
 */
export declare enum EventKind {
    /**
     * @generated from enum value: EVENT_KIND_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * @generated from enum value: EVENT_KIND_DUPLICATE = 1;
     */
    DUPLICATE = 1,
    /**
     * @generated from enum value: EVENT_KIND_FINGERPRINT_MISMATCH = 2;
     */
    FINGERPRINT_MISMATCH = 2,
    /**
     * @generated from enum value: EVENT_KIND_BLOCKED = 3;
     */
    BLOCKED = 3,
    /**
     * @generated from enum value: EVENT_KIND_OVER_BUDGET = 4;
     */
    OVER_BUDGET = 4,
    /**
     * @generated from enum value: EVENT_KIND_TAKEOVER = 5;
     */
    TAKEOVER = 5,
    /**
     * @generated from enum value: EVENT_KIND_RELEASE = 6;
     */
    RELEASE = 6,
    /**
     * @generated from enum value: EVENT_KIND_FORGET = 7;
     */
    FORGET = 7
}
/**
 * Describes the enum onceward.v1.EventKind.
 */
export declare const EventKindSchema: GenEnum<EventKind>;
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
    /**
     * Claims up to --max-batch-items keys of one namespace in one call: each item is
     * answered exactly as a Claim of it would be, in request order, with one round trip
     * to each tier for the whole batch. An empty batch, a key twice, or any invalid item
     * refuses the whole call (INVALID_ARGUMENT naming the item's index) and does nothing.
     *
     * @generated from rpc onceward.v1.Onceward.ClaimBatch
     */
    claimBatch: {
        methodKind: "unary";
        input: typeof ClaimBatchRequestSchema;
        output: typeof ClaimBatchResponseSchema;
    };
    /**
     * Completes up to --max-batch-items claims of one namespace in one call. An item whose
     * token is not the holder's gets FAILED_PRECONDITION as its own code; the call succeeds.
     *
     * @generated from rpc onceward.v1.Onceward.CompleteBatch
     */
    completeBatch: {
        methodKind: "unary";
        input: typeof CompleteBatchRequestSchema;
        output: typeof CompleteBatchResponseSchema;
    };
}>;
/**
 * Operators' RPCs. With tenants configured, only a tenant marked `admin = true` may call
 * them, and only for its own namespaces.
 *
 * @generated from service onceward.v1.Admin
 */
export declare const Admin: GenService<{
    /**
     * The namespace's policy (empty when it has none).
     *
     * @generated from rpc onceward.v1.Admin.GetPolicy
     */
    getPolicy: {
        methodKind: "unary";
        input: typeof GetPolicyRequestSchema;
        output: typeof PolicySchema;
    };
    /**
     * Replaces the namespace's policy whole; every sidecar sharing the ledger applies it
     * within 1 s.
     *
     * @generated from rpc onceward.v1.Admin.SetPolicy
     */
    setPolicy: {
        methodKind: "unary";
        input: typeof SetPolicyRequestSchema;
        output: typeof PolicySchema;
    };
    /**
     * What a subject spent in the namespace's current budget window.
     *
     * @generated from rpc onceward.v1.Admin.GetSpend
     */
    getSpend: {
        methodKind: "unary";
        input: typeof GetSpendRequestSchema;
        output: typeof SpendSchema;
    };
    /**
     * Deletes a key's record from the ledger and the hot tier, and every sidecar sharing
     * the ledger drops its in-memory copies within 1 s: the key is new again everywhere.
     * A live claim is only forgotten with `force` (its holder's token is then refused);
     * without it, FAILED_PRECONDITION.
     *
     * @generated from rpc onceward.v1.Admin.Forget
     */
    forget: {
        methodKind: "unary";
        input: typeof ForgetRequestSchema;
        output: typeof ForgetResponseSchema;
    };
    /**
     * The audit trail, newest first: rejections, takeovers, releases, forgets, and
     * duplicates counted per key per minute.
     *
     * @generated from rpc onceward.v1.Admin.ListEvents
     */
    listEvents: {
        methodKind: "unary";
        input: typeof ListEventsRequestSchema;
        output: typeof ListEventsResponseSchema;
    };
}>;
