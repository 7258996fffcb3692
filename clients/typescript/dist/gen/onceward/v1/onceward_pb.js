// onceward: make a paid or irreversible side effect happen at most once per logical
// operation. Claim the idempotency key, run the effect, Complete with the result; every
// duplicate gets the stored result back instead of a second side effect.
import { enumDesc, fileDesc, messageDesc, serviceDesc } from "@bufbuild/protobuf/codegenv2";
import { file_google_protobuf_duration, file_google_protobuf_timestamp } from "@bufbuild/protobuf/wkt";
/**
 * Describes the file onceward/v1/onceward.proto.
 */
export const file_onceward_v1_onceward = /*@__PURE__*/ fileDesc("ChpvbmNld2FyZC92MS9vbmNld2FyZC5wcm90bxILb25jZXdhcmQudjEikAEKDENsYWltUmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSCwoDa2V5GAIgASgJEhMKC2ZpbmdlcnByaW50GAMgASgMEigKBWxlYXNlGAQgASgLMhkuZ29vZ2xlLnByb3RvYnVmLkR1cmF0aW9uEhAKCGNsYWltYW50GAcgASgMEg8KB2F0dGVtcHQYCCABKA0i5wEKDUNsYWltUmVzcG9uc2USJQoHb3V0Y29tZRgBIAEoDjIULm9uY2V3YXJkLnYxLk91dGNvbWUSFQoNZmVuY2luZ190b2tlbhgCIAEoBBIQCghyZXNwb25zZRgDIAEoDBIuCgtyZXRyeV9hZnRlchgEIAEoCzIZLmdvb2dsZS5wcm90b2J1Zi5EdXJhdGlvbhIkCglzZXJ2ZWRfYnkYBSABKA4yES5vbmNld2FyZC52MS5UaWVyEjAKDGNvbXBsZXRlZF9hdBgGIAEoCzIaLmdvb2dsZS5wcm90b2J1Zi5UaW1lc3RhbXAiiAEKD0NvbXBsZXRlUmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSCwoDa2V5GAIgASgJEhUKDWZlbmNpbmdfdG9rZW4YAyABKAQSEAoIcmVzcG9uc2UYBCABKAwSLAoJcmV0ZW50aW9uGAUgASgLMhkuZ29vZ2xlLnByb3RvYnVmLkR1cmF0aW9uIkIKEENvbXBsZXRlUmVzcG9uc2USLgoKZXhwaXJlc19hdBgBIAEoCzIaLmdvb2dsZS5wcm90b2J1Zi5UaW1lc3RhbXAiRwoOUmVsZWFzZVJlcXVlc3QSEQoJbmFtZXNwYWNlGAEgASgJEgsKA2tleRgCIAEoCRIVCg1mZW5jaW5nX3Rva2VuGAMgASgEIhEKD1JlbGVhc2VSZXNwb25zZSJ1ChJFeHRlbmRMZWFzZVJlcXVlc3QSEQoJbmFtZXNwYWNlGAEgASgJEgsKA2tleRgCIAEoCRIVCg1mZW5jaW5nX3Rva2VuGAMgASgEEigKBWxlYXNlGAQgASgLMhkuZ29vZ2xlLnByb3RvYnVmLkR1cmF0aW9uIksKE0V4dGVuZExlYXNlUmVzcG9uc2USNAoQbGVhc2VfZXhwaXJlc19hdBgBIAEoCzIaLmdvb2dsZS5wcm90b2J1Zi5UaW1lc3RhbXAiLwoNTG9va3VwUmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSCwoDa2V5GAIgASgJIkQKDkxvb2t1cFJlc3BvbnNlEg0KBWZvdW5kGAEgASgIEiMKBnJlY29yZBgCIAEoCzITLm9uY2V3YXJkLnYxLlJlY29yZCLAAgoGUmVjb3JkEhEKCW5hbWVzcGFjZRgBIAEoCRILCgNrZXkYAiABKAkSJwoFc3RhdGUYAyABKA4yGC5vbmNld2FyZC52MS5SZWNvcmRTdGF0ZRITCgtmaW5nZXJwcmludBgEIAEoDBIQCghyZXNwb25zZRgFIAEoDBIuCgpjcmVhdGVkX2F0GAYgASgLMhouZ29vZ2xlLnByb3RvYnVmLlRpbWVzdGFtcBIwCgxjb21wbGV0ZWRfYXQYByABKAsyGi5nb29nbGUucHJvdG9idWYuVGltZXN0YW1wEjQKEGxlYXNlX2V4cGlyZXNfYXQYCCABKAsyGi5nb29nbGUucHJvdG9idWYuVGltZXN0YW1wEi4KCmV4cGlyZXNfYXQYCSABKAsyGi5nb29nbGUucHJvdG9idWYuVGltZXN0YW1wIncKEUNsYWltQmF0Y2hSZXF1ZXN0EhEKCW5hbWVzcGFjZRgBIAEoCRIlCgVpdGVtcxgCIAMoCzIWLm9uY2V3YXJkLnYxLkNsYWltSXRlbRIoCgVsZWFzZRgDIAEoCzIZLmdvb2dsZS5wcm90b2J1Zi5EdXJhdGlvbiJvCglDbGFpbUl0ZW0SCwoDa2V5GAEgASgJEhMKC2ZpbmdlcnByaW50GAIgASgMEg8KB3N1YmplY3QYAyABKAkSDAoEY29zdBgEIAEoBBIQCghjbGFpbWFudBgFIAEoDBIPCgdhdHRlbXB0GAYgASgNIkEKEkNsYWltQmF0Y2hSZXNwb25zZRIrCgdyZXN1bHRzGAEgAygLMhoub25jZXdhcmQudjEuQ2xhaW1SZXNwb25zZSKBAQoUQ29tcGxldGVCYXRjaFJlcXVlc3QSEQoJbmFtZXNwYWNlGAEgASgJEigKBWl0ZW1zGAIgAygLMhkub25jZXdhcmQudjEuQ29tcGxldGVJdGVtEiwKCXJldGVudGlvbhgDIAEoCzIZLmdvb2dsZS5wcm90b2J1Zi5EdXJhdGlvbiJECgxDb21wbGV0ZUl0ZW0SCwoDa2V5GAEgASgJEhUKDWZlbmNpbmdfdG9rZW4YAiABKAQSEAoIcmVzcG9uc2UYAyABKAwiRQoVQ29tcGxldGVCYXRjaFJlc3BvbnNlEiwKB3Jlc3VsdHMYASADKAsyGy5vbmNld2FyZC52MS5Db21wbGV0ZVJlc3VsdCJfCg5Db21wbGV0ZVJlc3VsdBIMCgRjb2RlGAEgASgNEg8KB21lc3NhZ2UYAiABKAkSLgoKZXhwaXJlc19hdBgDIAEoCzIaLmdvb2dsZS5wcm90b2J1Zi5UaW1lc3RhbXAiPgoNRm9yZ2V0UmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSCwoDa2V5GAIgASgJEg0KBWZvcmNlGAMgASgIIh8KDkZvcmdldFJlc3BvbnNlEg0KBWZvdW5kGAEgASgIKooBCgdPdXRjb21lEhcKE09VVENPTUVfVU5TUEVDSUZJRUQQABIUChBPVVRDT01FX0FDUVVJUkVEEAESFwoTT1VUQ09NRV9JTl9QUk9HUkVTUxACEhUKEU9VVENPTUVfQ09NUExFVEVEEAMSIAocT1VUQ09NRV9GSU5HRVJQUklOVF9NSVNNQVRDSBAEKj0KBFRpZXISFAoQVElFUl9VTlNQRUNJRklFRBAAEg4KClRJRVJfQ0FDSEUQARIPCgtUSUVSX0xFREdFUhACKmUKC1JlY29yZFN0YXRlEhwKGFJFQ09SRF9TVEFURV9VTlNQRUNJRklFRBAAEhwKGFJFQ09SRF9TVEFURV9JTl9QUk9HUkVTUxABEhoKFlJFQ09SRF9TVEFURV9DT01QTEVURUQQAjKVBAoIT25jZXdhcmQSPgoFQ2xhaW0SGS5vbmNld2FyZC52MS5DbGFpbVJlcXVlc3QaGi5vbmNld2FyZC52MS5DbGFpbVJlc3BvbnNlEkcKCENvbXBsZXRlEhwub25jZXdhcmQudjEuQ29tcGxldGVSZXF1ZXN0Gh0ub25jZXdhcmQudjEuQ29tcGxldGVSZXNwb25zZRJECgdSZWxlYXNlEhsub25jZXdhcmQudjEuUmVsZWFzZVJlcXVlc3QaHC5vbmNld2FyZC52MS5SZWxlYXNlUmVzcG9uc2USUAoLRXh0ZW5kTGVhc2USHy5vbmNld2FyZC52MS5FeHRlbmRMZWFzZVJlcXVlc3QaIC5vbmNld2FyZC52MS5FeHRlbmRMZWFzZVJlc3BvbnNlEkEKBkxvb2t1cBIaLm9uY2V3YXJkLnYxLkxvb2t1cFJlcXVlc3QaGy5vbmNld2FyZC52MS5Mb29rdXBSZXNwb25zZRJNCgpDbGFpbUJhdGNoEh4ub25jZXdhcmQudjEuQ2xhaW1CYXRjaFJlcXVlc3QaHy5vbmNld2FyZC52MS5DbGFpbUJhdGNoUmVzcG9uc2USVgoNQ29tcGxldGVCYXRjaBIhLm9uY2V3YXJkLnYxLkNvbXBsZXRlQmF0Y2hSZXF1ZXN0GiIub25jZXdhcmQudjEuQ29tcGxldGVCYXRjaFJlc3BvbnNlMkoKBUFkbWluEkEKBkZvcmdldBIaLm9uY2V3YXJkLnYxLkZvcmdldFJlcXVlc3QaGy5vbmNld2FyZC52MS5Gb3JnZXRSZXNwb25zZWIGcHJvdG8z", [file_google_protobuf_duration, file_google_protobuf_timestamp]);
/**
 * Describes the message onceward.v1.ClaimRequest.
 * Use `create(ClaimRequestSchema)` to create a new message.
 */
