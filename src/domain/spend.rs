//! The spend guard's domain (docs/PROTOCOL.md, "Spend guard"): whose spend a claim is
//! (its [`Subject`] and cost), a namespace's [`Policy`] (the killswitch and the
//! per-subject [`Budget`]), and why a claim that would have acquired was refused
//! ([`Refusal`]).
//!
//! The rules, in the order a claim meets them: duplicates are answered first and never
//! debited; the killswitch blocks every new `ACQUIRED`; the budget is debited in the
//! ledger transaction that inserts the claim; a `Release` refunds it.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ValidationError;

/// Whose spend a claim is: a user, a recipient, a shop. 0–128 bytes, no control
/// characters; empty means "not given" (the claim is not limited).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Subject(String);

impl Subject {
    /// The longest subject accepted, in bytes.
    pub const MAX_LEN: usize = 128;

    /// The subject as a string (empty if none was given).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether none was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Subject {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "subject",
                format!(
                    "must be at most {} bytes, got {}",
                    Self::MAX_LEN,
                    value.len()
                ),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "subject",
                "must not contain control characters",
            ));
        }
        Ok(Self(value))
    }
}

/// The largest cost, budget limit or spend the ledgers store (a signed 64-bit integer).
pub const MAX_UNITS: u64 = i64::MAX as u64;

/// Checks a cost or limit against [`MAX_UNITS`], naming `field`.
pub fn units(field: &'static str, value: u64) -> Result<u64, ValidationError> {
    if value > MAX_UNITS {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_UNITS}, got {value}"),
        ));
    }
    Ok(value)
}

/// What a claim spends, and of whose budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spend {
    /// Whose spend; empty: not limited.
    pub subject: Subject,
    /// Units of the namespace's budget (at most [`MAX_UNITS`]); 0 = free.
    pub cost: u64,
}

/// A namespace's spend guard, stored in the ledger and shared by every sidecar on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Engaged: no new `ACQUIRED` in the namespace.
    pub killswitch: bool,
    /// Shown to callers while the killswitch is engaged.
    pub killswitch_reason: String,
    /// The per-subject budget, if any.
    pub budget: Option<Budget>,
}

impl Policy {
    /// The longest killswitch reason accepted, in bytes.
    pub const MAX_REASON_LEN: usize = 256;

    /// Whether the policy guards nothing (no killswitch, no budget): the namespace is
    /// then stored without one.
    pub fn is_empty(&self) -> bool {
        !self.killswitch && self.killswitch_reason.is_empty() && self.budget.is_none()
    }

    /// Checks every field, naming the one out of bounds.
    pub fn validate(self) -> Result<Self, ValidationError> {
        if self.killswitch_reason.len() > Self::MAX_REASON_LEN {
            return Err(ValidationError::new(
                "policy.killswitch_reason",
                format!(
                    "must be at most {} bytes, got {}",
                    Self::MAX_REASON_LEN,
                    self.killswitch_reason.len()
                ),
            ));
        }
        if self.killswitch_reason.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "policy.killswitch_reason",
                "must not contain control characters",
            ));
        }
        if let Some(budget) = &self.budget {
            budget.validate()?;
        }
        Ok(self)
    }

    /// Whether a claim without a subject is refused.
    pub fn requires_subject(&self) -> bool {
        self.budget.as_ref().is_some_and(|b| b.require_subject)
    }
}

/// A per-subject, per-window budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Most units a subject may spend in one window; 0: no cost limit.
    pub max_cost: u64,
    /// Most claims a subject may make in one window; 0: no count limit (the fan-out cap).
    pub max_claims: u64,
    /// The window, aligned to the Unix epoch on the ledger's clock.
    pub window: Duration,
    /// A claim without a subject is refused (`INVALID_ARGUMENT`).
    pub require_subject: bool,
}

