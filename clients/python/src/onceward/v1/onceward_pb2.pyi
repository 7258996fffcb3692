import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_ACQUIRED: _ClassVar[Outcome]
    OUTCOME_IN_PROGRESS: _ClassVar[Outcome]
    OUTCOME_COMPLETED: _ClassVar[Outcome]
    OUTCOME_FINGERPRINT_MISMATCH: _ClassVar[Outcome]
    OUTCOME_BLOCKED: _ClassVar[Outcome]
    OUTCOME_OVER_BUDGET: _ClassVar[Outcome]

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_CACHE: _ClassVar[Tier]
    TIER_LEDGER: _ClassVar[Tier]

class RecordState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_STATE_UNSPECIFIED: _ClassVar[RecordState]
    RECORD_STATE_IN_PROGRESS: _ClassVar[RecordState]
    RECORD_STATE_COMPLETED: _ClassVar[RecordState]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_DUPLICATE: _ClassVar[EventKind]
    EVENT_KIND_FINGERPRINT_MISMATCH: _ClassVar[EventKind]
    EVENT_KIND_BLOCKED: _ClassVar[EventKind]
    EVENT_KIND_OVER_BUDGET: _ClassVar[EventKind]
    EVENT_KIND_TAKEOVER: _ClassVar[EventKind]
    EVENT_KIND_RELEASE: _ClassVar[EventKind]
    EVENT_KIND_FORGET: _ClassVar[EventKind]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_ACQUIRED: Outcome
OUTCOME_IN_PROGRESS: Outcome
OUTCOME_COMPLETED: Outcome
OUTCOME_FINGERPRINT_MISMATCH: Outcome
OUTCOME_BLOCKED: Outcome
OUTCOME_OVER_BUDGET: Outcome
TIER_UNSPECIFIED: Tier
TIER_CACHE: Tier
TIER_LEDGER: Tier
RECORD_STATE_UNSPECIFIED: RecordState
RECORD_STATE_IN_PROGRESS: RecordState
RECORD_STATE_COMPLETED: RecordState
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_DUPLICATE: EventKind
EVENT_KIND_FINGERPRINT_MISMATCH: EventKind
EVENT_KIND_BLOCKED: EventKind
EVENT_KIND_OVER_BUDGET: EventKind
EVENT_KIND_TAKEOVER: EventKind
EVENT_KIND_RELEASE: EventKind
EVENT_KIND_FORGET: EventKind

class ClaimRequest(_message.Message):
    __slots__ = ("namespace", "key", "fingerprint", "lease", "subject", "cost", "claimant", "attempt")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    CLAIMANT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    key: str
    fingerprint: bytes
    lease: _duration_pb2.Duration
    subject: str
    cost: int
    claimant: bytes
    attempt: int
    def __init__(self, namespace: _Optional[str] = ..., key: _Optional[str] = ..., fingerprint: _Optional[bytes] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., subject: _Optional[str] = ..., cost: _Optional[int] = ..., claimant: _Optional[bytes] = ..., attempt: _Optional[int] = ...) -> None: ...

