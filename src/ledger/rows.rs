//! Stored rows read back as domain values, for both ledgers: a record, who holds a
//! claim, a completion, an extended lease.
//!
//! Each parse is written once, over a [`LedgerRow`]: the ledgers store the same
//! columns and differ only in how they store an instant (Postgres `timestamptz`,
//! SQLite Unix microseconds) and the state (`smallint`, `integer`), which is all a
//! ledger says about its rows. The columns are decoded by name, as a statement
//! returns them, into a small `FromRow` struct, then parsed. A row that does not parse
//! (an unknown state, a fingerprint or key no request could have sent, a negative
//! token, an instant out of range) is an internal error, never a guess.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, Row};

use super::{
    AuditEvent, CompleteDecision, EventKind, ExtendedLease, LedgerError, StoredCompletion, internal,
};
use crate::domain::{
    Budget, Completion, FencingToken, Fingerprint, IdempotencyKey, Namespace, Policy, Record,
    RecordId, RecordState, Subject,
};

/// The stored `state` of an in-progress record (both ledgers).
const STATE_IN_PROGRESS: i64 = 1;
/// The stored `state` of a completed record (both ledgers).
const STATE_COMPLETED: i64 = 2;

/// A ledger's rows: how it stores what the two ledgers store differently.
pub(crate) trait LedgerRow: Row {
    /// An instant, as the ledger stores it.
    type Time;
    /// The `state` column, as the ledger stores it.
    type State: Into<i64>;

    /// A stored instant, on the ledger's clock.
    fn instant(stored: Self::Time) -> Result<DateTime<Utc>, LedgerError>;
}

/// The columns of a stored record.
#[derive(FromRow)]
pub(crate) struct RecordColumns<Time, State> {
    namespace: String,
    key: String,
    state: State,
    fingerprint: Vec<u8>,
    response: Option<Vec<u8>>,
    created_at: Time,
    completed_at: Option<Time>,
    lease_expires_at: Option<Time>,
    expires_at: Time,
}

/// A stored record.
pub(crate) fn record<'r, R: LedgerRow>(row: &'r R) -> Result<Record, LedgerError>
where
    RecordColumns<R::Time, R::State>: FromRow<'r, R>,
{
    let columns = RecordColumns::<R::Time, R::State>::from_row(row).map_err(internal)?;
    Ok(Record {
        id: RecordId {
            namespace: Namespace::try_from(columns.namespace).map_err(internal)?,
            key: IdempotencyKey::try_from(columns.key).map_err(internal)?,
        },
        state: stored_state(columns.state.into())?,
        fingerprint: stored_fingerprint(columns.fingerprint)?,
        response: columns.response,
        created_at: R::instant(columns.created_at)?,
        completed_at: columns.completed_at.map(R::instant).transpose()?,
        lease_expires_at: columns.lease_expires_at.map(R::instant).transpose()?,
        expires_at: R::instant(columns.expires_at)?,
    })
}

/// The columns naming who holds a stored claim.
#[derive(FromRow)]
pub(crate) struct HolderColumns<'r> {
    fencing_token: i64,
    claimant: &'r [u8],
}

/// Who holds a stored claim: its token and its claimant, which never leave the ledger
/// except to that claimant.
pub(crate) struct Holder<'r> {
    /// The holder's fencing token.
    pub(crate) token: FencingToken,
    /// The claimant that made the claim, as stored (empty: none).
    pub(crate) claimant: &'r [u8],
}

/// Who holds the claim stored in `row`.
pub(crate) fn holder<'r, R: LedgerRow>(row: &'r R) -> Result<Holder<'r>, LedgerError>
where
    HolderColumns<'r>: FromRow<'r, R>,
{
    let columns = HolderColumns::from_row(row).map_err(internal)?;
    Ok(Holder {
        token: stored_token(columns.fencing_token)?,
        claimant: columns.claimant,
    })
}

/// The columns a completion returns.
#[derive(FromRow)]
pub(crate) struct CompletionColumns<Time> {
    fingerprint: Vec<u8>,
    completed_at: Time,
    expires_at: Time,
}

