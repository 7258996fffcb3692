// onceward: make a paid or irreversible side effect happen at most once per logical
// operation. Claim the idempotency key, run the effect, Complete with the result; every
// duplicate gets the stored result back instead of a second side effect.
import { enumDesc, fileDesc, messageDesc, serviceDesc } from "@bufbuild/protobuf/codegenv2";
import { file_google_protobuf_duration, file_google_protobuf_timestamp } from "@bufbuild/protobuf/wkt";
/**
 * Describes the file onceward/v1/onceward.proto.
 */
export const file_onceward_v1_onceward = /*@__PURE__*/ fileDesc("ChpvbmNld2FyZC92MS9vbmNld2FyZC5wcm90bxILb25jZXdhcmQudjEirwEKDENsYWltUmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSCwoDa2V5GAIgASgJEhMKC2ZpbmdlcnByaW50GAMgASgMEigKBWxlYXNlGAQgASgLMhkuZ29vZ2xlLnByb3RvYnVmLkR1cmF0aW9uEg8KB3N1YmplY3QYBSABKAkSDAoEY29zdBgGIAEoBBIQCghjbGFpbWFudBgHIAEoDBIPCgdhdHRlbXB0GAggASgNIvcBCg1DbGFpbVJlc3BvbnNlEiUKB291dGNvbWUYASABKA4yFC5vbmNld2FyZC52MS5PdXRjb21lEhUKDWZlbmNpbmdfdG9rZW4YAiABKAQSEAoIcmVzcG9uc2UYAyABKAwSLgoLcmV0cnlfYWZ0ZXIYBCABKAsyGS5nb29nbGUucHJvdG9idWYuRHVyYXRpb24SJAoJc2VydmVkX2J5GAUgASgOMhEub25jZXdhcmQudjEuVGllchIwCgxjb21wbGV0ZWRfYXQYBiABKAsyGi5nb29nbGUucHJvdG9idWYuVGltZXN0YW1wEg4KBnJlYXNvbhgHIAEoCSKIAQoPQ29tcGxldGVSZXF1ZXN0EhEKCW5hbWVzcGFjZRgBIAEoCRILCgNrZXkYAiABKAkSFQoNZmVuY2luZ190b2tlbhgDIAEoBBIQCghyZXNwb25zZRgEIAEoDBIsCglyZXRlbnRpb24YBSABKAsyGS5nb29nbGUucHJvdG9idWYuRHVyYXRpb24iQgoQQ29tcGxldGVSZXNwb25zZRIuCgpleHBpcmVzX2F0GAEgASgLMhouZ29vZ2xlLnByb3RvYnVmLlRpbWVzdGFtcCJHCg5SZWxlYXNlUmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSCwoDa2V5GAIgASgJEhUKDWZlbmNpbmdfdG9rZW4YAyABKAQiEQoPUmVsZWFzZVJlc3BvbnNlInUKEkV4dGVuZExlYXNlUmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSCwoDa2V5GAIgASgJEhUKDWZlbmNpbmdfdG9rZW4YAyABKAQSKAoFbGVhc2UYBCABKAsyGS5nb29nbGUucHJvdG9idWYuRHVyYXRpb24iSwoTRXh0ZW5kTGVhc2VSZXNwb25zZRI0ChBsZWFzZV9leHBpcmVzX2F0GAEgASgLMhouZ29vZ2xlLnByb3RvYnVmLlRpbWVzdGFtcCIvCg1Mb29rdXBSZXF1ZXN0EhEKCW5hbWVzcGFjZRgBIAEoCRILCgNrZXkYAiABKAkiRAoOTG9va3VwUmVzcG9uc2USDQoFZm91bmQYASABKAgSIwoGcmVjb3JkGAIgASgLMhMub25jZXdhcmQudjEuUmVjb3JkIsACCgZSZWNvcmQSEQoJbmFtZXNwYWNlGAEgASgJEgsKA2tleRgCIAEoCRInCgVzdGF0ZRgDIAEoDjIYLm9uY2V3YXJkLnYxLlJlY29yZFN0YXRlEhMKC2ZpbmdlcnByaW50GAQgASgMEhAKCHJlc3BvbnNlGAUgASgMEi4KCmNyZWF0ZWRfYXQYBiABKAsyGi5nb29nbGUucHJvdG9idWYuVGltZXN0YW1wEjAKDGNvbXBsZXRlZF9hdBgHIAEoCzIaLmdvb2dsZS5wcm90b2J1Zi5UaW1lc3RhbXASNAoQbGVhc2VfZXhwaXJlc19hdBgIIAEoCzIaLmdvb2dsZS5wcm90b2J1Zi5UaW1lc3RhbXASLgoKZXhwaXJlc19hdBgJIAEoCzIaLmdvb2dsZS5wcm90b2J1Zi5UaW1lc3RhbXAidwoRQ2xhaW1CYXRjaFJlcXVlc3QSEQoJbmFtZXNwYWNlGAEgASgJEiUKBWl0ZW1zGAIgAygLMhYub25jZXdhcmQudjEuQ2xhaW1JdGVtEigKBWxlYXNlGAMgASgLMhkuZ29vZ2xlLnByb3RvYnVmLkR1cmF0aW9uIm8KCUNsYWltSXRlbRILCgNrZXkYASABKAkSEwoLZmluZ2VycHJpbnQYAiABKAwSDwoHc3ViamVjdBgDIAEoCRIMCgRjb3N0GAQgASgEEhAKCGNsYWltYW50GAUgASgMEg8KB2F0dGVtcHQYBiABKA0iQQoSQ2xhaW1CYXRjaFJlc3BvbnNlEisKB3Jlc3VsdHMYASADKAsyGi5vbmNld2FyZC52MS5DbGFpbVJlc3BvbnNlIoEBChRDb21wbGV0ZUJhdGNoUmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSKAoFaXRlbXMYAiADKAsyGS5vbmNld2FyZC52MS5Db21wbGV0ZUl0ZW0SLAoJcmV0ZW50aW9uGAMgASgLMhkuZ29vZ2xlLnByb3RvYnVmLkR1cmF0aW9uIkQKDENvbXBsZXRlSXRlbRILCgNrZXkYASABKAkSFQoNZmVuY2luZ190b2tlbhgCIAEoBBIQCghyZXNwb25zZRgDIAEoDCJFChVDb21wbGV0ZUJhdGNoUmVzcG9uc2USLAoHcmVzdWx0cxgBIAMoCzIbLm9uY2V3YXJkLnYxLkNvbXBsZXRlUmVzdWx0Il8KDkNvbXBsZXRlUmVzdWx0EgwKBGNvZGUYASABKA0SDwoHbWVzc2FnZRgCIAEoCRIuCgpleHBpcmVzX2F0GAMgASgLMhouZ29vZ2xlLnByb3RvYnVmLlRpbWVzdGFtcCI+Cg1Gb3JnZXRSZXF1ZXN0EhEKCW5hbWVzcGFjZRgBIAEoCRILCgNrZXkYAiABKAkSDQoFZm9yY2UYAyABKAgiHwoORm9yZ2V0UmVzcG9uc2USDQoFZm91bmQYASABKAgiXAoGUG9saWN5EhIKCmtpbGxzd2l0Y2gYASABKAgSGQoRa2lsbHN3aXRjaF9yZWFzb24YAiABKAkSIwoGYnVkZ2V0GAMgASgLMhMub25jZXdhcmQudjEuQnVkZ2V0InIKBkJ1ZGdldBIQCghtYXhfY29zdBgBIAEoBBISCgptYXhfY2xhaW1zGAIgASgEEikKBndpbmRvdxgDIAEoCzIZLmdvb2dsZS5wcm90b2J1Zi5EdXJhdGlvbhIXCg9yZXF1aXJlX3N1YmplY3QYBCABKAgiJQoQR2V0UG9saWN5UmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkiSgoQU2V0UG9saWN5UmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSIwoGcG9saWN5GAIgASgLMhMub25jZXdhcmQudjEuUG9saWN5IjUKD0dldFNwZW5kUmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSDwoHc3ViamVjdBgCIAEoCSKHAQoFU3BlbmQSMAoMd2luZG93X3N0YXJ0GAEgASgLMhouZ29vZ2xlLnByb3RvYnVmLlRpbWVzdGFtcBIuCgp3aW5kb3dfZW5kGAIgASgLMhouZ29vZ2xlLnByb3RvYnVmLlRpbWVzdGFtcBIMCgRjb3N0GAMgASgEEg4KBmNsYWltcxgEIAEoBCJgChFMaXN0RXZlbnRzUmVxdWVzdBIRCgluYW1lc3BhY2UYASABKAkSKQoFc2luY2UYAiABKAsyGi5nb29nbGUucHJvdG9idWYuVGltZXN0YW1wEg0KBWxpbWl0GAMgASgNIjgKEkxpc3RFdmVudHNSZXNwb25zZRIiCgZldmVudHMYASADKAsyEi5vbmNld2FyZC52MS5FdmVudCKSAQoFRXZlbnQSJgoCYXQYASABKAsyGi5nb29nbGUucHJvdG9idWYuVGltZXN0YW1wEgsKA2tleRgCIAEoCRIPCgdzdWJqZWN0GAMgASgJEiQKBGtpbmQYBCABKA4yFi5vbmNld2FyZC52MS5FdmVudEtpbmQSDQoFY291bnQYBSABKAQSDgoGZGV0YWlsGAYgASgJKrgBCgdPdXRjb21lEhcKE09VVENPTUVfVU5TUEVDSUZJRUQQABIUChBPVVRDT01FX0FDUVVJUkVEEAESFwoTT1VUQ09NRV9JTl9QUk9HUkVTUxACEhUKEU9VVENPTUVfQ09NUExFVEVEEAMSIAocT1VUQ09NRV9GSU5HRVJQUklOVF9NSVNNQVRDSBAEEhMKD09VVENPTUVfQkxPQ0tFRBAFEhcKE09VVENPTUVfT1ZFUl9CVURHRVQQBio9CgRUaWVyEhQKEFRJRVJfVU5TUEVDSUZJRUQQABIOCgpUSUVSX0NBQ0hFEAESDwoLVElFUl9MRURHRVIQAiplCgtSZWNvcmRTdGF0ZRIcChhSRUNPUkRfU1RBVEVfVU5TUEVDSUZJRUQQABIcChhSRUNPUkRfU1RBVEVfSU5fUFJPR1JFU1MQARIaChZSRUNPUkRfU1RBVEVfQ09NUExFVEVEEAIq4gEKCUV2ZW50S2luZBIaChZFVkVOVF9LSU5EX1VOU1BFQ0lGSUVEEAASGAoURVZFTlRfS0lORF9EVVBMSUNBVEUQARIjCh9FVkVOVF9LSU5EX0ZJTkdFUlBSSU5UX01JU01BVENIEAISFgoSRVZFTlRfS0lORF9CTE9DS0VEEAMSGgoWRVZFTlRfS0lORF9PVkVSX0JVREdFVBAEEhcKE0VWRU5UX0tJTkRfVEFLRU9WRVIQBRIWChJFVkVOVF9LSU5EX1JFTEVBU0UQBhIVChFFVkVOVF9LSU5EX0ZPUkdFVBAHMpUECghPbmNld2FyZBI+CgVDbGFpbRIZLm9uY2V3YXJkLnYxLkNsYWltUmVxdWVzdBoaLm9uY2V3YXJkLnYxLkNsYWltUmVzcG9uc2USRwoIQ29tcGxldGUSHC5vbmNld2FyZC52MS5Db21wbGV0ZVJlcXVlc3QaHS5vbmNld2FyZC52MS5Db21wbGV0ZVJlc3BvbnNlEkQKB1JlbGVhc2USGy5vbmNld2FyZC52MS5SZWxlYXNlUmVxdWVzdBocLm9uY2V3YXJkLnYxLlJlbGVhc2VSZXNwb25zZRJQCgtFeHRlbmRMZWFzZRIfLm9uY2V3YXJkLnYxLkV4dGVuZExlYXNlUmVxdWVzdBogLm9uY2V3YXJkLnYxLkV4dGVuZExlYXNlUmVzcG9uc2USQQoGTG9va3VwEhoub25jZXdhcmQudjEuTG9va3VwUmVxdWVzdBobLm9uY2V3YXJkLnYxLkxvb2t1cFJlc3BvbnNlEk0KCkNsYWltQmF0Y2gSHi5vbmNld2FyZC52MS5DbGFpbUJhdGNoUmVxdWVzdBofLm9uY2V3YXJkLnYxLkNsYWltQmF0Y2hSZXNwb25zZRJWCg1Db21wbGV0ZUJhdGNoEiEub25jZXdhcmQudjEuQ29tcGxldGVCYXRjaFJlcXVlc3QaIi5vbmNld2FyZC52MS5Db21wbGV0ZUJhdGNoUmVzcG9uc2Uy2QIKBUFkbWluEj8KCUdldFBvbGljeRIdLm9uY2V3YXJkLnYxLkdldFBvbGljeVJlcXVlc3QaEy5vbmNld2FyZC52MS5Qb2xpY3kSPwoJU2V0UG9saWN5Eh0ub25jZXdhcmQudjEuU2V0UG9saWN5UmVxdWVzdBoTLm9uY2V3YXJkLnYxLlBvbGljeRI8CghHZXRTcGVuZBIcLm9uY2V3YXJkLnYxLkdldFNwZW5kUmVxdWVzdBoSLm9uY2V3YXJkLnYxLlNwZW5kEkEKBkZvcmdldBIaLm9uY2V3YXJkLnYxLkZvcmdldFJlcXVlc3QaGy5vbmNld2FyZC52MS5Gb3JnZXRSZXNwb25zZRJNCgpMaXN0RXZlbnRzEh4ub25jZXdhcmQudjEuTGlzdEV2ZW50c1JlcXVlc3QaHy5vbmNld2FyZC52MS5MaXN0RXZlbnRzUmVzcG9uc2ViBnByb3RvMw", [file_google_protobuf_duration, file_google_protobuf_timestamp]);
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
 * Describes the message onceward.v1.Policy.
 * Use `create(PolicySchema)` to create a new message.
 */