class ClaimResponse(_message.Message):
    __slots__ = ("outcome", "fencing_token", "response", "retry_after", "served_by", "completed_at", "reason")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    fencing_token: int
    response: bytes
    retry_after: _duration_pb2.Duration
    served_by: Tier
    completed_at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., fencing_token: _Optional[int] = ..., response: _Optional[bytes] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., served_by: _Optional[_Union[Tier, str]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("namespace", "key", "fencing_token", "response", "retention")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    key: str
    fencing_token: int
    response: bytes
    retention: _duration_pb2.Duration
    def __init__(self, namespace: _Optional[str] = ..., key: _Optional[str] = ..., fencing_token: _Optional[int] = ..., response: _Optional[bytes] = ..., retention: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("expires_at",)
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("namespace", "key", "fencing_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    key: str
    fencing_token: int
    def __init__(self, namespace: _Optional[str] = ..., key: _Optional[str] = ..., fencing_token: _Optional[int] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExtendLeaseRequest(_message.Message):
    __slots__ = ("namespace", "key", "fencing_token", "lease")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    key: str
    fencing_token: int
    lease: _duration_pb2.Duration
    def __init__(self, namespace: _Optional[str] = ..., key: _Optional[str] = ..., fencing_token: _Optional[int] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ExtendLeaseResponse(_message.Message):
    __slots__ = ("lease_expires_at",)
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("namespace", "key")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    key: str
    def __init__(self, namespace: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("found", "record")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    found: bool
    record: Record
    def __init__(self, found: _Optional[bool] = ..., record: _Optional[_Union[Record, _Mapping]] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("namespace", "key", "state", "fingerprint", "response", "created_at", "completed_at", "lease_expires_at", "expires_at")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    key: str
    state: RecordState
    fingerprint: bytes
    response: bytes
    created_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    lease_expires_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, namespace: _Optional[str] = ..., key: _Optional[str] = ..., state: _Optional[_Union[RecordState, str]] = ..., fingerprint: _Optional[bytes] = ..., response: _Optional[bytes] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ClaimBatchRequest(_message.Message):
    __slots__ = ("namespace", "items", "lease")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    items: _containers.RepeatedCompositeFieldContainer[ClaimItem]
    lease: _duration_pb2.Duration
    def __init__(self, namespace: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ClaimItem, _Mapping]]] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ClaimItem(_message.Message):
    __slots__ = ("key", "fingerprint", "subject", "cost", "claimant", "attempt")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    CLAIMANT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    key: str
    fingerprint: bytes
    subject: str
    cost: int
    claimant: bytes
    attempt: int
    def __init__(self, key: _Optional[str] = ..., fingerprint: _Optional[bytes] = ..., subject: _Optional[str] = ..., cost: _Optional[int] = ..., claimant: _Optional[bytes] = ..., attempt: _Optional[int] = ...) -> None: ...

class ClaimBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ClaimResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[ClaimResponse, _Mapping]]] = ...) -> None: ...

class CompleteBatchRequest(_message.Message):
    __slots__ = ("namespace", "items", "retention")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    items: _containers.RepeatedCompositeFieldContainer[CompleteItem]
    retention: _duration_pb2.Duration
    def __init__(self, namespace: _Optional[str] = ..., items: _Optional[_Iterable[_Union[CompleteItem, _Mapping]]] = ..., retention: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CompleteItem(_message.Message):
    __slots__ = ("key", "fencing_token", "response")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    key: str
    fencing_token: int
    response: bytes
    def __init__(self, key: _Optional[str] = ..., fencing_token: _Optional[int] = ..., response: _Optional[bytes] = ...) -> None: ...

class CompleteBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CompleteResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CompleteResult, _Mapping]]] = ...) -> None: ...

class CompleteResult(_message.Message):
    __slots__ = ("code", "message", "expires_at")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ForgetRequest(_message.Message):
    __slots__ = ("namespace", "key", "force")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    key: str
    force: bool
    def __init__(self, namespace: _Optional[str] = ..., key: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("killswitch", "killswitch_reason", "budget")
    KILLSWITCH_FIELD_NUMBER: _ClassVar[int]
    KILLSWITCH_REASON_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    killswitch: bool
    killswitch_reason: str
    budget: Budget
    def __init__(self, killswitch: _Optional[bool] = ..., killswitch_reason: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("max_cost", "max_claims", "window", "require_subject")
    MAX_COST_FIELD_NUMBER: _ClassVar[int]
    MAX_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    max_cost: int
    max_claims: int
    window: _duration_pb2.Duration
    require_subject: bool
    def __init__(self, max_cost: _Optional[int] = ..., max_claims: _Optional[int] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., require_subject: _Optional[bool] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("namespace", "policy")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    policy: Policy
    def __init__(self, namespace: _Optional[str] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class GetSpendRequest(_message.Message):
    __slots__ = ("namespace", "subject")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    subject: str
    def __init__(self, namespace: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class Spend(_message.Message):
    __slots__ = ("window_start", "window_end", "cost", "claims")
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    cost: int
    claims: int
    def __init__(self, window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cost: _Optional[int] = ..., claims: _Optional[int] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("namespace", "since", "limit")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    since: _timestamp_pb2.Timestamp
    limit: int
    def __init__(self, namespace: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("at", "key", "subject", "kind", "count", "detail")
    AT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    key: str
    subject: str
    kind: EventKind
    count: int
    detail: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key: _Optional[str] = ..., subject: _Optional[str] = ..., kind: _Optional[_Union[EventKind, str]] = ..., count: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...
