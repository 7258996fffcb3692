//! The audit trail's entries, as both ledgers store them.

use chrono::{DateTime, Utc};

use crate::domain::{Namespace, Subject};

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Duplicates answered `IN_PROGRESS` or `COMPLETED`, counted per key per minute.
    Duplicate = 1,
    /// A claim whose fingerprint differed from the stored one.
    FingerprintMismatch = 2,
    /// A claim the killswitch blocked.
    Blocked = 3,
    /// A claim over its subject's budget.
    OverBudget = 4,
    /// A claim that took over an expired lease.
    Takeover = 5,
    /// A holder released its claim.
    Release = 6,
    /// A record forgotten through the Admin API.
    Forget = 7,
}

impl EventKind {
    /// The kind stored as `code`, if any.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => EventKind::Duplicate,
            2 => EventKind::FingerprintMismatch,
            3 => EventKind::Blocked,
            4 => EventKind::OverBudget,
            5 => EventKind::Takeover,
            6 => EventKind::Release,
            7 => EventKind::Forget,
            _ => return None,
        })
    }

    /// The stored code (the proto's `EventKind` number).
    pub fn code(self) -> i16 {
        self as i16
    }
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The namespace.
    pub namespace: Namespace,
    /// When (for a counted duplicate: the first of its minute).
    pub at: DateTime<Utc>,
    /// The key.
    pub key: String,
    /// The claim's subject, if it gave one.
    pub subject: Subject,
    /// What happened.
    pub kind: EventKind,
    /// How many answers it stands for.
    pub count: u64,
    /// The killswitch's reason, the limit, the token: what a reader needs to know.
    pub detail: String,
}

impl AuditEvent {
    /// The start of the minute of `at`, by which duplicates are counted.
    pub fn minute(&self) -> DateTime<Utc> {
        let seconds = self.at.timestamp().div_euclid(60) * 60;
        DateTime::from_timestamp(seconds, 0).unwrap_or(self.at)
    }
}