export const ClaimRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 0);
/**
 * Describes the message onceward.v1.ClaimResponse.
 * Use `create(ClaimResponseSchema)` to create a new message.
 */
export const ClaimResponseSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 1);
/**
 * Describes the message onceward.v1.CompleteRequest.
 * Use `create(CompleteRequestSchema)` to create a new message.
 */
export const CompleteRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 2);
/**
 * Describes the message onceward.v1.CompleteResponse.
 * Use `create(CompleteResponseSchema)` to create a new message.
 */
export const CompleteResponseSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 3);
/**
 * Describes the message onceward.v1.ReleaseRequest.
 * Use `create(ReleaseRequestSchema)` to create a new message.
 */
export const ReleaseRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 4);
/**
 * Describes the message onceward.v1.ReleaseResponse.
 * Use `create(ReleaseResponseSchema)` to create a new message.
 */
export const ReleaseResponseSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 5);
/**
 * Describes the message onceward.v1.ExtendLeaseRequest.
 * Use `create(ExtendLeaseRequestSchema)` to create a new message.
 */
export const ExtendLeaseRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 6);
/**
 * Describes the message onceward.v1.ExtendLeaseResponse.
 * Use `create(ExtendLeaseResponseSchema)` to create a new message.
 */
export const ExtendLeaseResponseSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 7);
/**
 * Describes the message onceward.v1.LookupRequest.
 * Use `create(LookupRequestSchema)` to create a new message.
 */