export const PolicySchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 20);
/**
 * Describes the message onceward.v1.Budget.
 * Use `create(BudgetSchema)` to create a new message.
 */
export const BudgetSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 21);
/**
 * Describes the message onceward.v1.GetPolicyRequest.
 * Use `create(GetPolicyRequestSchema)` to create a new message.
 */
export const GetPolicyRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 22);
/**
 * Describes the message onceward.v1.SetPolicyRequest.
 * Use `create(SetPolicyRequestSchema)` to create a new message.
 */
export const SetPolicyRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 23);
/**
 * Describes the message onceward.v1.GetSpendRequest.
 * Use `create(GetSpendRequestSchema)` to create a new message.
 */
export const GetSpendRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 24);
/**
 * Describes the message onceward.v1.Spend.
 * Use `create(SpendSchema)` to create a new message.
 */
export const SpendSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 25);
/**
 * Describes the message onceward.v1.ListEventsRequest.
 * Use `create(ListEventsRequestSchema)` to create a new message.
 */
export const ListEventsRequestSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 26);
/**
 * Describes the message onceward.v1.ListEventsResponse.
 * Use `create(ListEventsResponseSchema)` to create a new message.
 */
export const ListEventsResponseSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 27);
/**
 * Describes the message onceward.v1.Event.
 * Use `create(EventSchema)` to create a new message.
 */