/// The answer to a `Complete` whose update just completed the record in `row`, at
/// `now` (the ledger's clock): `response` is the one the request sent, which is what
/// the row now stores, so it is not read back.
pub(crate) fn completed<'r, R: LedgerRow>(
    row: &'r R,
    response: Vec<u8>,
    now: DateTime<Utc>,
) -> Result<CompleteDecision, LedgerError>
where
    CompletionColumns<R::Time>: FromRow<'r, R>,
{
    let columns = CompletionColumns::<R::Time>::from_row(row).map_err(internal)?;
    Ok(CompleteDecision::Completed {
        completion: Completion {
            completed_at: R::instant(columns.completed_at)?,
            expires_at: R::instant(columns.expires_at)?,
        },
        fingerprint: stored_fingerprint(columns.fingerprint)?,
        response,
        now,
    })
}

/// The columns a `Complete` whose update matched nothing reads back.
#[derive(FromRow)]
pub(crate) struct StoredCompletionColumns<Time, State> {
    state: State,
    fencing_token: i64,
    fingerprint: Vec<u8>,
    response: Option<Vec<u8>>,
    completed_at: Option<Time>,
    expires_at: Time,
}

/// What a key holds, read back at `now` (the ledger's clock) for a `Complete` whose
/// update matched nothing; [`super::completed_earlier`] decides what it answers.
pub(crate) fn stored_completion<'r, R: LedgerRow>(
    row: &'r R,
    now: DateTime<Utc>,
) -> Result<StoredCompletion, LedgerError>
where
    StoredCompletionColumns<R::Time, R::State>: FromRow<'r, R>,
{
    let columns = StoredCompletionColumns::<R::Time, R::State>::from_row(row).map_err(internal)?;
    let completion = match stored_state(columns.state.into())? {
        RecordState::InProgress => None,
        RecordState::Completed => Some(Completion {
            completed_at: R::instant(
                columns
                    .completed_at
                    .ok_or_else(|| internal("a completed record has no completed_at"))?,
            )?,
            expires_at: R::instant(columns.expires_at)?,
        }),
    };
    Ok(StoredCompletion {
        token: columns.fencing_token,
        completion,
        fingerprint: stored_fingerprint(columns.fingerprint)?,
        response: columns.response.unwrap_or_default(),
        now,
    })
}

/// The columns an extended lease returns.
#[derive(FromRow)]
pub(crate) struct LeaseColumns<Time> {
    lease_expires_at: Time,
    fingerprint: Vec<u8>,
}

/// The lease `row` was extended to, at `now` (the ledger's clock).
pub(crate) fn extended<'r, R: LedgerRow>(
    row: &'r R,
    now: DateTime<Utc>,
) -> Result<ExtendedLease, LedgerError>
where
    LeaseColumns<R::Time>: FromRow<'r, R>,
{
    let columns = LeaseColumns::<R::Time>::from_row(row).map_err(internal)?;
    Ok(ExtendedLease {
        lease_expires_at: R::instant(columns.lease_expires_at)?,
        fingerprint: stored_fingerprint(columns.fingerprint)?,
        now,
    })
}

/// A stored fingerprint.
pub(crate) fn stored_fingerprint(bytes: Vec<u8>) -> Result<Fingerprint, LedgerError> {
    Fingerprint::try_from(bytes).map_err(internal)
}

/// A stored (or just issued) fencing token: a signed 64-bit integer in every ledger.
pub(crate) fn stored_token(token: i64) -> Result<FencingToken, LedgerError> {
    u64::try_from(token)
        .map(FencingToken::new)
        .map_err(|_| internal(format!("stored fencing token {token} is negative")))
}

/// A stored `state`.
fn stored_state(state: i64) -> Result<RecordState, LedgerError> {
    match state {
        STATE_IN_PROGRESS => Ok(RecordState::InProgress),
        STATE_COMPLETED => Ok(RecordState::Completed),
        other => Err(internal(format!("unknown record state {other}"))),
    }
}

/// The columns of a stored policy.
#[derive(FromRow)]
pub(crate) struct PolicyColumns {
    namespace: String,
    killswitch: bool,
    killswitch_reason: String,
    has_budget: bool,
    max_cost: i64,
    max_claims: i64,
    window_micros: i64,
    require_subject: bool,
}