export const LookupRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 8);
/**
 * Describes the message onceward.v1.LookupResponse.
 * Use `create(LookupResponseSchema)` to create a new message.
 */
export const LookupResponseSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 9);
/**
 * Describes the message onceward.v1.Record.
 * Use `create(RecordSchema)` to create a new message.
 */
export const RecordSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 10);
/**
 * Describes the message onceward.v1.ClaimBatchRequest.
 * Use `create(ClaimBatchRequestSchema)` to create a new message.
 */
export const ClaimBatchRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 11);
/**
 * Describes the message onceward.v1.ClaimItem.
 * Use `create(ClaimItemSchema)` to create a new message.
 */
export const ClaimItemSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 12);
/**
 * Describes the message onceward.v1.ClaimBatchResponse.
 * Use `create(ClaimBatchResponseSchema)` to create a new message.
 */
export const ClaimBatchResponseSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 13);
/**
 * Describes the message onceward.v1.CompleteBatchRequest.
 * Use `create(CompleteBatchRequestSchema)` to create a new message.
 */
export const CompleteBatchRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 14);
/**
 * Describes the message onceward.v1.CompleteItem.
 * Use `create(CompleteItemSchema)` to create a new message.
 */
export const CompleteItemSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 15);
/**
 * Describes the message onceward.v1.CompleteBatchResponse.
 * Use `create(CompleteBatchResponseSchema)` to create a new message.
 */
export const CompleteBatchResponseSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 16);
/**
 * Describes the message onceward.v1.CompleteResult.
 * Use `create(CompleteResultSchema)` to create a new message.
 */
export const CompleteResultSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 17);
/**
 * Describes the message onceward.v1.ForgetRequest.
 * Use `create(ForgetRequestSchema)` to create a new message.
 */