export const EventSchema = /*@__PURE__*/ messageDesc(file_onceward_v1_onceward, 28);
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
    /**
     * @generated from enum value: OUTCOME_BLOCKED = 5;
     */
    Outcome[Outcome["BLOCKED"] = 5] = "BLOCKED";
    /**
     * @generated from enum value: OUTCOME_OVER_BUDGET = 6;
     */
    Outcome[Outcome["OVER_BUDGET"] = 6] = "OVER_BUDGET";
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
 * @generated from enum onceward.v1.EventKind
 */
export var EventKind;
(function (EventKind) {
    /**
     * @generated from enum value: EVENT_KIND_UNSPECIFIED = 0;
     */
    EventKind[EventKind["UNSPECIFIED"] = 0] = "UNSPECIFIED";
    /**
     * @generated from enum value: EVENT_KIND_DUPLICATE = 1;
     */
    EventKind[EventKind["DUPLICATE"] = 1] = "DUPLICATE";
    /**
     * @generated from enum value: EVENT_KIND_FINGERPRINT_MISMATCH = 2;
     */
    EventKind[EventKind["FINGERPRINT_MISMATCH"] = 2] = "FINGERPRINT_MISMATCH";
    /**
     * @generated from enum value: EVENT_KIND_BLOCKED = 3;
     */
    EventKind[EventKind["BLOCKED"] = 3] = "BLOCKED";
    /**
     * @generated from enum value: EVENT_KIND_OVER_BUDGET = 4;
     */
    EventKind[EventKind["OVER_BUDGET"] = 4] = "OVER_BUDGET";
    /**
     * @generated from enum value: EVENT_KIND_TAKEOVER = 5;
     */
    EventKind[EventKind["TAKEOVER"] = 5] = "TAKEOVER";
    /**
     * @generated from enum value: EVENT_KIND_RELEASE = 6;
     */
    EventKind[EventKind["RELEASE"] = 6] = "RELEASE";
    /**
     * @generated from enum value: EVENT_KIND_FORGET = 7;
     */
    EventKind[EventKind["FORGET"] = 7] = "FORGET";
})(EventKind || (EventKind = {}));
/**
 * Describes the enum onceward.v1.EventKind.
 */
export const EventKindSchema = /*@__PURE__*/ enumDesc(file_onceward_v1_onceward, 3);
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