impl Budget {
    /// The shortest window.
    pub const MIN_WINDOW: Duration = Duration::from_secs(1);
    /// The longest window: 31 days.
    pub const MAX_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);

    fn validate(&self) -> Result<(), ValidationError> {
        units("policy.budget.max_cost", self.max_cost)?;
        units("policy.budget.max_claims", self.max_claims)?;
        if self.window < Self::MIN_WINDOW || self.window > Self::MAX_WINDOW {
            return Err(ValidationError::new(
                "policy.budget.window",
                format!(
                    "must be between 1s and 31d (2678400s), got {}",
                    super::format_duration(self.window)
                ),
            ));
        }
        if self.window.subsec_micros() * 1000 != self.window.subsec_nanos() {
            return Err(ValidationError::new(
                "policy.budget.window",
                "must be a whole number of microseconds",
            ));
        }
        Ok(())
    }

    /// The window holding `now` (Unix microseconds on the ledger's clock): its start
    /// and end, in Unix microseconds.
    pub fn window_at(&self, now_micros: i64) -> (i64, i64) {
        let width = i64::try_from(self.window.as_micros())
            .unwrap_or(i64::MAX)
            .max(1);
        let start = now_micros.div_euclid(width) * width;
        (start, start.saturating_add(width))
    }
}

/// Which budget limit refused a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The subject's cost in the window would exceed `max_cost`.
    MaxCost,
    /// The subject's claims in the window would exceed `max_claims`.
    MaxClaims,
}

impl Limit {
    /// The name callers see in `reason`, and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MaxCost => "max_cost",
            Limit::MaxClaims => "max_claims",
        }
    }
}

/// Why a claim that would have been `ACQUIRED` was not. Nothing is stored or debited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The namespace's killswitch is engaged; its reason.
    Blocked {
        /// The killswitch's reason.
        reason: String,
    },
    /// The subject's budget for the current window would be exceeded.
    OverBudget {
        /// Which limit.
        limit: Limit,
        /// When the subject's window resets (ledger clock).
        window_end: DateTime<Utc>,
    },
}

impl Refusal {
    /// The metric label (`killswitch`, `max_cost`, `max_claims`).
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Blocked { .. } => "killswitch",
            Refusal::OverBudget { limit, .. } => limit.as_str(),
        }
    }
}

/// What a subject spent in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// The window's start (ledger clock).
    pub window_start: DateTime<Utc>,
    /// The window's end.
    pub window_end: DateTime<Utc>,
    /// Units debited, net of refunds.
    pub cost: u64,
    /// Claims debited, net of refunds.
    pub claims: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let budget = Budget {
            max_cost: 0,
            max_claims: 1,
            window: Duration::from_secs(60),
            require_subject: false,
        };
        assert_eq!(budget.window_at(0), (0, 60_000_000));
        assert_eq!(budget.window_at(59_999_999), (0, 60_000_000));
        assert_eq!(budget.window_at(60_000_000), (60_000_000, 120_000_000));
        assert_eq!(budget.window_at(-1), (-60_000_000, 0));
    }

    #[test]
    fn a_policy_names_the_field_out_of_bounds() {
        let window = |window| Policy {
            budget: Some(Budget {
                max_cost: 1,
                max_claims: 0,
                window,
                require_subject: false,
            }),
            ..Policy::default()
        };
        let error = window(Duration::from_millis(500)).validate().unwrap_err();
        assert_eq!(error.field, "policy.budget.window");
        assert!(
            window(Duration::from_secs(32 * 24 * 3600))
                .validate()
                .is_err()
        );
        assert!(window(Duration::from_secs(24 * 3600)).validate().is_ok());
        let costly = Policy {
            budget: Some(Budget {
                max_cost: u64::MAX,
                max_claims: 0,
                window: Duration::from_secs(60),
                require_subject: false,
            }),
            ..Policy::default()
        };
        assert_eq!(
            costly.validate().unwrap_err().field,
            "policy.budget.max_cost"
        );
    }

    #[test]
    fn subjects_are_bounded_and_printable() {
        assert!(Subject::try_from("user-42".to_owned()).is_ok());
        assert!(Subject::try_from("x".repeat(129)).is_err());
        assert!(Subject::try_from("a\nb".to_owned()).is_err());
    }
}