export const ForgetRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 18);
/**
 * Describes the message onceward.v1.ForgetResponse.
 * Use `create(ForgetResponseSchema)` to create a new message.
 */
export const ForgetResponseSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 19);
/**
 * What a Claim decided.
 *
 * @generated from enum onceward.v1.Outcome
 */
export var Outcome;
(function (Outcome) {
    /**
     * Never sent by the server.
     *
     * @generated from enum value: OUTCOME_UNSPECIFIED = 0;
     */
    Outcome[Outcome["UNSPECIFIED"] = 0] = "UNSPECIFIED";
    /**
     * The caller holds the key: run the side effect, then Complete (or Release).
     *
     * @generated from enum value: OUTCOME_ACQUIRED = 1;
     */
    Outcome[Outcome["ACQUIRED"] = 1] = "ACQUIRED";
    /**
     * A live claim holds the key: retry after `retry_after`.
     *
     * @generated from enum value: OUTCOME_IN_PROGRESS = 2;
     */
    Outcome[Outcome["IN_PROGRESS"] = 2] = "IN_PROGRESS";
    /**
     * The key was completed: `response` is the stored result; do not run the effect.
     *
     * @generated from enum value: OUTCOME_COMPLETED = 3;
     */
    Outcome[Outcome["COMPLETED"] = 3] = "COMPLETED";
    /**
     * The key exists with a different fingerprint: a client bug; nothing changed.
     *
     * @generated from enum value: OUTCOME_FINGERPRINT_MISMATCH = 4;
     */
    Outcome[Outcome["FINGERPRINT_MISMATCH"] = 4] = "FINGERPRINT_MISMATCH";
})(Outcome || (Outcome = {}));
/**
 * Describes the enum onceward.v1.Outcome.
 */
export const OutcomeSchema = /*@__PURE__*/ enumDesc(file_onceward_v1_onceward, 0);
/**
 * Which tier decided a Claim's answer.
 *
 * @generated from enum onceward.v1.Tier
 */
export var Tier;
(function (Tier) {
    /**
     * Never sent by the server.
     *
     * @generated from enum value: TIER_UNSPECIFIED = 0;
     */
    Tier[Tier["UNSPECIFIED"] = 0] = "UNSPECIFIED";
    /**
     * The hot tier (Redis or in-process cache) answered.
     *
     * @generated from enum value: TIER_CACHE = 1;
     */
    Tier[Tier["CACHE"] = 1] = "CACHE";
    /**
     * The ledger (Postgres or SQLite), the authority, answered.
     *
     * @generated from enum value: TIER_LEDGER = 2;
     */
    Tier[Tier["LEDGER"] = 2] = "LEDGER";
})(Tier || (Tier = {}));
/**
 * Describes the enum onceward.v1.Tier.
 */
export const TierSchema = /*@__PURE__*/ enumDesc(file_onceward_v1_onceward, 1);
/**
 * The state of a ledger record.
 *
 * @generated from enum onceward.v1.RecordState
 */
export var RecordState;
(function (RecordState) {
    /**
     * Never sent by the server.
     *
     * @generated from enum value: RECORD_STATE_UNSPECIFIED = 0;
     */
    RecordState[RecordState["UNSPECIFIED"] = 0] = "UNSPECIFIED";
    /**
     * A claim holds the key; its side effect may be running.
     *
     * @generated from enum value: RECORD_STATE_IN_PROGRESS = 1;
     */
    RecordState[RecordState["IN_PROGRESS"] = 1] = "IN_PROGRESS";
    /**
     * The key was completed and its response stored.
     *
     * @generated from enum value: RECORD_STATE_COMPLETED = 2;
     */
    RecordState[RecordState["COMPLETED"] = 2] = "COMPLETED";
})(RecordState || (RecordState = {}));
/**
 * Describes the enum onceward.v1.RecordState.
 */
export const RecordStateSchema = /*@__PURE__*/ enumDesc(file_onceward_v1_onceward, 2);
/**
 * The idempotency service. Every RPC is keyed by (namespace, key).
 *
 * @generated from service onceward.v1.Onceward
 */
export const Onceward = /*@__PURE__*/ serviceDesc(file_onceward_v1_onceward, 0);
/**
 * Operators' RPCs. With tenants configured, only a tenant marked `admin = true` may call
 * them, and only for its own namespaces.
 *
 * @generated from service onceward.v1.Admin
 */
export const Admin = /*@__PURE__*/ serviceDesc(file_onceward_v1_onceward, 1);