/// A stored policy, with its namespace.
pub(crate) fn policy<'r, R: Row>(row: &'r R) -> Result<(Namespace, Policy), LedgerError>
where
    PolicyColumns: FromRow<'r, R>,
{
    let columns = PolicyColumns::from_row(row).map_err(internal)?;
    let budget = columns.has_budget.then(|| Budget {
        max_cost: unsigned(columns.max_cost),
        max_claims: unsigned(columns.max_claims),
        window: std::time::Duration::from_micros(unsigned(columns.window_micros)),
        require_subject: columns.require_subject,
    });
    Ok((
        Namespace::try_from(columns.namespace).map_err(internal)?,
        Policy {
            killswitch: columns.killswitch,
            killswitch_reason: columns.killswitch_reason,
            budget,
        },
    ))
}

/// A policy as both ledgers store it: the values of `UPSERT_POLICY`'s columns after the
/// namespace, in its order.
pub(crate) struct PolicyRow<'a> {
    pub killswitch: bool,
    pub killswitch_reason: &'a str,
    pub has_budget: bool,
    pub max_cost: i64,
    pub max_claims: i64,
    pub window_micros: i64,
    pub require_subject: bool,
}

impl<'a> From<&'a Policy> for PolicyRow<'a> {
    fn from(policy: &'a Policy) -> Self {
        let budget = policy.budget.as_ref();
        Self {
            killswitch: policy.killswitch,
            killswitch_reason: &policy.killswitch_reason,
            has_budget: budget.is_some(),
            max_cost: signed(budget.map_or(0, |b| b.max_cost)),
            max_claims: signed(budget.map_or(0, |b| b.max_claims)),
            window_micros: budget.map_or(0, |b| super::micros(b.window)),
            require_subject: budget.is_some_and(|b| b.require_subject),
        }
    }
}

/// The columns of a stored audit event (its kind stored as the state is).
#[derive(FromRow)]
pub(crate) struct EventColumns<Time, Kind> {
    at: Time,
    key: String,
    subject: String,
    kind: Kind,
    count: i64,
    detail: String,
}

/// A stored audit event of `namespace`.
pub(crate) fn event<'r, R: LedgerRow>(
    row: &'r R,
    namespace: &Namespace,
) -> Result<AuditEvent, LedgerError>
where
    EventColumns<R::Time, R::State>: FromRow<'r, R>,
{
    let columns = EventColumns::<R::Time, R::State>::from_row(row).map_err(internal)?;
    let kind: i64 = columns.kind.into();
    Ok(AuditEvent {
        namespace: namespace.clone(),
        at: R::instant(columns.at)?,
        key: columns.key,
        subject: Subject::try_from(columns.subject).map_err(internal)?,
        kind: EventKind::from_code(kind)
            .ok_or_else(|| internal(format!("unknown audit event kind {kind}")))?,
        count: unsigned(columns.count),
        detail: columns.detail,
    })
}

/// A stored count or amount: never negative (the tables check it).
pub(crate) fn unsigned(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or(0)
}

/// An amount as the ledgers store it: validated at the edge to fit, saturating
/// otherwise (over every limit).
pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(error: LedgerError) -> String {
        match error {
            LedgerError::Internal(cause) => cause.to_string(),
            other => panic!("expected Internal, got {other:?}"),
        }
    }

    #[test]
    fn a_stored_token_that_is_negative_is_an_internal_error() {
        assert_eq!(stored_token(7).unwrap(), FencingToken::new(7));
        assert_eq!(
            cause(stored_token(-1).unwrap_err()),
            "stored fencing token -1 is negative"
        );
    }

    #[test]
    fn a_stored_state_other_than_in_progress_or_completed_is_an_internal_error() {
        assert_eq!(stored_state(1).unwrap(), RecordState::InProgress);
        assert_eq!(stored_state(2).unwrap(), RecordState::Completed);
        assert_eq!(
            cause(stored_state(3).unwrap_err()),
            "unknown record state 3"
        );
    }

    #[test]
    fn a_stored_fingerprint_longer_than_a_request_may_send_is_an_internal_error() {
        let too_long = vec![0; Fingerprint::MAX_LEN + 1];
        assert!(matches!(
            stored_fingerprint(too_long),
            Err(LedgerError::Internal(_))
        ));
    }
}
